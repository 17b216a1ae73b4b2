/*
 * audit.c - the reviewer's audit of a fitted policy: the gate decision re-derived from its files, where
 * the surrogate handles and where it defers on given traffic, why it defers, the cost, and (from a
 * sweep) which labels stopped improving as traces accumulated.
 */
#include "report.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double jnum(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static json_t *jreal(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* ---- the gate decision ---- */

/* The threshold (of any family's examined steps) that came closest to passing: fewest extra agreeing rows. */
static json_t *nearest_miss(json_t *audit, const struct tr_rule *rule, double alpha, double delta)
{
	json_t *best = NULL;
	long best_need = LONG_MAX;
	size_t i, j;
	json_t *fam, *st;
	json_array_foreach(json_object_get(audit, "families"), i, fam)
	{
		const char *name = json_string_value(json_object_get(fam, "family"));
		json_array_foreach(json_object_get(fam, "steps"), j, st)
		{
			if (json_is_true(json_object_get(st, "holdout_check")))
				continue;
			size_t n = (size_t)json_integer_value(json_object_get(st, "n"));
			size_t k = (size_t)json_integer_value(json_object_get(st, "k"));
			long need = tr_gate_shortfall(rule, n, k, alpha, delta);
			if (need < 0 || need > best_need || (need == best_need && best &&
							      n <= (size_t)json_integer_value(json_object_get(best, "n"))))
				continue;
			json_decref(best);
			best_need = need;
			best = json_pack("{s:s}", "family", name ? name : "?");
			tr_threshold_set(best, "threshold", tr_threshold_get(st, "threshold"));
			json_object_set_new(best, "n", json_integer((json_int_t)n));
			json_object_set_new(best, "k", json_integer((json_int_t)k));
			json_object_set_new(best, "agreement", jreal(n ? (double)k / (double)n : NAN));
			json_object_set_new(best, "extra_agreeing_needed", json_integer((json_int_t)need));
		}
	}
	return best ? best : json_null();
}

/*
 * The gate's walk for one family of gate_audit.json, for the report's chart: every threshold examined in
 * order (cp-holdout's confirmation on its held-out part left out), with its calibration coverage, the
 * rule's statistic and the bound it had to meet (the step's test level for ltt rules, else α), whether
 * it passed, and which step deployed and where the walk stopped.
 */
static json_t *walk(json_t *fam, double alpha, double cal_rows)
{
	json_t *w = json_array(), *st, *last = NULL;
	double dep = json_is_string(json_object_get(fam, "status")) &&
				     strcmp(json_string_value(json_object_get(fam, "status")), "deployable") == 0
			     ? tr_threshold_get(fam, "threshold")
			     : NAN;
	size_t j;
	json_array_foreach(json_object_get(fam, "steps"), j, st)
	{
		if (json_is_true(json_object_get(st, "holdout_check")))
			continue;
		double n = (double)json_integer_value(json_object_get(st, "n"));
		json_t *lv = json_object_get(st, "test_level");
		json_t *o = json_pack("{s:o, s:o, s:o, s:b}", "coverage", jreal(cal_rows > 0 ? n / cal_rows : NAN), "stat",
				      jreal(jnum(st, "stat")), "bound", jreal(json_is_number(lv) ? json_number_value(lv) : alpha),
				      "pass", json_is_true(json_object_get(st, "pass")));
		if (json_is_true(json_object_get(st, "pass")) && tr_threshold_get(st, "threshold") == dep)
			json_object_set_new(o, "deployed", json_true());
		json_array_append_new(w, o);
		last = o;
	}
	if (last)
		json_object_set_new(last, "stop", json_true());
	return w;
}

