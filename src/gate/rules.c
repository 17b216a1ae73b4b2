/*
 * rules.c - the three threshold rules of the parity gate.
 *
 *   point       the paper's rule: the loosest threshold whose calibration agreement is >= α.
 *   cp-holdout  the paper's tool since v0.2: Clopper-Pearson lower bounds on 70% of the calibration rows,
 *               confirmed by the point agreement on the other 30%.
 *   ltt         ours: Learn-then-Test with fixed-sequence testing. Candidates come from validation
 *               quantiles (fixed before the calibration labels are seen), tested strictest first with the
 *               exact binomial p-value of "agreement < α"; the loosest threshold reached before the first
 *               failure deploys. P(true agreement < α) <= δ for the deployed threshold.
 *
 * All bounds, tails and quantiles come from GSL.
 */
#include "gate.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tr_gate_rule_names[3] = {"point", "cp-holdout", "ltt"};

int tr_gate_rule_parse(const char *name)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(name, tr_gate_rule_names[i]) == 0)
			return i;
	return -1;
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

double tr_ltt_start_level(size_t n_cal, double alpha, double delta)
{
	double need = 2 * log(delta) / log(alpha);
	for (int c = 1; c <= 99; c++)
		if (c / 100.0 * (double)n_cal >= need)
			return c / 100.0;
	return 1.0;
}

long tr_gate_shortfall(enum tr_gate_rule rule, size_t n, size_t k, double alpha, double delta)
{
	if (rule != TR_GATE_LTT && n < TR_GATE_MIN_ACCEPT)
		return -1;
	for (size_t kk = k; kk <= n; kk++) {
		int pass = rule == TR_GATE_POINT	  ? (double)kk >= alpha * (double)n
			   : rule == TR_GATE_CP_HOLDOUT ? tr_cp_lower(kk, n, TR_CP_CONF) >= alpha
						      : n > 0 && tr_binom_tail(kk, n, alpha) <= delta;
		if (pass)
			return (long)(kk - k);
	}
	return -1;
}

void tr_gate_result_free(struct tr_gate_result *r)
{
	tr_free(r->steps);
	r->steps = NULL;
	r->n_steps = r->cap_steps = 0;
}

static int add_step(struct tr_gate_result *r, struct tr_gate_step s)
{
	if (tr_grow(&r->steps, &r->cap_steps, r->n_steps + 1, sizeof *r->steps))
		return -1;
	r->steps[r->n_steps++] = s;
	return 0;
}

/* Accepted and agreeing counts at threshold t over rows `idx` (all rows when idx is NULL). */
static void count(const struct tr_gate_input *in, const size_t *idx, size_t m, double t, size_t *n, size_t *k)
{
	*n = *k = 0;
	for (size_t j = 0; j < m; j++) {
		size_t i = idx ? idx[j] : j;
		if (in->score[i] >= t)
			(*n)++, *k += in->agree[i] != 0;
	}
}

static void deploy(struct tr_gate_result *r, const struct tr_gate_input *in, double t, double stat)
{
	r->deployed = 1;
	r->threshold = t;
	count(in, NULL, in->n, t, &r->n, &r->k);
	r->coverage = in->n ? (double)r->n / (double)in->n : 0;
	r->agreement = r->n ? (double)r->k / (double)r->n : 0;
	r->stat = stat;
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x < y) - (x > y);
}

/* Distinct finite scores of rows idx, descending (strictest threshold first); -INFINITY appended. */
static double *distinct_thresholds(const struct tr_gate_input *in, const size_t *idx, size_t m, size_t *nt)
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
	qsort(t, n, sizeof *t, cmp_desc);
	size_t u = 0;
	for (size_t j = 0; j < n; j++)
		if (u == 0 || t[j] != t[u - 1])
			t[u++] = t[j];
	t[u++] = -INFINITY;
	*nt = u;
	return t;
}

/* The statistic a single-set rule compares with α: in-sample agreement, or its Clopper-Pearson bound. */
static double point_stat(size_t k, size_t n)
{
	return n ? (double)k / (double)n : 0;
}

static double cp_stat(size_t k, size_t n)
{
	return tr_cp_lower(k, n, TR_CP_CONF);
}

/*
 * Walks every distinct calibration score, strictest first (only accept-all for the global family), and
 * deploys the loosest threshold with at least TR_GATE_MIN_ACCEPT accepted rows whose statistic is >= α.
 * Returns 1 if one deployed, 0 if none, -1 on error.
 */
