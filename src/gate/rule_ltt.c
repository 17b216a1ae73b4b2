/*
 * rule_ltt.c - ours: Learn-then-Test with fixed-sequence testing. Candidates come from validation
 * quantiles (fixed before the calibration labels are seen), tested strictest first with the exact
 * binomial p-value of "agreement < α"; the loosest threshold reached before the first failure deploys.
 * Proven: P(true agreement < α) <= δ for the deployed threshold when calibration and future traffic
 * are exchangeable.
 */
#include "gate.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

double tr_ltt_start_level(size_t n_cal, double alpha, double delta)
{
	double need = 2 * log(delta) / log(alpha);
	for (int c = 1; c <= 99; c++)
		if (c / 100.0 * (double)n_cal >= need)
			return c / 100.0;
	return 1.0;
}

static int ltt_passes(size_t n, size_t k, double alpha, double delta)
{
	return n > 0 && tr_binom_tail(k, n, alpha) <= delta;
}

static int run_ltt(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r, struct tr_err *e)
{
	double start = accept_all ? 1.0 : tr_ltt_start_level(in->n, in->alpha, in->delta);
	double *sorted = NULL;
	if (!accept_all) {
		if (in->n_val == 0) {
			snprintf(r->reason, sizeof r->reason, "no validation rows: ltt has no candidate thresholds");
			return 0;
		}
		if (!(sorted = tr_malloc(in->n_val * sizeof *sorted)))
			return tr_fail(e, "gate: out of memory");
		memcpy(sorted, in->val_score, in->n_val * sizeof *sorted);
		gsl_sort(sorted, 1, in->n_val);
	}
	double last_t = NAN, last_p = 0, first_p = NAN;
	size_t tested = 0;
	for (int c = (int)lround(start * 100); c <= 100; c++) {
		double t;
		if (c == 100)
			t = -INFINITY; /* accept all */
		else {
			t = gsl_stats_quantile_from_sorted_data(sorted, 1, in->n_val, 1 - c / 100.0);
			if (isnan(t))
				t = INFINITY;
		}
		size_t n, k;
		tr_gate_count(in, NULL, in->n, t, &n, &k);
		double p = tr_binom_tail(k, n, in->alpha);
		int pass = ltt_passes(n, k, in->alpha, in->delta);
		if (tr_gate_add_step(r, (struct tr_gate_step){c / 100.0, t, n, k, p, 0, pass, in->delta})) {
			tr_free(sorted);
			return tr_fail(e, "gate: out of memory");
		}
		if (tested++ == 0)
			first_p = p;
		if (!pass)
			break;
		last_t = t, last_p = p;
	}
	tr_free(sorted);
	if (!isnan(last_t)) {
		tr_gate_deploy(r, in, last_t, last_p);
		snprintf(r->reason, sizeof r->reason,
			 "fixed sequence from coverage %.0f%%: loosest threshold reached %zu/%zu agree, p=%.3g <= %.3g",
			 100 * start, r->k, r->n, last_p, in->delta);
	} else {
		const struct tr_gate_step *s = &r->steps[0];
		snprintf(r->reason, sizeof r->reason,
			 "fixed sequence from coverage %.0f%%: first threshold accepted %zu/%zu, %zu agree, p=%.3g > "
			 "%.3g: stop",
			 100 * start, s->n, in->n, s->k, first_p, in->delta);
	}
	return 0;
}

static double ltt_start(size_t n_cal, double alpha, double delta)
{
	return tr_ltt_start_level(n_cal, alpha, delta);
}

static void ltt_describe(struct tr_buf *b, double delta, double delta_per_family, double start)
{
	tr_buf_printf(b, ", δ = %.2f (%.4f per family; fixed sequence from coverage level %.2f)", delta,
		      delta_per_family, start);
}

const struct tr_rule tr_rule_ltt = {
	.name = "ltt",
	.stat = "p_value",
	.guarantee = "P(agreement on handled traffic < α) <= δ for the global and l2d families, on the handled set before "
		     "the OOD guard, when calibration rows and future traffic are independent draws from one distribution "
		     "(rows sharing a group key are not independent; the split is stratified by label, so the calibration "
		     "rows' label mix follows the training rows' and the test is optimistic when the traces are such "
		     "draws); rsb's stage-1 threshold is chosen on calibration rows, so for rsb the promise is measured only",
	.run = run_ltt,
	.passes = ltt_passes,
	.param = "ltt_start_level",
	.param_value = ltt_start,
	.describe = ltt_describe,
};
