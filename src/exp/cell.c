/*
 * cell.c - evaluating one experiment cell and its file format (TR_CELL_FORMAT): one fit (fit.c), then
 * for every rule × target the family the gate deploys is routed on the test rows by tr_route_decide,
 * with the OOD guard `tracer fit` deploys and without it, and measured by tr_metrics_compute: the same
 * code `tracer route` and `tracer eval` run.
 *
 * A result's top-level test_* fields are with the OOD guard (what a user's policy does; PAPER.md
 * reports these); "without_ood" holds the same fields for the gate alone.
 */
#include "exp.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* A threshold in JSON: null accepts every row; "+inf" accepts only what stage 1 handles. */
static json_t *jthreshold(double t)
{
	return isfinite(t) ? json_real(t) : t > 0 ? json_string("+inf") : json_null();
}

static json_t *jnum(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* One stage's scores on the test rows, computed once (stages repeat across rules and targets). */
struct scored {
	const struct tr_acceptor *acc;
	double *score;
	int *pred;
};

struct eval {
	struct tr_fit *f;
	const struct tr_traceset *ts;
	const struct tr_fit_options *o;
	const struct tr_rows *test;
	struct tr_feats X;
	struct tr_ood *ood;
	double *dist;
	int *teacher, *gold;
	struct tr_decision *d;
	size_t *by_label;
	struct scored *sc;
	size_t n_sc, cap_sc;
};

static int stage_scores(struct eval *ev, const struct tr_stage_ref *r, struct tr_stage_scores *out,
			struct tr_err *e)
{
	size_t m = ev->test->n, k = 0;
	while (k < ev->n_sc && ev->sc[k].acc != r->acc)
		k++;
	if (k == ev->n_sc) {
		if (tr_grow(&ev->sc, &ev->cap_sc, k + 1, sizeof *ev->sc))
			return tr_fail(e, "out of memory");
		struct scored *s = &ev->sc[ev->n_sc++];
		*s = (struct scored){r->acc, tr_malloc((m ? m : 1) * sizeof *s->score), tr_malloc((m ? m : 1) * sizeof *s->pred)};
		if (!s->score || !s->pred)
			return tr_fail(e, "out of memory");
		if (tr_stage_score(*r->s, r->acc, &ev->X, s->score, s->pred, e))
			return -1;
	}
	out->score = ev->sc[k].score, out->pred = ev->sc[k].pred;
	return 0;
}

/* The test metrics as cell fields (into o). */
static void metrics_json(json_t *o, const struct tr_metrics *m)
{
	json_object_set_new(o, "test_handled", json_integer((json_int_t)m->handled));
	json_object_set_new(o, "test_coverage", json_real(m->coverage));
	json_object_set_new(o, "test_agreement", jnum(m->agreement));
	json_object_set_new(o, "e2e_agreement", json_real(m->e2e_agreement));
	json_object_set_new(o, "gold_accuracy", jnum(m->gold_accuracy));
	json_object_set_new(o, "violation", json_boolean(m->violation));
}

/* The result of rule × target index t: route the deployed family on the test rows, both ways. */
static json_t *result(struct eval *ev, const struct tr_rule *rule, int t, struct tr_err *e)
{
	const struct tr_fit_options *o = ev->o;
	size_t m = ev->test->n, K = (size_t)ev->ts->labels.n;
	int best = tr_fit_best(ev->f, t);
	const struct tr_fam_result *x = best < 0 ? NULL : tr_fit_result(ev->f, t, best);
	struct tr_stage_scores st[TR_MAX_STAGES];
	int n_stages = x ? x->v.n_stages : 0;
	for (int k = 0; k < n_stages; k++) {
		if (stage_scores(ev, &x->v.stage[k], &st[k], e))
			return NULL;
		st[k].threshold = tr_fit_stage_threshold(x, k);
	}
	json_t *res = json_pack("{s:s, s:f, s:s}", "rule", rule->name, "target", o->targets[t], "family",
				tr_pol_family_name(tr_pol_family_at(best)));
	for (int k = 0; k < TR_MAX_STAGES; k++) {
		char key[32];
		snprintf(key, sizeof key, "stage%d_threshold", k + 1);
		json_object_set_new(res, key, k < n_stages ? jthreshold(st[k].threshold) : json_null());
	}
	json_object_set_new(res, "cal_coverage", json_real(x ? x->r.coverage : 0));
	json_object_set_new(res, "cal_agreement", x ? jnum(x->r.agreement) : json_null());
	json_object_set_new(res, "stat", x ? jnum(x->r.stat) : json_null());
	struct tr_metrics gate_only, guarded;
	tr_route_decide(st, n_stages, NULL, NULL, m, ev->d);
	tr_metrics_compute(ev->d, ev->teacher, ev->gold, m, o->targets[t], &gate_only);
	tr_route_decide(st, n_stages, ev->ood, ev->dist, m, ev->d);
	tr_metrics_compute(ev->d, ev->teacher, ev->gold, m, o->targets[t], &guarded);
	metrics_json(res, &guarded);
	json_object_set_new(res, "ood_deferred", json_integer((json_int_t)guarded.ood));
	json_t *without = json_object();
	metrics_json(without, &gate_only);
	json_object_set_new(res, "without_ood", without);
	/* per teacher label handled counts at the two targets the audit's plateau report reads */
	if (fabs(o->targets[t] - 0.90) < 1e-9 || fabs(o->targets[t] - 0.95) < 1e-9) {
		memset(ev->by_label, 0, K * sizeof *ev->by_label);
		for (size_t i = 0; i < m; i++)
			ev->by_label[ev->test->v[i].teacher] += ev->d[i].handled;
		json_t *by = json_array();
		for (size_t k = 0; k < K; k++)
			json_array_append_new(by, json_integer((json_int_t)ev->by_label[k]));
		json_object_set_new(res, "handled_by_label", by);
	}
	return res;
}

static json_t *cell_json(struct eval *ev, json_t *results)
{
	const struct tr_traceset *ts = ev->ts;
	struct tr_fit_info in;
	tr_fit_info(ev->f, &in);
	size_t m = ev->test->n, K = (size_t)ts->labels.n;
	json_t *hp = json_object(), *names = json_array(), *counts = json_array();
	for (int k = 0; in.backend->hparams[k].name; k++)
		json_object_set_new(hp, in.backend->hparams[k].name, json_real(in.hp[k]));
	memset(ev->by_label, 0, K * sizeof *ev->by_label);
	for (size_t i = 0; i < m; i++)
		ev->by_label[ev->test->v[i].teacher]++;
	for (size_t k = 0; k < K; k++) {
		json_array_append_new(names, json_string(ts->labels.names[k]));
		json_array_append_new(counts, json_integer((json_int_t)ev->by_label[k]));
	}
	json_t *c = json_pack("{s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:o, s:o, s:o, s:o, s:o}", "splits", "used",
			      (json_int_t)in.used, "train", (json_int_t)in.train, "validation", (json_int_t)in.validation,
			      "calibration", (json_int_t)in.calibration, "n_test", (json_int_t)m, "labels", (json_int_t)K,
			      "hyperparameters", hp, "validation_macro_f1", jnum(in.val_f1), "results", results,
			      "label_names", names, "test_by_label", counts);
	if (c && ev->o->oof) /* only oof fits leave calibration rows out (earlier cells keep their bytes) */
		json_object_set_new(json_object_get(c, "splits"), "calibration_dropped",
				    json_integer((json_int_t)in.calibration_dropped));
	return c;
}

int tr_cell_evaluate(const struct tr_traceset *ts, const struct tr_rows *test, const struct tr_fit_options *o,
		     const struct tr_rule *const *rules, int n_rules, struct json_t **out, double *fit_seconds,
		     struct tr_err *e)
{
	*out = NULL;
	if (o->dense)
		return tr_fail(e, "cells take tf-idf features");
	size_t m = test->n, K = (size_t)ts->labels.n;
	struct eval ev = {.ts = ts, .o = o, .test = test};
	size_t *idx = tr_malloc((m ? m : 1) * sizeof *idx);
	json_t *results = json_array(), *cell = NULL;
	int rc = -1;
	double t0 = tr_now();
	ev.dist = tr_malloc((m ? m : 1) * sizeof *ev.dist);
	ev.teacher = tr_malloc((m ? m : 1) * sizeof *ev.teacher);
	ev.gold = tr_malloc((m ? m : 1) * sizeof *ev.gold);
	ev.d = tr_malloc((m ? m : 1) * sizeof *ev.d);
	ev.by_label = tr_malloc((K ? K : 1) * sizeof *ev.by_label);
	if (!idx || !results || !ev.dist || !ev.teacher || !ev.gold || !ev.d || !ev.by_label) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < m; i++) {
		idx[i] = i;
		ev.teacher[i] = test->v[i].teacher;
		ev.gold[i] = test->v[i].gold >= 0 ? test->v[i].gold : TR_NO_GOLD;
	}
	struct tr_fit_info in;
	if (tr_fit_new(ts, ts->name, o, &ev.f, e))
		goto out;
	tr_fit_info(ev.f, &in);
	if (tr_feat_transform_text(in.fz, test->v, idx, m, &ev.X, e) || tr_fit_ood(ev.f, &ev.ood, e) ||
	    tr_ood_distances(ev.ood, &ev.X, NULL, ev.dist, e))
		goto out;
	for (int r = 0; r < n_rules; r++) {
		if (tr_fit_gate(ev.f, rules[r], e))
			goto out;
		for (int t = 0; t < o->n_targets; t++) {
			json_t *res = result(&ev, rules[r], t, e);
			if (!res || json_array_append_new(results, res))
				goto out;
		}
	}
	cell = cell_json(&ev, results);
	results = NULL;
	if (!cell) {
		tr_fail(e, "out of memory");
		goto out;
	}
	*fit_seconds = tr_now() - t0;
	*out = cell;
	rc = 0;
out:
	for (size_t k = 0; k < ev.n_sc; k++)
		tr_free(ev.sc[k].score), tr_free(ev.sc[k].pred);
	tr_free(ev.sc);
	tr_fit_free(ev.f);
	tr_feats_free(&ev.X);
	tr_ood_free(ev.ood);
	tr_free(idx), tr_free(ev.dist), tr_free(ev.teacher), tr_free(ev.gold), tr_free(ev.d), tr_free(ev.by_label);
	json_decref(results);
	return rc;
}