static json_t *gate_section(json_t *m, json_t *audit)
{
	const struct tr_rule *rule = tr_rule_find(json_string_value(json_object_get(audit, "rule")));
	double alpha = jnum(audit, "target"), dpf = jnum(audit, "delta_per_family");
	json_t *fams = json_array();
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(audit, "families"), i, f)
	{
		json_t *x = json_deep_copy(f);
		json_object_del(x, "steps");
		json_object_set_new(x, "thresholds_examined", json_integer((json_int_t)json_array_size(json_object_get(f, "steps"))));
		json_object_set_new(x, "walk", walk(f, alpha, jnum(audit, "calibration_rows")));
		json_array_append_new(fams, x);
	}
	json_t *dep = json_object_get(m, "deployed");
	const char *family = json_string_value(json_object_get(dep, "family"));
	json_t *g = json_pack("{s:f, s:s, s:O, s:O, s:O, s:o, s:O}", "target", alpha, "rule",
			      rule ? rule->name : "?", "delta", json_object_get(audit, "delta"), "delta_per_family",
			      json_object_get(audit, "delta_per_family"), "calibration_rows",
			      json_object_get(audit, "calibration_rows"), "families", fams, "deployed", dep);
	if (rule && rule->param)
		json_object_set(g, rule->param, json_object_get(audit, rule->param));
	if (rule && rule->describe) { /* the rule's own words, for the rendered report */
		struct tr_buf b = {0};
		rule->describe(&b, jnum(audit, "delta"), dpf, jnum(audit, rule->param));
		json_object_set_new(g, "rule_detail", json_string(b.data ? b.data : ""));
		tr_buf_free(&b);
	}
	/* what the decision is worth: the rule's proven statement, or crossfit's caveat (manifest.json) */
	json_t *cal = json_object_get(m, "calibration"), *gu = json_object_get(m, "guarantee");
	json_object_set_new(g, "calibration", json_string(json_is_string(cal) ? json_string_value(cal) : "holdout"));
	json_object_set_new(g, "guarantee", json_is_string(gu) ? json_string(json_string_value(gu)) : json_null());
	json_object_set_new(g, "nearest_miss", rule && family && strcmp(family, "refused") == 0
						       ? nearest_miss(audit, rule, alpha, dpf)
						       : json_null());
	return g;
}

/* ---- where it handles and defers ---- */

struct label_stat {
	size_t n, handled, agree;
	size_t best_h, best_d; /* boundary examples: lowest-scoring handled, highest-scoring deferred row */
	double score_h, score_d;
};

static int cmp_share(const void *a, const void *b, const struct label_stat *st)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	double sx = st[x].n ? (double)st[x].handled / (double)st[x].n : 0;
	double sy = st[y].n ? (double)st[y].handled / (double)st[y].n : 0;
	if (sx != sy)
		return sx < sy ? 1 : -1;
	return (x > y) - (x < y);
}

static const struct label_stat *sort_stats; /* qsort has no context argument; audits are single-threaded */
static int cmp_share_q(const void *a, const void *b)
{
	return cmp_share(a, b, sort_stats);
}

struct pair {
	int teacher, top1;
	size_t count;
};

static int cmp_pair(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	if (x->teacher != y->teacher)
		return x->teacher - y->teacher;
	return x->top1 - y->top1;
}

