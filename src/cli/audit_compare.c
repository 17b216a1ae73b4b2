/*
 * audit_compare.c - `tracer audit NEW TRAFFIC --compare OLD`: what changed between two policies (after
 * `tracer update`, or any refit): the gate's decision and thresholds, the traces, and on the same traffic
 * the coverage, agreement and per-label coverage of each, with the inputs whose decision changed.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gate/gate.h"
#include "cli.h"

struct side {
	const char *dir;
	struct tr_policy *p;
	char sha[65];
	struct tr_decision *d;
	size_t handled, agree;
};

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static void jnum(char *buf, size_t n, json_t *v)
{
	if (json_is_number(v))
		snprintf(buf, n, "%.4f", json_number_value(v));
	else
		snprintf(buf, n, "-");
}

/* Routes the traffic rows with one policy and counts handled and agreeing (label names compared). */
static int route_side(struct side *s, const struct tr_traceset *ts, const struct tr_rows *r, struct tr_err *e)
{
	size_t *idx = tr_calloc(r->n ? r->n : 1, sizeof *idx);
	s->d = tr_calloc(r->n ? r->n : 1, sizeof *s->d);
	if (!idx || !s->d) {
		tr_free(idx);
		return tr_fail(e, "out of memory");
	}
	for (size_t i = 0; i < r->n; i++)
		idx[i] = i;
	int rc = tr_policy_route(s->p, r->v, idx, r->n, NULL, 0, 0, s->d, e);
	for (size_t i = 0; !rc && i < r->n; i++)
		if (s->d[i].handled) {
			s->handled++;
			s->agree += r->v[i].teacher >= 0 &&
				    strcmp(s->p->labels.names[s->d[i].label], ts->labels.names[r->v[i].teacher]) == 0;
		}
	tr_free(idx);
	return rc;
}

struct lab {
	int k;
	size_t n, h_old, h_new;
	double delta;
};
static int cmp_lab(const void *a, const void *b)
{
	const struct lab *x = a, *y = b;
	double dx = fabs(x->delta), dy = fabs(y->delta);
	return dx != dy ? (dx < dy) - (dx > dy) : x->k - y->k;
}

