/*
 * rules.c - the table of gate rules and the steps they share (counting, thresholds, the loosest-passing
 * walk). Each rule lives in its own file (rule_point.c, rule_cp_holdout.c, rule_ltt.c).
 *
 * All bounds, tails and quantiles come from GSL.
 */
#include "gate.h"

#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rule table: one line per rule, in the order lists and tables show them. */
static struct tr_registry rules = {{
	&tr_rule_point,
	&tr_rule_cp_holdout,
	&tr_rule_ltt,
	&tr_rule_ltt_plan,
}};

int tr_rule_count(void)
{
	return tr_registry_count(&rules);
}

const struct tr_rule *tr_rule_at(int i)
{
	return i >= 0 && i < tr_rule_count() ? rules.v[i] : NULL;
}

const struct tr_rule *tr_rule_find(const char *name)
{
	return tr_registry_find(&rules, name);
}

int tr_rule_register(const struct tr_rule *r)
{
	return tr_registry_add(&rules, r);
}

const char *tr_rule_list(const char *sep)
{
	static _Thread_local char buf[512];
	return tr_registry_list(&rules, sep, buf, sizeof buf);
}

double tr_cp_lower(size_t k, size_t n, double conf)
{
	if (k == 0 || n == 0)
		return 0;
	return gsl_cdf_beta_Pinv(1 - conf, (double)k, (double)(n - k + 1));
}

double tr_binom_tail(size_t k, size_t n, double p)
{
	if (k == 0)
		return 1;
	if (k > n)
		return 0;
	return gsl_cdf_binomial_Q((unsigned)(k - 1), p, (unsigned)n);
}

long tr_gate_shortfall(const struct tr_rule *rule, size_t n, size_t k, double alpha, double delta)
{
	for (size_t kk = k; kk <= n; kk++)
		if (rule->passes(n, kk, alpha, delta))
			return (long)(kk - k);
	return -1;
}

void tr_gate_result_free(struct tr_gate_result *r)
{
	tr_free(r->steps);
	r->steps = NULL;
	r->n_steps = r->cap_steps = 0;
}

int tr_gate_add_step(struct tr_gate_result *r, struct tr_gate_step s)
{
	if (tr_grow(&r->steps, &r->cap_steps, r->n_steps + 1, sizeof *r->steps))
		return -1;
	r->steps[r->n_steps++] = s;
	return 0;
}

void tr_gate_count(const struct tr_gate_input *in, const size_t *idx, size_t m, double t, size_t *n, size_t *k)
{
	*n = *k = 0;
	for (size_t j = 0; j < m; j++) {
		size_t i = idx ? idx[j] : j;
		if (in->score[i] >= t)
			(*n)++, *k += in->agree[i] != 0;
	}
}

void tr_gate_deploy(struct tr_gate_result *r, const struct tr_gate_input *in, double t, double stat)
{
	r->deployed = 1;
	r->threshold = t;
	tr_gate_count(in, NULL, in->n, t, &r->n, &r->k);
	r->coverage = in->n ? (double)r->n / (double)in->n : 0;
	r->agreement = r->n ? (double)r->k / (double)r->n : 0;
	r->stat = stat;
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x < y) - (x > y);
}

double *tr_gate_thresholds(const struct tr_gate_input *in, const size_t *idx, size_t m, size_t *nt)
{
	double *t = tr_malloc((m + 1) * sizeof *t);
	if (!t)
		return NULL;
	size_t n = 0;
	for (size_t j = 0; j < m; j++) {
		double s = in->score[idx ? idx[j] : j];
		if (isfinite(s))
			t[n++] = s;
	}
	if (n)
		qsort(t, n, sizeof *t, cmp_desc);
	size_t u = 0;
	for (size_t j = 0; j < n; j++)
		if (u == 0 || t[j] != t[u - 1])
			t[u++] = t[j];
	t[u++] = -INFINITY;
	*nt = u;
	return t;
}

int tr_gate_loosest_passing(const struct tr_rule *rule, const struct tr_gate_input *in, int accept_all,
			    double (*stat)(size_t k, size_t n), struct tr_gate_result *r, struct tr_err *e)
{
	size_t nt;
	double *t = tr_gate_thresholds(in, NULL, in->n, &nt);
	if (!t)
		return tr_fail(e, "gate: out of memory");
	double best = NAN, best_stat = 0;
	for (size_t j = accept_all ? nt - 1 : 0; j < nt; j++) {
		size_t n, k;
		tr_gate_count(in, NULL, in->n, t[j], &n, &k);
		double v = stat(k, n);
		int pass = rule->passes(n, k, in->alpha, in->delta);
		if (tr_gate_add_step(r, (struct tr_gate_step){NAN, t[j], n, k, v, 0, pass, 0})) {
			tr_free(t);
			return tr_fail(e, "gate: out of memory");
		}
		if (pass)
			best = t[j], best_stat = v; /* thresholds descend: the last pass is the loosest */
	}
	tr_free(t);
	if (isnan(best))
		return 0;
	tr_gate_deploy(r, in, best, best_stat);
	return 1;
}

int tr_gate_run(const struct tr_rule *rule, const struct tr_gate_input *in, int accept_all,
		struct tr_gate_result *out, struct tr_err *e)
{
	memset(out, 0, sizeof *out);
	out->threshold = NAN;
	if (in->n == 0) {
		snprintf(out->reason, sizeof out->reason, "no calibration rows");
		return 0;
	}
	if (!(in->alpha > 0 && in->alpha < 1))
		return tr_fail(e, "gate: target %g outside (0, 1)", in->alpha);
	if (!(in->delta > 0 && in->delta < 1))
		return tr_fail(e, "gate: delta %g outside (0, 1)", in->delta);
	int rc = rule->run(in, accept_all, out, e);
	if (rc)
		tr_gate_result_free(out);
	return rc;
}
