/*
 * policy.c - a deployed policy from a fit (fit.c): the best family at the chosen target takes the
 * fit's stages, the OOD guard is built on the training rows, and the policy's files are assembled:
 * manifest.json, frontier.json (every family at every target), gate_audit.json (every threshold the
 * gate examined at the target) and report.md.
 */
#include "../common/progress.h"
#include "fit.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tr_threshold_set(json_t *o, const char *key, double t)
{
	char inf[48];
	if ((size_t)snprintf(inf, sizeof inf, "%s_inf", key) >= sizeof inf)
		return -1;
	if (isfinite(t) || isnan(t))
		return json_object_set_new(o, key, tr_json_real(t));
	return json_object_set_new(o, key, json_null()) || json_object_set_new(o, inf, json_string(t > 0 ? "+inf" : "-inf"));
}

double tr_threshold_get(const json_t *o, const char *key)
{
	char inf[48];
	json_t *v = json_object_get(o, key);
	if (json_is_number(v))
		return json_number_value(v);
	if (!json_is_null(v) || (size_t)snprintf(inf, sizeof inf, "%s_inf", key) >= sizeof inf)
		return NAN;
	const char *c = json_string_value(json_object_get(o, inf));
	return c && strcmp(c, "+inf") == 0 ? INFINITY : -INFINITY;
}

static json_t *result_json(const struct tr_fit *f, int fam, const struct tr_fam_result *x)
{
	/* not tried, but a status of its own: a rule that plans passed it over (fit.c) */
	int noted = !x->tried && x->status[0];
	json_t *o = json_pack("{s:s, s:s}", "family", tr_pol_family_at(fam)->name, "status",
			      x->tried || noted ? x->status : "not tried");
	json_object_set_new(o, "reason", json_string(x->tried || noted ? x->r.reason : x->v.why));
	if (f->rule->plans && x->plan.start > 0)
		json_object_set_new(o, "plan", json_pack("{s:i, s:i, s:f}", "start_level", x->plan.start, "backup_level",
							 x->plan.backup, "predicted_coverage", x->plan.expected));
	if (x->tried) { /* what it would deploy; null for a family that cannot (its steps are in gate_audit.json) */
		int d = x->r.deployed;
		json_object_set_new(o, "coverage", d ? tr_json_real(x->r.coverage) : json_null());
		json_object_set_new(o, "agreement", d ? tr_json_real(x->r.agreement) : json_null());
		json_object_set_new(o, "n", d ? json_integer((json_int_t)x->r.n) : json_null());
		json_object_set_new(o, "k", d ? json_integer((json_int_t)x->r.k) : json_null());
		json_object_set_new(o, f->rule->stat, d ? tr_json_real(x->r.stat) : json_null());
		if (d)
			tr_threshold_set(o, "threshold", x->r.threshold);
		else
			json_object_set_new(o, "threshold", json_null());
	}
	for (int k = 0; k + 1 < x->v.n_stages; k++) { /* thresholds of the earlier stages */
		char key[32];
		snprintf(key, sizeof key, "stage%d_threshold", k + 1);
		tr_threshold_set(o, key, x->v.stage[k].threshold);
	}
	return o;
}

static json_t *steps_json(const struct tr_gate_result *r)
{
	json_t *a = json_array();
	for (size_t i = 0; i < r->n_steps; i++) {
		const struct tr_gate_step *s = &r->steps[i];
		json_t *o = json_object();
		tr_threshold_set(o, "threshold", s->threshold);
		json_object_set_new(o, "n", json_integer((json_int_t)s->n));
		json_object_set_new(o, "k", json_integer((json_int_t)s->k));
		json_object_set_new(o, "stat", tr_json_real(s->stat));
		json_object_set_new(o, "pass", json_boolean(s->pass));
		if (!isnan(s->level))
			json_object_set_new(o, "coverage_level", json_real(s->level));
		if (s->part)
			json_object_set_new(o, "holdout_check", json_true());
		if (s->budget > 0) /* ltt, ltt-plan: the level this threshold was tested at */
			json_object_set_new(o, "test_level", json_real(s->budget));
		json_array_append_new(a, o);
	}
	return a;
}

void tr_policy_free(struct tr_policy *p)
{
	if (!p)
		return;
	tr_labels_free(&p->labels);
	tr_featurizer_free(p->fz);
	for (int s = 0; s < TR_MAX_STAGES; s++) {
		tr_surrogate_free(p->st[s].s);
		tr_acceptor_free(&p->st[s].acc);
	}
	tr_ood_free(p->ood);
	json_decref(p->manifest), json_decref(p->frontier), json_decref(p->audit);
	tr_free(p->report);
	tr_free(p->traces);
	tr_free(p);
}