static size_t text_len(const struct tr_trace *t)
{
	return strlen(t->input) + (t->input_b ? strlen(t->input_b) : 0);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

/* The row (of those in `pick` with flag) whose features lie nearest the centroid of those rows. */
static long nearest_centroid(const struct tr_feats *X, const int *pick, size_t n, double *c)
{
	memset(c, 0, ((size_t)X->dim + 1) * sizeof *c);
	size_t cnt = 0;
	for (size_t i = 0; i < n; i++)
		if (pick[i]) {
			cnt++;
			for (const struct tr_node *p = X->rows[i]; p->index != -1; p++)
				c[p->index] += p->value;
		}
	if (!cnt)
		return -1;
	long best = -1;
	double bs = -INFINITY;
	for (size_t i = 0; i < n; i++)
		if (pick[i]) {
			double s = 0;
			for (const struct tr_node *p = X->rows[i]; p->index != -1; p++)
				s += p->value * c[p->index];
			if (s > bs)
				bs = s, best = (long)i;
		}
	return best;
}

int tr_audit_policy(const char *dir, const char *traffic, const struct tr_traceset *ts, const struct tr_rows *rows,
		    const double *emb, size_t emb_rows, int emb_dim, const struct tr_audit_opts *o, struct json_t **out,
		    struct tr_buf *decisions, struct tr_err *e)
{
	*out = NULL;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/gate_audit.json", dir);
	json_error_t jerr;
	json_t *audit = json_load_file(path, 0, &jerr);
	if (!audit)
		return tr_fail(e, "%s:%d: %s", path, jerr.line, jerr.text);
	struct tr_policy *p;
	if (tr_policy_load(dir, &p, e)) {
		json_decref(audit);
		return -1;
	}
	size_t n = rows->n, K = (size_t)ts->labels.n;
	int rc = -1;
	size_t *idx = tr_malloc((n ? n : 1) * sizeof *idx), *lens = tr_malloc((n ? n : 1) * sizeof *lens);
	struct tr_decision *d = tr_malloc((n ? n : 1) * sizeof *d);
	int *pt = tr_malloc((n ? n : 1) * sizeof *pt), *pick = tr_malloc((n ? n : 1) * sizeof *pick);
	struct label_stat *st = tr_calloc(K ? K : 1, sizeof *st);
	size_t *order = tr_malloc((K ? K : 1) * sizeof *order);
	struct pair *pairs = NULL;
	size_t n_pairs = 0, cap_pairs = 0;
	struct tr_feats X = {0};
	double *cen = NULL;
	json_t *rep = NULL;
	if (!idx || !lens || !d || !pt || !pick || !st || !order) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		idx[i] = i;
		pt[i] = tr_labels_find(&p->labels, ts->labels.names[rows->v[i].teacher]);
	}
	if (tr_policy_route(p, rows->v, idx, n, emb, emb_rows, emb_dim, d, e))
		goto out;
	/* decisions file and per-label figures */
	struct tr_metrics met;
	tr_metrics_compute(d, pt, NULL, n, p->target, &met);
	for (size_t i = 0; i < n; i++) {
		const struct tr_trace *t = &rows->v[i];
		struct label_stat *s = &st[t->teacher];
		int ok = d[i].handled && d[i].label == pt[i];
		s->n++;
		if (d[i].handled) {
			s->handled++, s->agree += ok;
			if (s->best_h == 0 || d[i].score < s->score_h)
				s->best_h = i + 1, s->score_h = d[i].score;
		} else if (isfinite(d[i].score) && (s->best_d == 0 || d[i].score > s->score_d)) {
			s->best_d = i + 1, s->score_d = d[i].score;
		}
		/* ood: the guard deferred it (its score may clear the threshold: the guard comes after the stages) */
		json_t *line = json_pack("{s:s, s:s, s:o, s:s, s:o, s:b, s:o, s:I}", "id", t->id, "teacher",
					 ts->labels.names[t->teacher], "label",
					 d[i].handled ? json_string(p->labels.names[d[i].label]) : json_null(), "decision",
					 d[i].handled ? "handled" : "deferred", "score", jreal(d[i].score), "ood", d[i].ood,
					 "top1", d[i].top1 >= 0 ? json_string(p->labels.names[d[i].top1]) : json_null(),
					 "chars", (json_int_t)text_len(t));
		char *s8 = tr_json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(line);
		if (!s8 || tr_buf_puts(decisions, s8) || tr_buf_puts(decisions, "\n")) {
			free(s8);
			tr_fail(e, "out of memory");
			goto out;
		}
		free(s8);
		/* confusions among deferred rows: teacher label vs the surrogate's top-1 */
		if (!d[i].handled && d[i].top1 >= 0 && d[i].top1 != pt[i]) {
			size_t k = 0;
			int top1 = tr_labels_find(&ts->labels, p->labels.names[d[i].top1]);
			while (k < n_pairs && !(pairs[k].teacher == t->teacher && pairs[k].top1 == top1))
				k++;
			if (k == n_pairs) {
				if (tr_grow(&pairs, &cap_pairs, n_pairs + 1, sizeof *pairs)) {
					tr_fail(e, "out of memory");
					goto out;
				}
				pairs[n_pairs++] = (struct pair){t->teacher, top1, 0};
			}
			pairs[k].count++;
		}
	}
	json_t *summary = json_pack("{s:I, s:I, s:f, s:o, s:I}", "n", (json_int_t)n, "handled", (json_int_t)met.handled,
				    "coverage", met.coverage, "agreement_handled", jreal(met.agreement), "ood_deferred",
				    (json_int_t)met.ood);
	for (size_t k = 0; k < K; k++)
		order[k] = k;
	sort_stats = st;
	qsort(order, K, sizeof *order, cmp_share_q);
	json_t *per = json_array();
	for (size_t r = 0; r < K; r++) {
		const struct label_stat *s = &st[order[r]];
		if (!s->n)
			continue;
		json_array_append_new(per, json_pack("{s:s, s:I, s:I, s:f, s:o, s:f}", "label", ts->labels.names[order[r]],
						     "traces", (json_int_t)s->n, "handled", (json_int_t)s->handled,
						     "handled_share", (double)s->handled / (double)s->n, "agreement_handled",
						     jreal(s->handled ? (double)s->agree / (double)s->handled : NAN),
						     "deferred_share", 1 - (double)s->handled / (double)s->n));
	}
	/* input-length terciles */
	for (size_t i = 0; i < n; i++)
		lens[i] = text_len(&rows->v[i]);
	qsort(lens, n, sizeof *lens, cmp_size);
	size_t cut[2] = {n ? lens[(n - 1) / 3] : 0, n ? lens[2 * (n - 1) / 3] : 0};
	json_t *terc = json_array();
	static const char *const tname[3] = {"short", "medium", "long"};
	for (int b = 0; b < 3; b++) {
		size_t cn = 0, ch = 0, ca = 0;
		for (size_t i = 0; i < n; i++) {
			size_t L = text_len(&rows->v[i]);
			int bin = L <= cut[0] ? 0 : L <= cut[1] ? 1 : 2;
			if (bin != b)
				continue;
			cn++, ch += d[i].handled, ca += d[i].handled && d[i].label == pt[i];
		}
		json_array_append_new(terc, json_pack("{s:s, s:o, s:I, s:o, s:o}", "name", tname[b], "max_chars",
						      b < 2 ? json_integer((json_int_t)cut[b]) : json_null(), "n",
						      (json_int_t)cn, "handled_share", jreal(cn ? (double)ch / (double)cn : NAN),
						      "agreement_handled", jreal(ch ? (double)ca / (double)ch : NAN)));
	}
	if (n_pairs > 1) /* pairs is NULL when no deferred row was confused: qsort(NULL, 0) is undefined */
		qsort(pairs, n_pairs, sizeof *pairs, cmp_pair);
	json_t *conf = json_array();
	for (size_t k = 0; k < n_pairs && k < (size_t)o->top; k++)
		json_array_append_new(conf, json_pack("{s:s, s:s, s:I}", "teacher", ts->labels.names[pairs[k].teacher],
						      "top1", pairs[k].top1 >= 0 ? ts->labels.names[pairs[k].top1] : "?",
						      "count", (json_int_t)pairs[k].count));
	/* boundary pairs for the most deferred labels (the end of the sorted list) */
	json_t *bound = json_array();
	for (size_t r = K, shown = 0; r-- > 0 && shown < (size_t)o->top;) {
		const struct label_stat *s = &st[order[r]];
		if (s->n < 2 || s->handled == s->n)
			continue;
		shown++;
		json_t *h = s->best_h ? json_pack("{s:s, s:f}", "input", rows->v[s->best_h - 1].input, "score", s->score_h)
				      : json_null();
		json_t *df = s->best_d ? json_pack("{s:s, s:f}", "input", rows->v[s->best_d - 1].input, "score", s->score_d)
				       : json_null();
		json_array_append_new(bound, json_pack("{s:s, s:f, s:o, s:o}", "label", ts->labels.names[order[r]],
						       "deferred_share", 1 - (double)s->handled / (double)s->n, "handled", h,
						       "deferred", df));
	}
	/* representatives: nearest to the centroid of the handled / deferred rows of a label (tf-idf space) */
	json_t *reps = json_array();
	int text_features = p->fz && tr_featurizer_kind(p->fz) == TR_FEAT_TFIDF;
	if (text_features) {
		if (tr_feat_transform_text(p->fz, rows->v, idx, n, &X, e) ||
		    !(cen = tr_malloc(((size_t)X.dim + 1) * sizeof *cen)))
			goto out;
		for (size_t r = 0, shown = 0; r < K && shown < (size_t)o->top; r++) {
			size_t lab = order[K - 1 - r];
			const struct label_stat *s = &st[lab];
			if (!s->n)
				continue;
			long rep_idx[2];
			for (int want = 1; want >= 0; want--) {
				for (size_t i = 0; i < n; i++)
					pick[i] = (size_t)rows->v[i].teacher == lab && d[i].handled == want;
				rep_idx[1 - want] = nearest_centroid(&X, pick, n, cen);
			}
			shown++;
			json_array_append_new(reps, json_pack("{s:s, s:o, s:o}", "label", ts->labels.names[lab], "handled",
							      rep_idx[0] >= 0 ? json_string(rows->v[rep_idx[0]].input) : json_null(),
							      "deferred",
							      rep_idx[1] >= 0 ? json_string(rows->v[rep_idx[1]].input) : json_null()));
		}
	}
	double cov = met.coverage;
	json_t *cost = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "queries_per_day", o->queries, "cost_per_call",
				 o->cost, "calls_without", o->queries, "calls_with", o->queries * (1 - cov), "cost_without",
				 o->queries * o->cost, "cost_with", o->queries * (1 - cov) * o->cost, "from",
				 "coverage on the audited traffic");
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	rep = json_pack("{s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "format", "tracer-audit", "version",
			1, "policy", dir, "traffic", traffic, "gate", gate_section(p->manifest, audit), "traffic_summary",
			summary, "per_label", per, "length_terciles", terc, "confusions_deferred", conf, "boundary",
			bound, "representatives", reps, "cost", cost);
	if (!rep) {
		tr_fail(e, "out of memory building the report");
		goto out;
	}
	if (!text_features)
		json_object_set_new(rep, "representatives_note",
				    json_string(p->fz ? "representatives need tf-idf features" : "refused policy: no surrogate"));
	*out = rep;
	rc = 0;
