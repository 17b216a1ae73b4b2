/*
 * traffic.c - what a user may have got wrong when judging a policy on traffic (eval, audit): the traffic
 * is the policy's own traces, pairs and single texts are mixed up, or the teacher labels barely overlap.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../gate/gate.h"
#include "cli.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "id \x1f input \x1f input_b": a row as the policy saw it (owned by the caller). */
static char *row_key(const struct tr_trace *t)
{
	size_t a = strlen(t->id), b = strlen(t->input), c = t->input_b ? strlen(t->input_b) : 0;
	char *k = tr_malloc(a + b + c + 3);
	if (k) {
		memcpy(k, t->id, a), k[a] = 0x1f;
		memcpy(k + a + 1, t->input, b), k[a + 1 + b] = 0x1f;
		memcpy(k + a + b + 2, t->input_b ? t->input_b : "", c), k[a + b + c + 2] = 0;
	}
	return k;
}

static void add(struct tr_traffic_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct tr_traffic_warnings *w, const char *fmt, ...)
{
	if (w->n == TR_TRAFFIC_WARN_MAX)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->msg[w->n++], sizeof w->msg[0], fmt, ap);
	va_end(ap);
}

/*
 * Rows of r that the policy was fitted on: the same id, input and input_b as a trace kept in
 * DIR/traces.jsonl.zst. -1 on a read error; *known 0 when the policy kept no traces.
 */
static int seen_rows(const char *dir, const struct tr_rows *r, size_t *seen, int *known, struct tr_err *e)
{
	char path[PATH_MAX], *z = NULL, *text = NULL, **keys = NULL;
	size_t zn, tn, n = 0;
	struct tr_traceset own = {0};
	*seen = 0, *known = 0;
	snprintf(path, sizeof path, "%s/traces.jsonl.zst", dir);
	if (access(path, F_OK) != 0)
		return 0;
	int rc = tr_read_file(path, &z, &zn, e) || tr_zstd_decompress(z, zn, path, &text, &tn, e) ||
		 tr_traces_read_jsonl(path, text, tn, &own, e);
	const struct tr_rows *o = &own.part[TR_PART_TRACES];
	if (!rc && !(keys = tr_calloc(o->n ? o->n : 1, sizeof *keys)))
		rc = tr_fail(e, "out of memory");
	for (; !rc && n < o->n; n++)
		if (!(keys[n] = row_key(&o->v[n])))
			rc = tr_fail(e, "out of memory");
	if (!rc) {
		qsort(keys, n, sizeof *keys, cmp_str);
		for (size_t i = 0; !rc && i < r->n; i++) {
			char *k = row_key(&r->v[i]);
			if (!k)
				rc = tr_fail(e, "out of memory");
			else if (bsearch(&k, keys, n, sizeof *keys, cmp_str))
				(*seen)++;
			tr_free(k);
		}
		*known = !rc;
	}
	for (size_t i = 0; keys && i < n; i++)
		tr_free(keys[i]);
	tr_free(keys), tr_free(z), tr_free(text);
	tr_traceset_free(&own);
	return rc ? -1 : 0;
}

int tr_traffic_check(const char *dir, const struct tr_policy *p, const struct tr_traceset *ts,
		     const struct tr_rows *r, struct tr_traffic_warnings *w, struct tr_err *e)
{
	memset(w, 0, sizeof *w);
	/* 1. the policy's own traces: the very file (when its rows are all judged), or its rows */
	json_t *files = json_object_get(json_object_get(p->manifest, "inputs"), "files"), *f;
	size_t i;
	if (r == &ts->part[TR_PART_TRACES])
		json_array_foreach(files, i, f)
		{
			const char *sha = json_string_value(json_object_get(f, "sha256"));
			for (int k = 0; sha && k < ts->n_inputs; k++)
				if (strcmp(sha, ts->inputs[k].sha256) == 0)
					add(w, "%s is the file the policy was fitted on (sha256 %.12s...): its figures are "
					       "in-sample, not a held-out measure; hold rows out with `tracer traces split`",
					    ts->inputs[k].path, sha);
		}
	size_t seen;
	int known;
	if (seen_rows(dir, r, &seen, &known, e))
		return -1;
	if (known && r->n && !w->n && (double)seen > TR_TRAFFIC_SEEN_SHARE * (double)r->n)
		add(w, "%zu of the %zu traffic rows (%.0f%%, above the %.0f%% this check allows) are among the policy's "
		       "own traces (same id and text): its figures are partly in-sample; hold rows out with `tracer "
		       "traces split`",
		    seen, r->n, 100.0 * (double)seen / (double)r->n, 100 * TR_TRAFFIC_SEEN_SHARE);
	/* 2. pairs and single texts */
	size_t with_b = 0;
	for (i = 0; i < r->n; i++)
		with_b += r->v[i].input_b != NULL;
	if (!p->pairs && with_b)
		add(w, "%zu of the %zu traffic rows carry input_b, but the policy was fitted on single texts: it reads "
		       "input alone and ignores input_b",
		    with_b, r->n);
	else if (p->pairs && with_b < r->n)
		add(w, "the policy was fitted on pairs (input, input_b), but %zu of the %zu traffic rows have no input_b",
		    r->n - with_b, r->n);
	/* 3. teacher labels the policy never saw */
	size_t known_rows = 0;
	for (i = 0; i < r->n; i++)
		known_rows += r->v[i].teacher >= 0 && tr_labels_find(&p->labels, ts->labels.names[r->v[i].teacher]) >= 0;
	if (r->n && (double)known_rows < TR_TRAFFIC_LABEL_SHARE * (double)r->n)
		add(w, "only %zu of the %zu traffic rows (%.0f%%) have a teacher label among the policy's %d labels: "
		       "the traffic and the policy barely share a label space",
		    known_rows, r->n, 100.0 * (double)known_rows / (double)r->n, p->labels.n);
	return 0;
}

void tr_traffic_warn(const char *verb, const struct tr_traffic_warnings *w)
{
	for (int i = 0; i < w->n; i++)
		fprintf(stderr, "tracer %s: warning: %s\n", verb, w->msg[i]);
}