/* Stage 1's surrogate: the policy's once deployed, else still the fit's. */
static const struct tr_surrogate *stage1(const struct tr_fit *f, const struct tr_policy *p)
{
	return p->n_stages ? p->st[0].s : f->s1;
}

/* report.md: the human summary of a fit. */
static char *report(const struct tr_fit *f, const char *spec, const struct tr_policy *p, const json_t *frontier)
{
	struct tr_buf b = {0};
	const struct tr_surrogate *s1 = stage1(f, p);
	const struct tr_rule *rule = f->o->rule;
	json_t *dep = json_object_get(p->manifest, "deployed");
	tr_buf_puts(&b, "# Routing policy\n\n- traces: ");
	tr_buf_md_escape(&b, spec); /* a user's path: nothing in it may become Markdown or HTML */
	if (f->o->oof) /* F both trains (the refit) and validates (out of fold): one count, said once */
		tr_buf_printf(&b, " (%zu used: %zu fit part, out-of-fold for validation; %zu calibration part)\n", f->n,
			      f->ntr, f->nca + f->ca_dropped);
	else
		tr_buf_printf(&b, " (%zu used: %zu train, %zu validation, %zu calibration)\n", f->n, f->ntr, f->nva,
			      f->nca);
	size_t total = f->ts->part[TR_PART_TRACES].n;
	if (f->n < total) /* the cap keeps each label's share rounded to whole groups: the sum can pass the cap */
		tr_buf_printf(&b, "- cap: %zu of %zu traces kept under --cap %zu; %s, so the total can differ from the cap by "
				  "a few rows\n",
			      f->n, total, f->o->cap,
			      f->o->oof ? "a random share of the group keys, blind to labels (the kept traces stay draws from "
					  "the traffic), rounded to whole groups of identical inputs"
					: "each teacher label keeps its share of the cap rounded to whole groups of identical inputs");
	tr_buf_printf(&b, "- surrogate: %s on %s features, chosen", f->fam->name, f->o->dense ? "npy" : "tfidf");
	for (int k = 0; k < f->grid.n_hp; k++)
		tr_buf_printf(&b, " %s=%g", f->fam->hparams[k].name, s1->hp[k]);
	tr_buf_printf(&b, " (validation macro-F1 %.4f)\n", s1->val_f1);
	tr_buf_printf(&b, "- gate: %s, target %.2f, delta %.2f, seed %llu\n", rule->name, f->o->target, f->o->delta,
		      (unsigned long long)f->o->seed);
	if (f->o->crossfit)
		tr_buf_printf(&b, "- calibration: crossfit, %d folds (out-of-fold probabilities; acceptor on %zu rows, gate "
				  "on %zu; validation macro-F1 is fold 0's). **No formal guarantee**: %s.\n",
			      f->o->folds ? f->o->folds : TR_CROSSFIT_FOLDS, f->nva, f->nca, tr_crossfit_caveat);
	else if (f->o->oof && rule->guarantee)
		tr_buf_printf(&b, "- calibration: oof, %d folds (%zu fit rows, out-of-fold; %zu calibration rows tested, %zu "
				  "left out as the other rows of their group; validation macro-F1 is fold 0's).\n"
				  "- guarantee (proven): %s.%s\n",
			      f->o->folds ? f->o->folds : TR_CROSSFIT_FOLDS, f->ntr, f->nca, f->ca_dropped, tr_oof_guarantee,
			      p->ood ? " The OOD guard is on: it defers some of the handled inputs the gate tested, so "
				       "agreement on what it leaves handled is measured, not proven." : "");
	else if (f->o->oof)
		tr_buf_printf(&b, "- calibration: oof, %d folds (%zu fit rows, %zu calibration rows tested).\n- guarantee: "
				  "none (measured only: PAPER.md, honesty study).\n",
			      f->o->folds ? f->o->folds : TR_CROSSFIT_FOLDS, f->ntr, f->nca);
	else if (rule->guarantee)
		tr_buf_printf(&b, "- guarantee (proven): %s.%s\n", rule->guarantee,
			      p->ood ? " The OOD guard is on: it defers some of the handled inputs the gate tested, so "
				       "agreement on what it leaves handled is measured, not proven." : "");
	else
		tr_buf_puts(&b, "- guarantee: none (measured only: PAPER.md, honesty study).\n");
	if (rule->param && strcmp(rule->param, "ltt_start_level") == 0) {
		double dpf = tr_rule_family_delta(rule, f->o->delta, f->n_fam);
		double need = 2 * log(dpf) / log(f->o->target);
		tr_buf_printf(&b, "- ltt start level %.2f: the fixed sequence starts at the threshold that accepts %.0f%% of "
				  "the validation rows and loosens from there. A threshold accepting n calibration rows can "
				  "pass only if α^n ≤ δ per family even when all agree, so the start is the first level "
				  "whose share of the %zu calibration rows reaches 2·ln δ / ln α = %.0f rows (twice that "
				  "minimum); fewer calibration rows start looser (0.05 with thousands, about 0.32 with a "
				  "few hundred).\n",
			      tr_ltt_start_level(f->nca, f->o->target, dpf),
			      100 * tr_ltt_start_level(f->nca, f->o->target, dpf), f->nca, ceil(need));
	} else if (rule->plans) {
		tr_buf_printf(&b, "- ltt-plan start levels (frontier.json, \"plan\"): chosen on %s before any "
				"calibration label is read: the main start is the strictest coverage level whose walk "
				"towards looser thresholds is predicted to cover within %.0f%% of the best walk%s; the "
				"test then runs on calibration rows from %s start.",
			      f->o->oof ? "the fit part's out-of-fold rows" : "validation rows", 100 * TR_PLAN_SLACK,
			      TR_PLAN_BACKUP > 0 ? ", the backup a stricter level under a pessimistic agreement" : "",
			      TR_PLAN_BACKUP > 0 ? "the backup" : "the main");
		size_t i, j;
		json_t *t, *x;
		json_array_foreach(frontier, i, t)
		{
			if (json_real_value(json_object_get(t, "target")) != f->o->target)
				continue;
			json_array_foreach(json_object_get(t, "families"), j, x)
			{
				json_t *plan = json_object_get(x, "plan");
				if (!json_is_object(plan))
					continue;
				json_int_t bk = json_integer_value(json_object_get(plan, "backup_level"));
				tr_buf_printf(&b, " Here %s: main start %.2f", json_string_value(json_object_get(x, "family")),
					      json_integer_value(json_object_get(plan, "start_level")) / 100.0);
				if (bk > 0)
					tr_buf_printf(&b, ", backup %.2f", bk / 100.0);
				tr_buf_puts(&b, ".");
			}
		}
		tr_buf_puts(&b, "\n");
	}
	tr_buf_puts(&b, "\n");
	if (!p->family)
		tr_buf_printf(&b, "**Refused**: no family clears the parity gate at %.2f; every input goes to the "
				  "teacher.\n\n", f->o->target);
	else
		tr_buf_printf(&b, "**Deployed: %s** - calibration coverage %.4f, agreement on handled %.4f (%s %.4g)."
				  "\n\n", p->family->name,
			      json_real_value(json_object_get(dep, "calibration_coverage")),
			      json_real_value(json_object_get(dep, "calibration_agreement")), rule->stat,
			      json_real_value(json_object_get(dep, rule->stat)));
	tr_buf_puts(&b, "## Frontier (calibration rows)\n\n| target |");
	for (int i = 0; i < f->n_fam; i++)
		tr_buf_printf(&b, " %s |", tr_pol_family_at(i)->name);
	tr_buf_puts(&b, " best |\n|---|");
	for (int i = 0; i <= f->n_fam; i++)
		tr_buf_puts(&b, "---|");
	tr_buf_puts(&b, "\n");
	size_t i;
	json_t *t;
	json_array_foreach(frontier, i, t)
	{
		tr_buf_printf(&b, "| %.2f |", json_real_value(json_object_get(t, "target")));
		size_t j;
		json_t *x;
		json_array_foreach(json_object_get(t, "families"), j, x)
		{
			const char *st = json_string_value(json_object_get(x, "status"));
			if (strcmp(st, "deployable") == 0)
				tr_buf_printf(&b, " %.3f cov, %.3f agr |", json_real_value(json_object_get(x, "coverage")),
					      json_real_value(json_object_get(x, "agreement")));
			else
				tr_buf_printf(&b, " %s |", st);
		}
		tr_buf_printf(&b, " %s |\n", json_string_value(json_object_get(t, "best")));
	}
	return b.data;
}