static int loosest_passing(const struct tr_gate_input *in, int accept_all, double (*stat)(size_t, size_t),
			   struct tr_gate_result *r, struct tr_err *e)
{
	size_t nt;
	double *t = distinct_thresholds(in, NULL, in->n, &nt);
	if (!t)
		return tr_fail(e, "gate: out of memory");
	double best = NAN, best_stat = 0;
	for (size_t j = accept_all ? nt - 1 : 0; j < nt; j++) {
		size_t n, k;
		count(in, NULL, in->n, t[j], &n, &k);
		double v = stat(k, n);
		int pass = n >= TR_GATE_MIN_ACCEPT && v >= in->alpha;
		if (add_step(r, (struct tr_gate_step){NAN, t[j], n, k, v, 0, pass})) {
			tr_free(t);
			return tr_fail(e, "gate: out of memory");
		}
		if (pass)
			best = t[j], best_stat = v; /* thresholds descend: the last pass is the loosest */
	}
	tr_free(t);
	if (isnan(best))
		return 0;
	deploy(r, in, best, best_stat);
	return 1;
}

static int run_point(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r, struct tr_err *e)
{
	int found = loosest_passing(in, accept_all, point_stat, r, e);
	if (found > 0)
		snprintf(r->reason, sizeof r->reason, "loosest threshold with calibration agreement >= %.3f: %zu/%zu",
			 in->alpha, r->k, r->n);
	else if (found == 0)
		snprintf(r->reason, sizeof r->reason, "no threshold with >= %d accepted reaches agreement %.3f",
			 TR_GATE_MIN_ACCEPT, in->alpha);
	return found < 0 ? -1 : 0;
}

/* Single-set Clopper-Pearson rule (fewer than 40 calibration rows): the loosest passing threshold. */
static int cp_single(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r,
		     struct tr_err *e)
{
	int found = loosest_passing(in, accept_all, cp_stat, r, e);
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

static int run_cp_holdout(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r,
			  struct tr_err *e)
{
	if (accept_all) { /* global: the lower bound of overall calibration agreement */
		size_t n, k;
		count(in, NULL, in->n, -INFINITY, &n, &k);
		double lb = tr_cp_lower(k, n, TR_CP_CONF);
		int pass = lb >= in->alpha;
		if (add_step(r, (struct tr_gate_step){NAN, -INFINITY, n, k, lb, 0, pass}))
			return tr_fail(e, "gate: out of memory");
		if (pass)
			deploy(r, in, -INFINITY, lb);
		snprintf(r->reason, sizeof r->reason, "accept all: %zu/%zu agree, %.0f%% lower bound %.4f %s %.3f", k, n,
			 100 * TR_CP_CONF, lb, pass ? ">=" : "<", in->alpha);
		return 0;
	}
	if (in->n < 40)
		return cp_single(in, 0, r, e);
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
	if (!(t = distinct_thresholds(in, a, na, &nt))) {
		tr_fail(e, "gate: out of memory");
		goto out;
	}
	/* from highest coverage down: the loosest thresholds first */
	for (size_t j = nt; j-- > 0;) {
		size_t n, k;
		count(in, a, na, t[j], &n, &k);
		double lb = tr_cp_lower(k, n, TR_CP_CONF);
		int pass = n >= TR_GATE_MIN_ACCEPT && lb >= in->alpha;
		if (add_step(r, (struct tr_gate_step){NAN, t[j], n, k, lb, 0, pass})) {
			tr_fail(e, "gate: out of memory");
			goto out;
		}
		if (!pass)
			continue;
		count(in, b, nb, t[j], &n, &k);
		double agr = n ? (double)k / (double)n : 0;
		int ok = n >= TR_GATE_MIN_ACCEPT && agr >= in->alpha;
		if (add_step(r, (struct tr_gate_step){NAN, t[j], n, k, agr, 1, ok})) {
			tr_fail(e, "gate: out of memory");
			goto out;
		}
		if (ok) {
			deploy(r, in, t[j], lb);
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
		count(in, NULL, in->n, t, &n, &k);
		double p = tr_binom_tail(k, n, in->alpha);
		int pass = n > 0 && p <= in->delta;
		if (add_step(r, (struct tr_gate_step){c / 100.0, t, n, k, p, 0, pass})) {
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
		deploy(r, in, last_t, last_p);
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

int tr_gate_run(enum tr_gate_rule rule, const struct tr_gate_input *in, int accept_all,
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
	if (rule == TR_GATE_LTT && !(in->delta > 0 && in->delta < 1))
		return tr_fail(e, "gate: delta %g outside (0, 1)", in->delta);
	int rc = rule == TR_GATE_POINT	    ? run_point(in, accept_all, out, e)
		 : rule == TR_GATE_CP_HOLDOUT ? run_cp_holdout(in, accept_all, out, e)
					      : run_ltt(in, accept_all, out, e);
	if (rc)
		tr_gate_result_free(out);
	return rc;
}