int tr_cli_audit_compare(const char *newdir, const char *olddir, const char *traffic, int top, struct tr_err *e)
{
	struct side s[2] = {{.dir = olddir}, {.dir = newdir}};
	struct tr_traceset ts = {0};
	struct lab *lab = NULL;
	struct tr_buf b = {0};
	int rc = 0;
	for (int k = 0; k < 2 && !rc; k++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/manifest.json", s[k].dir);
		rc = tr_cli_policy_load(s[k].dir, &s[k].p, e) || tr_sha256_file(path, s[k].sha, e);
		if (!rc && s[k].p->fz && tr_featurizer_kind(s[k].p->fz) == TR_FEAT_NPY)
			rc = tr_fail(e, "%s: fitted on embeddings: --compare routes texts only", s[k].dir);
	}
	if (!rc)
		rc = tr_traceset_open(traffic, &ts, e);
	const struct tr_rows *r = ts.part[TR_PART_TEST].n ? &ts.part[TR_PART_TEST] : &ts.part[TR_PART_TRACES];
	for (int k = 0; k < 2 && !rc; k++)
		rc = route_side(&s[k], &ts, r, e);
	if (!rc && !(lab = tr_calloc((size_t)ts.labels.n + 1, sizeof *lab)))
		rc = tr_fail(e, "out of memory");
	if (rc)
		goto out;
	size_t to_def = 0, to_hand = 0, answer = 0;
	for (int k = 0; k < ts.labels.n; k++)
		lab[k].k = k;
	for (size_t i = 0; i < r->n; i++) {
		const struct tr_decision *a = &s[0].d[i], *c = &s[1].d[i];
		to_def += a->handled && !c->handled;
		to_hand += !a->handled && c->handled;
		answer += a->handled && c->handled &&
			  strcmp(s[0].p->labels.names[a->label], s[1].p->labels.names[c->label]) != 0;
		if (r->v[i].teacher >= 0) {
			struct lab *l = &lab[r->v[i].teacher];
			l->n++, l->h_old += (size_t)a->handled, l->h_new += (size_t)c->handled;
		}
	}
	for (int k = 0; k < ts.labels.n; k++)
		lab[k].delta = lab[k].n ? ((double)lab[k].h_new - (double)lab[k].h_old) / (double)lab[k].n : 0;
	json_t *m[2] = {s[0].p->manifest, s[1].p->manifest};
	json_t *dep[2] = {json_object_get(m[0], "deployed"), json_object_get(m[1], "deployed")};
	json_t *lin = json_object_get(m[1], "lineage");
	tr_buf_puts(&b, "# What changed: ");
	tr_buf_md_escape(&b, newdir);
	tr_buf_puts(&b, " against ");
	tr_buf_md_escape(&b, olddir);
	tr_buf_puts(&b, "\n\n");
	if (lin) {
		const char *psha = jstr(lin, "parent_sha256");
		tr_buf_printf(&b, "Lineage: updated from a parent with manifest SHA-256 %.12s (%s), %lld + %lld traces (%lld "
				  "replaced) = %lld.\n\n",
			      psha, strcmp(psha, s[0].sha) == 0 ? "the compared policy" : "not the compared policy",
			      (long long)json_integer_value(json_object_get(lin, "parent_traces")),
			      (long long)json_integer_value(json_object_get(lin, "new_traces")),
			      (long long)json_integer_value(json_object_get(lin, "replaced")),
			      (long long)json_integer_value(json_object_get(lin, "traces")));
	}
	tr_buf_puts(&b, "| | old | new |\n|---|---|---|\n");
	tr_buf_printf(&b, "| manifest SHA-256 | %.12s | %.12s |\n", s[0].sha, s[1].sha);
	size_t used[2];
	for (int k = 0; k < 2; k++) { /* the rows each mode's split counts once */
		json_t *sp = json_object_get(m[k], "splits");
		const char *cal = jstr(m[k], "calibration");
		json_int_t tr = json_integer_value(json_object_get(sp, "train")),
			   va = json_integer_value(json_object_get(sp, "validation")),
			   ca = json_integer_value(json_object_get(sp, "calibration"));
		if (strcmp(cal, "oof") == 0) /* the fit part is both train and validation; C's later group rows */
			used[k] = (size_t)(tr + ca + json_integer_value(json_object_get(m[k], "calibration_dropped")));
		else if (strcmp(cal, "crossfit") == 0) /* every used row trains the refit */
			used[k] = (size_t)tr;
		else
			used[k] = (size_t)(tr + va + ca);
	}
	tr_buf_printf(&b, "| traces used | %zu | %zu |\n", used[0], used[1]);
	tr_buf_printf(&b, "| gate, target | %s %.2f | %s %.2f |\n", jstr(m[0], "gate"), s[0].p->target, jstr(m[1], "gate"),
		      s[1].p->target);
	tr_buf_printf(&b, "| deployed family | %s | %s |\n", tr_pol_family_name(s[0].p->family),
		      tr_pol_family_name(s[1].p->family));
	const char *keys[] = {"stage1_threshold", "stage2_threshold", "calibration_coverage", "calibration_agreement"};
	const char *names[] = {"stage 1 threshold", "stage 2 threshold", "calibration coverage", "calibration agreement"};
	for (int q = 0; q < 4; q++) {
		char x[32], y[32];
		for (int k = 0; k < 2; k++) {
			char *b = k ? y : x;
			double t = q < 2 ? tr_threshold_get(dep[k], keys[q]) : NAN; /* ±inf: null and a companion */
			if (q < 2 && isinf(t))
				snprintf(b, sizeof x, "%s", t < 0 ? "accept all" : "stage 1 only");
			else
				jnum(b, sizeof x, json_object_get(dep[k], keys[q]));
		}
		tr_buf_printf(&b, "| %s | %s | %s |\n", names[q], x, y);
	}
	double n = r->n ? (double)r->n : 1;
	tr_buf_puts(&b, "| coverage on the traffic | ");
	for (int k = 0; k < 2; k++)
		tr_buf_printf(&b, "%.4f (%zu/%zu) | ", (double)s[k].handled / n, s[k].handled, r->n);
	tr_buf_puts(&b, "\n| agreement on handled | ");
	for (int k = 0; k < 2; k++)
		tr_buf_printf(&b, "%.4f | ", s[k].handled ? (double)s[k].agree / (double)s[k].handled : 0.0);
	tr_buf_printf(&b, "\n\nOn %zu inputs of ", r->n);
	tr_buf_md_escape(&b, traffic);
	tr_buf_printf(&b, ": %zu handled before are now deferred, %zu deferred before are now handled, %zu handled by "
			  "both get another answer.\n\n",
		      to_def, to_hand, answer);
	qsort(lab, (size_t)ts.labels.n, sizeof *lab, cmp_lab);
	tr_buf_printf(&b, "## Coverage per teacher label (the %d largest changes)\n\n| label | inputs | old | new | change |\n"
			  "|---|---|---|---|---|\n",
		      top);
	for (int k = 0; k < ts.labels.n && k < top; k++) {
		const struct lab *l = &lab[k];
		if (!l->n)
			continue;
		tr_buf_puts(&b, "| ");
		tr_buf_md_escape(&b, ts.labels.names[l->k]);
		tr_buf_printf(&b, " | %zu | %.3f | %.3f | %+.3f |\n", l->n, (double)l->h_old / (double)l->n,
			      (double)l->h_new / (double)l->n, l->delta);
	}
	if (!b.data)
		rc = tr_fail(e, "out of memory");
	else
		fputs(b.data, stdout);
out:
	for (int k = 0; k < 2; k++)
		tr_policy_free(s[k].p), tr_free(s[k].d);
	tr_free(lab);
	tr_buf_free(&b);
	tr_traceset_free(&ts);
	return rc;
}