/* frontier.json: every family at every target. */
static json_t *frontier_json(const struct tr_fit *f)
{
	json_t *frontier = json_array();
	for (int t = 0; t < f->o->n_targets; t++) {
		json_t *fams = json_array();
		for (int fam = 0; fam < f->n_fam; fam++)
			json_array_append_new(fams, result_json(f, fam, tr_fit_result(f, t, fam)));
		int b = tr_fit_best(f, t);
		json_array_append_new(frontier, json_pack("{s:f, s:o, s:s}", "target", f->o->targets[t], "families", fams,
							  "best", tr_pol_family_name(tr_pol_family_at(b))));
	}
	return frontier;
}

/* gate_audit.json: every threshold each family's gate examined at target index ti. */
static json_t *audit_json(const struct tr_fit *f, int ti, const struct tr_policy *p)
{
	const struct tr_fit_options *o = f->o;
	json_t *fams = json_array();
	for (int fam = 0; fam < f->n_fam; fam++) {
		const struct tr_fam_result *x = tr_fit_result(f, ti, fam);
		json_t *a = result_json(f, fam, x);
		json_object_set_new(a, "steps", x->tried ? steps_json(&x->r) : json_array());
		json_array_append_new(fams, a);
	}
	double dpf = tr_rule_family_delta(o->rule, o->delta, f->n_fam);
	json_t *audit = json_pack("{s:s, s:i, s:f, s:s, s:f, s:f, s:s, s:I, s:I, s:o, s:s}", "format",
				  "tracer-gate-audit", "version", TR_POLICY_FORMAT, "target", o->target, "rule",
				  o->rule->name, "delta", o->delta, "delta_per_family", dpf, "statistic", o->rule->stat,
				  "calibration_rows", (json_int_t)f->nca, "validation_rows", (json_int_t)f->nva, "families",
				  fams, "deployed", tr_pol_family_name(p->family));
	if (audit && o->rule->param)
		json_object_set_new(audit, o->rule->param, json_real(o->rule->param_value(f->nca, o->target, dpf)));
	if (audit && o->oof) { /* only oof fits carry these keys (earlier audits keep their bytes) */
		json_object_set_new(audit, "calibration", json_string("oof"));
		json_object_set_new(audit, "calibration_rows_per_group", json_string("one row of each group key, drawn "
									     "at random (seeded); the others are not tested"));
		json_object_set_new(audit, "calibration_dropped", json_integer((json_int_t)f->ca_dropped));
	}
	return audit;
}

