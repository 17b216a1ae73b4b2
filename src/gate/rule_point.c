/*
 * rule_point.c - the paper's rule: the loosest threshold whose calibration agreement is >= α (with at
 * least TR_GATE_MIN_ACCEPT accepted rows). Measured only: in-sample agreement promises nothing about
 * new traffic.
 */
#include "gate.h"

#include <stdio.h>

static double point_stat(size_t k, size_t n)
{
	return n ? (double)k / (double)n : 0;
}

static int point_passes(size_t n, size_t k, double alpha, double delta)
{
	(void)delta;
	return n >= TR_GATE_MIN_ACCEPT && point_stat(k, n) >= alpha;
}

static int run_point(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r, struct tr_err *e)
{
	int found = tr_gate_loosest_passing(&tr_rule_point, in, accept_all, point_stat, r, e);
	if (found > 0)
		snprintf(r->reason, sizeof r->reason, "loosest threshold with calibration agreement >= %.3f: %zu/%zu",
			 in->alpha, r->k, r->n);
	else if (found == 0)
		snprintf(r->reason, sizeof r->reason, "no threshold with >= %d accepted reaches agreement %.3f",
			 TR_GATE_MIN_ACCEPT, in->alpha);
	return found < 0 ? -1 : 0;
}

const struct tr_rule tr_rule_point = {
	.name = "point",
	.stat = "agreement",
	.guarantee = NULL,
	.run = run_point,
	.passes = point_passes,
};
