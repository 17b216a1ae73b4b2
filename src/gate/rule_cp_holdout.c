/*
 * rule_cp_holdout.c - the paper's tool since v0.2: Clopper-Pearson lower bounds on 70% of the
 * calibration rows, the loosest passing threshold confirmed by the point agreement on the other 30%.
 * With fewer than 40 calibration rows, the bound alone on all of them. Measured only: the threshold is
 * chosen on the same rows that bound it, so the bound's confidence does not carry over.
 */
#include "gate.h"

#include <math.h>
#include <stdio.h>

static double cp_stat(size_t k, size_t n)
{
	return tr_cp_lower(k, n, TR_CP_CONF);
}

static int cp_passes(size_t n, size_t k, double alpha, double delta)
{
	(void)delta;
	return n >= TR_GATE_MIN_ACCEPT && cp_stat(k, n) >= alpha;
}

/* Single-set Clopper-Pearson rule (fewer than 40 calibration rows): the loosest passing threshold. */
static int cp_single(const struct tr_gate_input *in, struct tr_gate_result *r, struct tr_err *e)
{
	int found = tr_gate_loosest_passing(&tr_rule_cp_holdout, in, 0, cp_stat, r, e);
	if (found > 0)
		snprintf(r->reason, sizeof r->reason,
			 "fewer than 40 calibration rows: loosest threshold with %.0f%% lower bound %.4f >= %.3f",
			 100 * TR_CP_CONF, r->stat, in->alpha);
	else if (found == 0)
		snprintf(r->reason, sizeof r->reason,
			 "fewer than 40 calibration rows and no %.0f%% lower bound reaches %.3f", 100 * TR_CP_CONF,
			 in->alpha);
	return found < 0 ? -1 : 0;
}

/* The global family: the lower bound of overall calibration agreement. */
static int cp_accept_all(const struct tr_gate_input *in, struct tr_gate_result *r, struct tr_err *e)
{
	size_t n, k;
	tr_gate_count(in, NULL, in->n, -INFINITY, &n, &k);
	double lb = tr_cp_lower(k, n, TR_CP_CONF);
	int pass = lb >= in->alpha;
	if (tr_gate_add_step(r, (struct tr_gate_step){NAN, -INFINITY, n, k, lb, 0, pass, 0}))
		return tr_fail(e, "gate: out of memory");
	if (pass)
		tr_gate_deploy(r, in, -INFINITY, lb);
	snprintf(r->reason, sizeof r->reason, "accept all: %zu/%zu agree, %.0f%% lower bound %.4f %s %.3f", k, n,
		 100 * TR_CP_CONF, lb, pass ? ">=" : "<", in->alpha);
	return 0;
}

static int run_cp_holdout(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r,
			  struct tr_err *e)
{
	if (accept_all)
		return cp_accept_all(in, r, e);
	if (in->n < 40)
		return cp_single(in, r, e);
	int *part = tr_malloc(in->n * sizeof *part);
	size_t *a = tr_malloc(in->n * sizeof *a), *b = tr_malloc(in->n * sizeof *b), na = 0, nb = 0;
	double *t = NULL;
	int rc = -1;
	static const double frac[2] = {0.7, 0.3};
	if (!part || !a || !b) {
		tr_fail(e, "gate: out of memory");
		goto out;
	}
	if (tr_split_grouped(in->n, in->strat, in->group, frac, 2, in->seed, 0, part, e))
		goto out;
	for (size_t i = 0; i < in->n; i++) {
		if (part[i] == 0)
			a[na++] = i;
		else
			b[nb++] = i;
	}
	size_t nt;
	if (!(t = tr_gate_thresholds(in, a, na, &nt))) {
		tr_fail(e, "gate: out of memory");
		goto out;
	}
	/* from highest coverage down: the loosest thresholds first */
	for (size_t j = nt; j-- > 0;) {
		size_t n, k;
		tr_gate_count(in, a, na, t[j], &n, &k);
		double lb = cp_stat(k, n);
		int pass = cp_passes(n, k, in->alpha, in->delta);
		if (tr_gate_add_step(r, (struct tr_gate_step){NAN, t[j], n, k, lb, 0, pass, 0})) {
			tr_fail(e, "gate: out of memory");
			goto out;
		}
		if (!pass)
			continue;
		tr_gate_count(in, b, nb, t[j], &n, &k);
		double agr = n ? (double)k / (double)n : 0;
		int ok = n >= TR_GATE_MIN_ACCEPT && agr >= in->alpha;
		if (tr_gate_add_step(r, (struct tr_gate_step){NAN, t[j], n, k, agr, 1, ok, 0})) {
			tr_fail(e, "gate: out of memory");
			goto out;
		}
		if (ok) {
			tr_gate_deploy(r, in, t[j], lb);
			snprintf(r->reason, sizeof r->reason,
				 "%.0f%% lower bound %.4f >= %.3f on the 70%% part, confirmed on the 30%% part (%zu/%zu)",
				 100 * TR_CP_CONF, lb, in->alpha, k, n);
			break;
		}
	}
	if (!r->deployed)
		snprintf(r->reason, sizeof r->reason,
			 "no threshold has a %.0f%% lower bound >= %.3f on the 70%% part confirmed on the 30%% part",
			 100 * TR_CP_CONF, in->alpha);
	rc = 0;
out:
	tr_free(part), tr_free(a), tr_free(b), tr_free(t);
	return rc;
}

static double cp_confidence(size_t n_cal, double alpha, double delta)
{
	(void)n_cal, (void)alpha, (void)delta;
	return TR_CP_CONF;
}

static void cp_describe(struct tr_buf *b, double delta, double delta_per_family, double conf)
{
	(void)delta, (void)delta_per_family;
	tr_buf_printf(b, ", one-sided Clopper–Pearson at %.0f%% confidence", 100 * conf);
}

const struct tr_rule tr_rule_cp_holdout = {
	.name = "cp-holdout",
	.stat = "lower_bound",
	.guarantee = NULL,
	.run = run_cp_holdout,
	.passes = cp_passes,
	.param = "confidence",
	.param_value = cp_confidence,
	.describe = cp_describe,
};