/* manifest.json: inputs, splits, hyperparameters, the gate and what deployed. */
static json_t *manifest_json(const struct tr_fit *f, const char *spec, int ti, const struct tr_policy *p)
{
	const struct tr_fit_options *o = f->o;
	const struct tr_traceset *ts = f->ts;
	json_t *inputs = json_array(), *labels = json_array(), *targets = json_array(), *hp = json_object();
	for (int i = 0; i < ts->n_inputs; i++)
		json_array_append_new(inputs, json_pack("{s:s, s:s}", "path", ts->inputs[i].path, "sha256",
							ts->inputs[i].sha256));
	for (int i = 0; i < ts->labels.n; i++)
		json_array_append_new(labels, json_string(ts->labels.names[i]));
	for (int i = 0; i < o->n_targets; i++)
		json_array_append_new(targets, json_real(o->targets[i]));
	const struct tr_surrogate *s1 = stage1(f, p);
	for (int k = 0; k < f->grid.n_hp; k++)
		json_object_set_new(hp, f->fam->hparams[k].name, json_real(s1->hp[k]));
	json_t *dep = json_pack("{s:s}", "family", tr_pol_family_name(p->family));
	if (p->family) {
		const struct tr_fam_result *x = tr_fit_result(f, ti, tr_pol_family_index(p->family));
		json_object_set_new(dep, "calibration_coverage", json_real(x->r.coverage));
		json_object_set_new(dep, "calibration_agreement", json_real(x->r.agreement));
		json_object_set_new(dep, "n", json_integer((json_int_t)x->r.n));
		json_object_set_new(dep, "k", json_integer((json_int_t)x->r.k));
		json_object_set_new(dep, o->rule->stat, json_real(x->r.stat));
		for (int k = 0; k < p->n_stages; k++) {
			char key[32];
			snprintf(key, sizeof key, "stage%d_threshold", k + 1);
			tr_threshold_set(dep, key, p->st[k].threshold);
		}
		json_object_set_new(dep, "reason", json_string(x->r.reason));
	} else {
		json_object_set_new(dep, "reason", json_string("no family clears the gate at the target"));
	}
	json_t *m = json_pack(
		"{s:s, s:i, s:s, s:{s:s, s:o}, s:o, s:b, s:s, s:s, s:o, s:o, s:s, s:f, s:o, s:f, s:I, s:I,"
		" s:{s:I, s:I, s:I}, s:f, s:o, s:b}",
		"format", "tracer-policy", "version", TR_POLICY_FORMAT, "tracer", TR_VERSION, "inputs", "traces", spec,
		"files", inputs, "labels", labels, "pairs", ts->pairs, "backend", f->fam->name, "features",
		o->dense ? "npy" : "tfidf", "hyperparameters", hp, "validation_macro_f1",
		isfinite(s1->val_f1) ? json_real(s1->val_f1) : json_null(), "gate", o->rule->name, "target", o->target,
		"targets", targets, "delta", o->delta, "seed", (json_int_t)o->seed, "cap", (json_int_t)o->cap, "splits",
		"train", (json_int_t)f->ntr, "validation", (json_int_t)f->nva, "calibration", (json_int_t)f->nca,
		"min_coverage", TR_MIN_COVERAGE, "deployed", dep, "ood", p->ood != NULL);
	if (m && o->dense)
		json_object_set_new(m, "embedding_dim", json_integer(o->emb_dim));
	if (m) {
		static const int dflt[3] = TR_DEFAULT_SPLIT;
		const int *pc = o->split[0] ? o->split : dflt;
		json_object_set_new(m, "calibration", json_string(tr_calibration_name(o)));
		if (o->oof) {
			int cal = o->oof_cal ? o->oof_cal : TR_OOF_CAL;
			json_object_set_new(m, "folds", json_integer(o->folds ? o->folds : TR_CROSSFIT_FOLDS));
			json_object_set_new(m, "oof_split_percent", json_pack("[i, i]", 100 - cal, cal));
			json_object_set_new(m, "calibration_dropped", json_integer((json_int_t)f->ca_dropped));
		} else if (o->crossfit)
			json_object_set_new(m, "folds", json_integer(o->folds ? o->folds : TR_CROSSFIT_FOLDS));
		else
			json_object_set_new(m, "split_percent", json_pack("[i, i, i]", pc[0], pc[1], pc[2]));
		const char *g = tr_fit_guarantee(o, o->rule);
		json_object_set_new(m, "guarantee", g ? json_string(g) : json_null());
	}
	return m;
}

