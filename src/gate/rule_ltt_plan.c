/*
 * rule_ltt_plan.c - the `ltt-plan` gate rule: Learn-then-Test whose whole test plan is made on validation rows.
 *
 * ltt tests every family at δ/3 with one fixed sequence that starts at the strictest level the
 * calibration size allows, so a single unlucky step at a handful of rows stops it. ltt-plan spends the
 * same δ differently, deciding everything that could bias the test before it sees a calibration label:
 *
 *   1. Candidates: the same thresholds as ltt, the validation-score quantiles at coverage levels
 *      c = 1..100% (100% = accept everything).
 *   2. Plan (validation only): for each level, the validation agreement predicts the chance that the
 *      calibration test passes there, and each start s gets the predicted coverage of a walk from s
 *      towards looser thresholds. That prediction is flat over a wide range of starts (a walk from a
 *      stricter start passes levels that pass anyway), so the start is the strictest level predicted to
 *      cover at least 1 - TR_PLAN_SLACK of the best start's coverage: where validation rows are more
 *      optimistic than the calibration rows (out-of-fold rows of fold models, the label mix of a split),
 *      the looser starts fail first. TR_PLAN_BACKUP > 0 adds a stricter backup start chosen the same way
 *      under a pessimistic agreement (the 90% Clopper-Pearson lower bound of the validation counts).
 *   3. Family: each family is planned, and only the one with the highest predicted coverage is tested
 *      (tr_ltt_plan_choose, called by fit.c for rules with `plans`), at the full δ instead of δ/3. The
 *      accept-all family is the last step of l2d's sequence, not a competitor (fit.c).
 *   4. Test (calibration): the fallback procedure on the hypotheses H_c: "agreement at t_c < α", in the
 *      order b, b+1, ..., 100, with weight φ = TR_PLAN_BACKUP on b and 1-φ on s (φ = 0, no backup: the
 *      fixed sequence from s at the full δ). H_c is tested at δ_c = w_c δ + δ_{c-1} when H_{c-1} was
 *      rejected, else w_c δ, with the exact binomial p-value. The loosest rejected threshold deploys.
 *
 * Both constants were chosen on scratch seeds outside every committed study (PAPER.md, "Where
 * ltt-plan's coverage went").
 *
 * Why the promise holds: the thresholds, the order, the weights and the family are functions of the
 * train and validation rows only, so given them the calibration rows are fresh draws and each p-value is
 * valid for its H_c. The fallback procedure is a shortcut of a Bonferroni-based closed test and controls
 * the family-wise error rate at δ under any dependence between the p-values; the deployed threshold is a
 * rejected H_c, so P(its agreement < α) <= P(some true H_c is rejected) <= δ.
 */
#include "gate.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEVELS 100

/* Per level c (index c-1): threshold, validation rows accepted and agreeing. */
struct ladder {
	double t[LEVELS];
	size_t nv[LEVELS], kv[LEVELS];
};

static int cmp_asc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int build_ladder(const double *vs, const int *va, size_t n_val, struct ladder *L, struct tr_err *e)
{
	double *sorted = tr_malloc((n_val ? n_val : 1) * sizeof *sorted);
	if (!sorted)
		return tr_fail(e, "gate: out of memory");
	memcpy(sorted, vs, n_val * sizeof *sorted);
	qsort(sorted, n_val, sizeof *sorted, cmp_asc);
	for (int c = 1; c <= LEVELS; c++) {
		double t = -INFINITY;
		if (c < LEVELS) {
			t = gsl_stats_quantile_from_sorted_data(sorted, 1, n_val, 1 - c / 100.0);
			if (isnan(t))
				t = INFINITY;
		}
		size_t n = 0, k = 0;
		for (size_t i = 0; i < n_val; i++)
			if (vs[i] >= t)
				n++, k += va[i] != 0;
		L->t[c - 1] = t, L->nv[c - 1] = n, L->kv[c - 1] = k;
	}
	tr_free(sorted);
	return 0;
}