out:
	tr_free(idx), tr_free(lens), tr_free(d), tr_free(pt), tr_free(pick), tr_free(st), tr_free(order);
	tr_free(pairs), tr_free(cen);
	tr_feats_free(&X);
	tr_policy_free(p);
	json_decref(audit);
	return rc;
}

/* ---- plateaus over trace count ---- */

int tr_audit_plateaus(const struct tr_spec *s, const char *results, const char *set, const char *rule,
		      double target, struct json_t **out, struct tr_err *e)
{
	*out = NULL;
	struct tr_cell *cells;
	size_t n;
	if (tr_spec_cells(s, &cells, &n, e))
		return -1;
	/* one cell per trace count: seed s->seeds[0], official protocol */
	json_t *counts = json_array(), *labels = NULL, *share = json_object(), *coverage = json_array();
	for (int t = 0; t < s->n_traces; t++) {
		const struct tr_cell *c = NULL;
		for (size_t i = 0; i < n && !c; i++)
			if (strcmp(cells[i].set, set) == 0 && cells[i].traces == s->traces[t] &&
			    cells[i].seed == s->seeds[0] && cells[i].protocol == (enum tr_protocol)s->protocols[0])
				c = &cells[i];
		if (!c)
			continue;
		char path[PATH_MAX];
		tr_cell_path(results, s, c, path, sizeof path);
		json_t *cell = json_load_file(path, 0, NULL);
		if (!cell)
			continue;
		json_t *names = json_object_get(cell, "label_names"), *tbl = json_object_get(cell, "test_by_label");
		json_t *hbl = NULL;
		size_t k;
		json_t *r;
		json_array_foreach(json_object_get(cell, "results"), k, r)
		{
			const char *rr = json_string_value(json_object_get(r, "rule"));
			if (rr && strcmp(rr, rule) == 0 && fabs(jnum(r, "target") - target) < 1e-9)
				hbl = json_object_get(r, "handled_by_label");
		}
		if (hbl && json_is_array(names) && json_array_size(hbl) == json_array_size(names)) {
			if (!labels)
				labels = json_deep_copy(names);
			json_array_append_new(counts, json_integer((json_int_t)jnum(json_object_get(cell, "splits"), "used")));
			double sh = 0, st = 0;
			for (size_t l = 0; l < json_array_size(names); l++)
				sh += (double)json_integer_value(json_array_get(hbl, l)),
					st += (double)json_integer_value(json_array_get(tbl, l));
			json_array_append_new(coverage, jreal(st > 0 ? sh / st : NAN));
			for (size_t l = 0; l < json_array_size(names); l++) {
				const char *nm = json_string_value(json_array_get(names, l));
				double tot = (double)json_integer_value(json_array_get(tbl, l));
				json_t *a = json_object_get(share, nm);
				if (!a)
					json_object_set_new(share, nm, a = json_array());
				json_array_append_new(a, jreal(tot > 0 ? (double)json_integer_value(json_array_get(hbl, l)) / tot : NAN));
			}
		}
		json_decref(cell);
	}
	tr_free(cells);
	if (!labels) {
		json_decref(counts), json_decref(share), json_decref(coverage);
		return tr_fail(e, "%s: no finished cells with per-label results for %s, %s at %.2f in %s", s->name, set, rule,
			       target, results);
	}
	json_t *per = json_array(), *plateaued = json_array();
	size_t nc = json_array_size(counts);
	for (size_t l = 0; l < json_array_size(labels); l++) {
		const char *nm = json_string_value(json_array_get(labels, l));
		json_t *a = json_object_get(share, nm), *deltas = json_array();
		for (size_t k = 1; k < json_array_size(a); k++) {
			double x = json_number_value(json_array_get(a, k)), y = json_number_value(json_array_get(a, k - 1));
			json_array_append_new(deltas, jreal(x - y));
		}
		/* stopped improving: the last step gained under 1 pp while the label is still under 95% handled */
		double last = nc ? json_number_value(json_array_get(a, nc - 1)) : NAN;
		double gain = nc >= 2 ? json_number_value(json_array_get(deltas, nc - 2)) : NAN;
		int plateau = nc >= 2 && isfinite(last) && isfinite(gain) && gain < 0.01 && last < 0.95;
		if (plateau)
			json_array_append_new(plateaued, json_string(nm));
		json_array_append_new(per, json_pack("{s:s, s:O, s:o, s:b}", "label", nm, "handled_share", a, "deltas",
						     deltas, "plateau", plateau));
	}
	*out = json_pack("{s:s, s:s, s:s, s:f, s:o, s:o, s:o, s:o}", "spec", s->name, "set", set, "rule", rule, "target",
			 target, "trace_counts", counts, "coverage", coverage, "labels", per, "plateaued", plateaued);
	json_decref(labels), json_decref(share);
	return *out ? 0 : tr_fail(e, "out of memory");
}