/* Moves the stages of family result x into p (the fit keeps nothing of them). */
static void take_stages(struct tr_policy *p, const struct tr_fam_result *x)
{
	p->n_stages = x->v.n_stages;
	for (int k = 0; k < x->v.n_stages; k++) {
		const struct tr_stage_ref *r = &x->v.stage[k];
		p->st[k] = (struct tr_stage){*r->s, *r->acc, tr_fit_stage_threshold(x, k)};
		*r->s = NULL, r->acc->lr = NULL;
	}
}

int tr_policy_fit(const struct tr_traceset *ts, const char *spec, const struct tr_fit_options *o,
		  struct tr_policy **out, struct tr_err *e)
{
	*out = NULL;
	int ti = -1;
	for (int i = 0; i < o->n_targets; i++)
		if (fabs(o->targets[i] - o->target) < 1e-12)
			ti = i;
	if (ti < 0)
		return tr_fail(e, "target %.4g is not among --targets", o->target);
	struct tr_fit *f;
	struct tr_policy *p = NULL;
	int rc = -1;
	if (tr_fit_new(ts, spec, o, &f, e))
		return -1;
	if (tr_fit_gate(f, o->rule, e))
		goto out;
	if (!(p = tr_calloc(1, sizeof *p))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	p->family = tr_pol_family_at(tr_fit_best(f, ti));
	p->target = o->target;
	p->pairs = ts->pairs;
	p->frontier = frontier_json(f);
	p->audit = audit_json(f, ti, p);
	if (tr_labels_build(&p->labels, (const char *const *)ts->labels.names, (size_t)ts->labels.n, e))
		goto out;
	if (p->family) { /* keep the deployed stages' models */
		take_stages(p, tr_fit_result(f, ti, tr_pol_family_index(p->family)));
		p->fz = f->fz;
		f->fz = NULL;
		if (o->ood)
			tr_progress_phase(o->progress, "OOD guard");
		if (o->ood && tr_fit_ood(f, &p->ood, e))
			goto out;
	}
	p->manifest = manifest_json(f, spec, ti, p);
	if (!p->manifest || !p->audit || !p->frontier) {
		tr_fail(e, "out of memory building the manifest");
		goto out;
	}
	if (!(p->report = report(f, spec, p, p->frontier))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	rc = 0;
out:
	tr_fit_free(f);
	if (rc) {
		tr_policy_free(p);
		return -1;
	}
	*out = p;
	return 0;
}