/* Smallest k with P(Bin(n, α) >= k) <= d, or n + 1 when even n of n does not pass. */
static size_t needed(size_t n, double alpha, double d)
{
	if (n == 0 || tr_binom_tail(n, n, alpha) > d)
		return n + 1;
	size_t lo = 0, hi = n; /* tail(hi) <= d, find the smallest such */
	while (lo + 1 < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (tr_binom_tail(mid, n, alpha) <= d)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/*
 * Predicted pass probability of each level's test at level d on n_cal calibration rows, with the
 * validation agreement taken as the truth: smoothed as (k + 1) / (n + 2), so that a level with few
 * validation rows, all agreeing, is not predicted to pass for sure (pessimistic: the 90% Clopper-Pearson
 * lower bound instead).
 */
static void pass_probs(const struct ladder *L, size_t n_val, size_t n_cal, double alpha, double d, int pessimistic,
		       double *pi)
{
	for (int c = 0; c < LEVELS; c++) {
		pi[c] = 0;
		if (L->nv[c] == 0 || n_val == 0)
			continue;
		size_t n = (size_t)lround((double)n_cal * (double)L->nv[c] / (double)n_val);
		double a = pessimistic ? tr_cp_lower(L->kv[c], L->nv[c], 0.90)
				       : ((double)L->kv[c] + 1) / ((double)L->nv[c] + 2);
		size_t k = needed(n, alpha, d);
		if (k <= n)
			pi[c] = a >= 1 ? 1 : tr_binom_tail(k, n, a);
	}
}

/*
 * Predicted coverage of a fixed-sequence walk from level s (index) towards looser levels: each level's
 * coverage increment counts with the smallest pass probability met on the way (nested thresholds make
 * the tests move together).
 */
static double walk_value(const struct ladder *L, size_t n_val, const double *pi, int s)
{
	double v = 0, m = 1, prev = 0;
	for (int c = s; c < LEVELS; c++) {
		m = fmin(m, pi[c]);
		double cov = (double)L->nv[c] / (double)n_val;
		if (c == LEVELS - 1)
			cov = 1;
		if (cov > prev)
			v += (cov - prev) * m, prev = cov;
	}
	return v;
}

/*
 * The strictest start below `below` whose walk is predicted to cover at least 1 - TR_PLAN_SLACK of the
 * best walk's coverage, or -1 when no walk predicts any.
 */
static int best_start(const struct ladder *L, size_t n_val, const double *pi, int below, double *value)
{
	double v[LEVELS], best = 0;
	*value = 0;
	for (int s = 0; s < below; s++)
		v[s] = walk_value(L, n_val, pi, s), best = fmax(best, v[s]);
	if (best <= 1e-12) /* no walk predicts any coverage */
		return -1;
	for (int s = 0; s < below; s++)
		if (v[s] >= (1 - TR_PLAN_SLACK) * best * (1 - 1e-12)) {
			*value = v[s];
			return s;
		}
	return -1;
}

int tr_ltt_plan(const double *val_score, const int *val_agree, size_t n_val, size_t n_cal, double alpha,
		double delta, int accept_all, struct tr_plan *p, struct tr_err *e)
{
	memset(p, 0, sizeof *p);
	p->start = p->backup = -1;
	p->predicted_level = -1;
	if (accept_all) { /* one hypothesis: everything accepted */
		size_t n = 0, k = 0;
		for (size_t i = 0; i < n_val; i++)
			n++, k += val_agree[i] != 0;
		p->start = LEVELS;
		if (n) {
			size_t need = needed(n_cal, alpha, delta);
			p->expected = need <= n_cal ? tr_binom_tail(need, n_cal, ((double)k + 1) / ((double)n + 2)) : 0;
		}
		p->predicted_level = p->expected >= 0.5 ? LEVELS : -1;
		return 0;
	}
	if (n_val == 0 || n_cal == 0)
		return 0;
	struct ladder L;
	double pi[LEVELS], pb[LEVELS], v, vb;
	if (build_ladder(val_score, val_agree, n_val, &L, e))
		return -1;
	pass_probs(&L, n_val, n_cal, alpha, (1 - TR_PLAN_BACKUP) * delta, 0, pi);
	int s = best_start(&L, n_val, pi, LEVELS, &v);
	if (s < 0)
		return 0;
	p->start = s + 1;
	p->expected = v;
	if (TR_PLAN_BACKUP > 0) {
		pass_probs(&L, n_val, n_cal, alpha, TR_PLAN_BACKUP * delta, 1, pb);
		int b = best_start(&L, n_val, pb, s, &vb);
		if (b >= 0)
			p->backup = b + 1;
	}
	/* where the walk is expected to stop: the loosest level reached with even odds */
	double m = 1;
	for (int c = s; c < LEVELS && (m = fmin(m, pi[c])) >= 0.5; c++)
		p->predicted_level = c + 1;
	if (p->predicted_level > 0)
		p->predicted_threshold = L.t[p->predicted_level - 1];
	return 0;
}

static int plan_passes(size_t n, size_t k, double alpha, double delta)
{
	return n > 0 && tr_binom_tail(k, n, alpha) <= delta;
}

static int run_ltt_plan(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r, struct tr_err *e)
{
	if (!in->val_agree)
		return tr_fail(e, "gate: ltt-plan needs validation agreement flags");
	struct tr_plan p;
	if (tr_ltt_plan(in->val_score, in->val_agree, in->n_val, in->n, in->alpha, in->delta, accept_all, &p, e))
		return -1;
	if (p.start < 0) {
		snprintf(r->reason, sizeof r->reason,
			 "the plan predicts no level passes at %.3f with %zu calibration rows: nothing tested",
			 in->alpha, in->n);
		return 0;
	}
	struct ladder L;
	if (accept_all) {
		L.t[LEVELS - 1] = -INFINITY;
	} else if (build_ladder(in->val_score, in->val_agree, in->n_val, &L, e)) {
		return -1;
	}
	int first = p.backup > 0 ? p.backup : p.start;
	double w_backup = p.backup > 0 ? TR_PLAN_BACKUP : 0;
	double level = 0, best_t = NAN, best_p = 0;
	int prev_rejected = 0, best_c = 0;
	for (int c = first; c <= LEVELS; c++) {
		double w = (c == p.backup ? w_backup : 0) + (c == p.start ? 1 - w_backup : 0);
		level = w * in->delta + (prev_rejected ? level : 0);
		double t = L.t[c - 1];
		size_t n, k;
		tr_gate_count(in, NULL, in->n, t, &n, &k);
		double pv = tr_binom_tail(k, n, in->alpha);
		int pass = level > 0 && plan_passes(n, k, in->alpha, level);
		if (tr_gate_add_step(r, (struct tr_gate_step){c / 100.0, t, n, k, pv, 0, pass, level}))
			return tr_fail(e, "gate: out of memory");
		if (pass)
			best_t = t, best_p = pv, best_c = c;
		prev_rejected = pass;
		/* nothing carried: only the main start has weight left */
		if (!pass && c >= p.start)
			break;
		if (!pass && c + 1 < p.start)
			c = p.start - 1;
	}
	char seq[96];
	if (p.backup > 0)
		snprintf(seq, sizeof seq, "fallback sequence (backup start %d%%, main start %d%%", p.backup, p.start);
	else
		snprintf(seq, sizeof seq, "fixed sequence (start %d%%", p.start);
	if (isnan(best_t)) {
		snprintf(r->reason, sizeof r->reason, "%s): no threshold rejected at its level", seq);
		return 0;
	}
	tr_gate_deploy(r, in, best_t, best_p);
	snprintf(r->reason, sizeof r->reason,
		 "%s, planned before the test): loosest rejected level %d%%, %zu/%zu agree, p=%.3g", seq, best_c,
		 r->k, r->n, best_p);
	return 0;
}

int tr_ltt_plan_choose(const struct tr_gate_input *fams, const int *accept_all, int n_fams, struct tr_plan *plans,
		       struct tr_err *e)
{
	int best = -1;
	for (int f = 0; f < n_fams; f++) {
		if (!fams[f].val_agree) {
			plans[f] = (struct tr_plan){.start = -1, .backup = -1, .predicted_level = -1};
			continue;
		}
		if (tr_ltt_plan(fams[f].val_score, fams[f].val_agree, fams[f].n_val, fams[f].n, fams[f].alpha,
				fams[f].delta, accept_all[f], &plans[f], e))
			return -2;
		if (plans[f].start > 0 && (best < 0 || plans[f].expected > plans[best].expected + 1e-12))
			best = f;
	}
	return best;
}

static double plan_backup_share(size_t n_cal, double alpha, double delta)
{
	(void)n_cal, (void)alpha, (void)delta;
	return TR_PLAN_BACKUP;
}

static void plan_describe(struct tr_buf *b, double delta, double delta_per_family, double share)
{
	if (share > 0)
		tr_buf_printf(b, ", δ = %.2f (%.4f for the one family the plan chose; fallback sequence with %.0f%% of it "
				 "on a stricter backup start)",
			      delta, delta_per_family, 100 * share);
	else
		tr_buf_printf(b, ", δ = %.2f (%.4f for the one family the plan chose; fixed sequence from the planned "
				 "start)",
			      delta, delta_per_family);
}

const struct tr_rule tr_rule_ltt_plan = {
	.name = "ltt-plan",
	.stat = "p_value",
	.guarantee = "P(agreement on handled traffic < α) <= δ, on the handled set before the OOD guard, when "
		     "calibration rows and future traffic are independent draws from one distribution (rows sharing a "
		     "group key are not independent; the split is stratified by label, so the calibration rows' label mix "
		     "follows the training rows' and the test is optimistic when the traces are such draws; whether rsb "
		     "competes depends on how many calibration rows fall below its stage-1 threshold, a label-free but "
		     "calibration-dependent choice the proof does not cover)",
	.run = run_ltt_plan,
	.passes = plan_passes,
	.param = "backup_share",
	.param_value = plan_backup_share,
	.describe = plan_describe,
	.plans = 1,
};
