/*
 * Unit tests of the gate rules: Clopper-Pearson and binomial tails against known values, the threshold
 * walk of each rule on hand-made scores, refusal, monotonicity in α, and the statistical promise: over
 * many seeds, ltt's deployed policy falls below α at most about δ of the time, the point rule far more.
 */
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/gate/gate.h"
#include "unit.h"

static void test_bounds(void)
{
	CHECK(fabs(tr_cp_lower(22, 22, 0.90) - 0.9006) < 1e-4, "22/22 at 90%%: %.5f", tr_cp_lower(22, 22, 0.90));
	CHECK(tr_cp_lower(45, 45, 0.90) >= 0.95 && tr_cp_lower(44, 44, 0.90) < 0.95, "45/45 needed for 0.95");
	CHECK(tr_cp_lower(0, 10, 0.90) == 0, "no successes");
	CHECK(fabs(tr_binom_tail(8, 10, 0.5) - 56.0 / 1024) < 1e-12, "P(B(10,.5) >= 8) = %.6f", tr_binom_tail(8, 10, 0.5));
	CHECK(tr_binom_tail(0, 10, 0.9) == 1 && tr_binom_tail(11, 10, 0.9) == 0, "tail edges");
	CHECK(fabs(tr_binom_tail(22, 22, 0.9) - pow(0.9, 22)) < 1e-12, "all agree: alpha^n");
	CHECK(fabs(tr_ltt_start_level(1000, 0.95, 0.1 / 3) - 0.14) < 1e-12, "ltt start %.2f",
	      tr_ltt_start_level(1000, 0.95, 0.1 / 3));
	CHECK(tr_ltt_start_level(10, 0.99, 0.1) == 1.0, "too few rows: only accept-all is left");
	/* the audit's nearest miss: extra agreeing rows needed */
	CHECK(tr_gate_shortfall(&tr_rule_point, 20, 17, 0.9, 0.1) == 1, "point: 18 of 20 needed");
	CHECK(tr_gate_shortfall(&tr_rule_point, 5, 5, 0.9, 0.1) == -1, "point: under 10 accepted never passes");
	CHECK(tr_gate_shortfall(&tr_rule_cp_holdout, 22, 21, 0.9, 0.1) == 1, "cp: 22/22 reaches 0.9006");
	CHECK(tr_gate_shortfall(&tr_rule_ltt, 22, 20, 0.9, 0.1) == 2, "ltt: 22/22 gives p = 0.098");
	CHECK(tr_gate_shortfall(&tr_rule_ltt, 21, 21, 0.9, 0.1) == -1, "ltt: 21/21 gives p = 0.109 > 0.1");
}

/* n rows with scores n..1 (as i/n); the `good` highest-scoring rows agree. */
static void ramp(size_t n, size_t good, double *score, int *agree, int *strat, const char **group, char keys[][8])
{
	for (size_t i = 0; i < n; i++) {
		score[i] = (double)(n - i) / (double)n;
		agree[i] = i < good;
		strat[i] = (int)(i % 3);
		snprintf(keys[i], 8, "k%zu", i);
		group[i] = keys[i];
	}
}

static void test_walks(void)
{
	enum { N = 200 };
	static double score[N];
	static int agree[N], strat[N];
	static const char *group[N];
	static char keys[N][8];
	struct tr_err e;
	struct tr_gate_result r;
	/* point: 20 rows, top 15 agree: at α = 0.8 the loosest passing threshold accepts 18 (15/18) */
	ramp(20, 15, score, agree, strat, group, keys);
	struct tr_gate_input in = {.n = 20, .score = score, .agree = agree, .strat = strat, .group = group,
				   .n_val = 20, .val_score = score, .alpha = 0.8, .delta = 0.1, .seed = 1};
	CHECK(tr_gate_run(&tr_rule_point, &in, 0, &r, &e) == 0 && r.deployed && r.n == 18 && r.k == 15,
	      "point: n=%zu k=%zu", r.n, r.k);
	CHECK(r.n_steps == 21, "point examines every distinct score and accept-all: %zu", r.n_steps);
	tr_gate_result_free(&r);
	/* cp-holdout with fewer than 40 rows: single-set Clopper-Pearson, loosest passing */
	in.alpha = 0.7;
	size_t want = 0;
	for (size_t n = 10; n <= 20; n++)
		if (tr_cp_lower(n < 15 ? n : 15, n, 0.9) >= 0.7)
			want = n;
	CHECK(tr_gate_run(&tr_rule_cp_holdout, &in, 0, &r, &e) == 0 && r.deployed && r.n == want,
	      "cp single: n=%zu, want %zu", r.n, want);
	tr_gate_result_free(&r);
	/* ltt: 200 rows, top 150 agree, α = 0.9, δ = 0.1 */
	ramp(N, 150, score, agree, strat, group, keys);
	in = (struct tr_gate_input){.n = N, .score = score, .agree = agree, .strat = strat, .group = group,
				    .n_val = N, .val_score = score, .alpha = 0.9, .delta = 0.1, .seed = 1};
	CHECK(tr_gate_run(&tr_rule_ltt, &in, 0, &r, &e) == 0 && r.deployed, "ltt deploys");
	CHECK(fabs(r.steps[0].level - tr_ltt_start_level(N, 0.9, 0.1)) < 1e-12, "ltt starts at %.2f",
	      r.steps[0].level);
	int ordered = 1, passes = 1;
	for (size_t i = 0; i + 1 < r.n_steps; i++) {
		ordered &= r.steps[i + 1].n >= r.steps[i].n;
		passes &= r.steps[i].pass;
	}
	CHECK(ordered && passes && !r.steps[r.n_steps - 1].pass, "ltt walks strict to loose, stops at first failure");
	CHECK(r.n == r.steps[r.n_steps - 2].n && r.stat <= 0.1 && r.steps[r.n_steps - 1].stat > 0.1,
	      "ltt deploys the loosest threshold reached: n=%zu p=%.3g", r.n, r.stat);
	CHECK(r.n >= 150 && r.n <= 170 && r.agreement >= 0.9, "ltt n=%zu agreement %.3f", r.n, r.agreement);
	tr_gate_result_free(&r);
	/* global under each rule: all 200 rows, 150 agree = 0.75 */
	in.val_agree = agree; /* ltt-plan plans on validation rows: here the same ramp */
	for (int rule = 0; rule < tr_rule_count(); rule++) {
		in.alpha = 0.7;
		CHECK(tr_gate_run(tr_rule_at(rule), &in, 1, &r, &e) == 0 && r.deployed && r.n == N && isinf(r.threshold),
		      "%s: global deploys at 0.7", tr_rule_at(rule)->name);
		tr_gate_result_free(&r);
		in.alpha = 0.8;
		CHECK(tr_gate_run(tr_rule_at(rule), &in, 1, &r, &e) == 0 && !r.deployed, "%s: global refused at 0.8",
		      tr_rule_at(rule)->name);
		tr_gate_result_free(&r);
	}
	/* refusal when nothing clears */
	ramp(N, 0, score, agree, strat, group, keys);
	in.alpha = 0.5;
	for (int rule = 0; rule < tr_rule_count(); rule++) {
		CHECK(tr_gate_run(tr_rule_at(rule), &in, 0, &r, &e) == 0 && !r.deployed && r.reason[0], "%s refuses",
		      tr_rule_at(rule)->name);
		tr_gate_result_free(&r);
	}
	in.alpha = 1.0;
	CHECK(tr_gate_run(&tr_rule_ltt, &in, 0, &r, &e) == -1, "target 1 rejected");
}

/* Synthetic calibration: scores uniform, agreement probability 0.75 + 0.25 s. */
static void synth(gsl_rng *g, size_t n, double *s, int *a, double *v, int *strat, const char **grp, char keys[][12])
{
	for (size_t i = 0; i < n; i++) {
		s[i] = gsl_rng_uniform(g);
		a[i] = gsl_rng_uniform(g) < 0.75 + 0.25 * s[i];
		v[i] = gsl_rng_uniform(g);
		strat[i] = (int)(i % 5);
		snprintf(keys[i], 12, "g%zu", i);
		grp[i] = keys[i];
	}
}

/* True agreement of "accept s >= t": 0.875 + 0.125 t on [0, 1]. */
static double true_agreement(double t)
{
	if (!(t > 0))
		return 0.875;
	return t >= 1 ? 1 : 0.875 + 0.125 * t;
}

static void test_promise(void)
{
	enum { N = 1000, SEEDS = 300 };
	static double s[N], v[N];
	static int a[N], strat[N];
	static const char *grp[N];
	static char keys[N][12];
	double alpha = 0.95, delta = 0.1;
	int viol[3] = {0}, dep[3] = {0};
	struct tr_err e;
	for (int seed = 0; seed < SEEDS; seed++) {
		gsl_rng *g = tr_rng_new((uint64_t)seed + 1000);
		synth(g, N, s, a, v, strat, grp, keys);
		gsl_rng_free(g);
		struct tr_gate_input in = {.n = N, .score = s, .agree = a, .strat = strat, .group = grp, .n_val = N,
					   .val_score = v, .alpha = alpha, .delta = delta, .seed = (uint64_t)seed};
		for (int rule = 0; rule < 3; rule++) {
			struct tr_gate_result r;
			if (tr_gate_run(tr_rule_at(rule), &in, 0, &r, &e) == 0 && r.deployed) {
				dep[rule]++;
				viol[rule] += true_agreement(r.threshold) < alpha;
			}
			tr_gate_result_free(&r);
		}
	}
	double rate[3];
	for (int rule = 0; rule < 3; rule++)
		rate[rule] = (double)viol[rule] / SEEDS;
	printf("promise at alpha %.2f over %d seeds: violation rate point %.3f, cp-holdout %.3f, ltt %.3f "
	       "(deployed %d, %d, %d)\n", alpha, SEEDS, rate[0], rate[1], rate[2], dep[0], dep[1], dep[2]);
	double noise = 3 * sqrt(delta * (1 - delta) / SEEDS);
	CHECK(rate[2] <= delta + noise, "ltt violates %.3f > delta %.2f + noise", rate[2], delta);
	CHECK(dep[2] > SEEDS / 2, "ltt deploys in most runs (%d)", dep[2]);
	CHECK(rate[0] > 0.25 && rate[0] > rate[2] + 0.15,
	      "point violates far more often (%.3f)", rate[0]);
}

static void test_monotone(void)
{
	enum { N = 600 };
	static double s[N], v[N];
	static int a[N], strat[N];
	static const char *grp[N];
	static char keys[N][12];
	struct tr_err e;
	int ok = 1;
	for (int seed = 0; seed < 20; seed++) {
		gsl_rng *g = tr_rng_new((uint64_t)seed);
		synth(g, N, s, a, v, strat, grp, keys);
		gsl_rng_free(g);
		for (int rule = 1; rule <= 2; rule++) /* cp-holdout, ltt */ {
			double prev = 2;
			for (double alpha = 0.80; alpha < 0.995; alpha += 0.01) {
				struct tr_gate_input in = {.n = N, .score = s, .agree = a, .strat = strat, .group = grp,
							   .n_val = N, .val_score = v, .alpha = alpha, .delta = 0.1, .seed = 3};
				struct tr_gate_result r;
				tr_gate_run(tr_rule_at(rule), &in, 0, &r, &e);
				double cov = r.deployed ? r.coverage : 0;
				ok &= cov <= prev + 1e-12;
				prev = cov;
				tr_gate_result_free(&r);
			}
		}
	}
	CHECK(ok, "raising alpha never raises coverage (ltt, cp-holdout)");
}

/* OOD reference files: an old format is refused by name; save -> load -> save gives the same bytes. */
static void test_ood_file(void)
{
	struct tr_node pool[6] = {{1, 0.6}, {2, 0.8}, {-1, 0}, {2, 1.0}, {-1, 0}, {-1, 0}};
	struct tr_node *rows[3] = {pool, pool + 3, pool + 5};
	struct tr_feats X = {.n = 3, .dim = 2, .rows = rows};
	int y[3] = {0, 1, 1};
	struct tr_ood *o = NULL, *l = NULL;
	struct tr_err e;
	struct tr_buf b = {0}, b2 = {0};
	CHECK(tr_ood_fit(&X, y, 2, &o, &e) == 0 && tr_ood_save(o, &b) == 0, "ood fit/save: %s", e.msg);
	CHECK(tr_ood_load("ood.bin", b.data, b.len, &l, &e) == 0 && tr_ood_save(l, &b2) == 0, "ood load: %s", e.msg);
	CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0, "ood: save/load/save changed the bytes");
	tr_ood_free(l);
	b.data[strlen("tracer-ood ")] = '1';
	CHECK(tr_ood_load("ood.bin", b.data, b.len, &l, &e) == -1, "ood: format 1 accepted");
	CHECK_ERR(e, "ood.bin:1: not a tracer OOD reference (format 2)");
	for (size_t cut = 0; cut < b2.len; cut++)
		CHECK(tr_ood_load("ood.bin", b2.data, cut, &l, &e) == -1, "ood: truncated at %zu accepted", cut);
	tr_ood_free(o), tr_ood_free(l);
	tr_buf_free(&b), tr_buf_free(&b2);
}

/* The 99.5th percentile of v[0..n) (sorted in place), as the guard takes it. */
static double pct(double *v, size_t n)
{
	gsl_sort(v, 1, n);
	return gsl_stats_quantile_from_sorted_data(v, 1, n, TR_OOD_PCT);
}

/*
 * The dense guard computes half of the similarity matrix (row blocks against the rows from theirs on) and
 * lets each product count for both rows: its limits are those of every row's leave-one-out distances over
 * the full matrix, computed here by plain loops (301 rows: two whole blocks and a partial one, 3 labels
 * of about 100 rows, and one label with too few rows for a limit of its own). tr_ood_fit_take keeps the
 * rows instead of copying them, with the same bytes.
 */
static void test_ood_dense(void)
{
	enum { N = 301, D = 8, L = 4 };
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	gsl_rng_set(r, 11);
	double *x = tr_malloc(N * D * sizeof *x), *x2 = tr_malloc(N * D * sizeof *x2), dist[N], v[N];
	int y[N];
	for (size_t i = 0; i < N; i++) {
		double nn = 0;
		y[i] = i < 5 ? 3 : (int)(i % 3);
		for (size_t k = 0; k < D; k++) /* label-dependent means: near their own label */
			x[i * D + k] = gsl_ran_gaussian(r, 1) + (k == (size_t)y[i] ? 3 : 0), nn += x[i * D + k] * x[i * D + k];
		for (size_t k = 0; k < D; k++)
			x[i * D + k] /= sqrt(nn);
	}
	memcpy(x2, x, N * D * sizeof *x);
	for (size_t i = 0; i < N; i++) { /* every other row's similarity, sorted: the last TR_OOD_K the nearest */
		size_t m = 0;
		for (size_t j = 0; j < N; j++) {
			if (j == i)
				continue;
			v[m] = 0;
			for (size_t k = 0; k < D; k++)
				v[m] += x[i * D + k] * x[j * D + k];
			m++;
		}
		gsl_sort(v, 1, m);
		dist[i] = 0;
		for (int t = 1; t <= TR_OOD_K; t++)
			dist[i] += (1 - v[m - (size_t)t]) / TR_OOD_K;
	}
	double want[1 + L];
	memcpy(v, dist, sizeof dist);
	want[0] = pct(v, N);
	for (int c = 0; c < L; c++) {
		size_t m = 0;
		for (size_t i = 0; i < N; i++)
			if (y[i] == c)
				v[m++] = dist[i];
		want[1 + c] = m >= 10 ? pct(v, m) : NAN;
	}
	struct tr_feats X = {.n = N, .dim = D, .dense = x}, X2 = {.n = N, .dim = D, .dense = x2};
	struct tr_ood *o = NULL, *o2 = NULL;
	struct tr_err e;
	struct tr_buf b = {0}, b2 = {0};
	CHECK(tr_ood_fit(&X, y, L, &o, &e) == 0 && tr_ood_save(o, &b) == 0, "dense ood fit: %s", e.msg);
	size_t at = strlen("tracer-ood 2\n") + 3 * sizeof(int32_t) + 2 * sizeof(uint64_t);
	double got[1 + L];
	CHECK(b.len >= at + sizeof got, "dense ood: %zu bytes saved", b.len);
	if (b.len >= at + sizeof got)
		memcpy(got, b.data + at, sizeof got);
	for (int c = 0; c <= L; c++)
		CHECK(isnan(want[c]) ? isnan(got[c]) : fabs(got[c] - want[c]) < 1e-12,
		      "dense ood: limit %d is %.15f, the full matrix gives %.15f", c - 1, got[c], want[c]);
	CHECK(want[1] > 0 && want[0] > want[1] * 0.5, "dense ood: limits %.3f (all) %.3f (label 0)", want[0], want[1]);
	CHECK(tr_ood_fit_take(&X2, y, L, &o2, &e) == 0 && tr_ood_save(o2, &b2) == 0, "ood fit_take: %s", e.msg);
	CHECK(X2.dense == NULL, "tr_ood_fit_take left the rows with the caller");
	CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0, "tr_ood_fit_take saved other bytes");
	tr_ood_free(o), tr_ood_free(o2);
	tr_buf_free(&b), tr_buf_free(&b2);
	tr_free(x);
	gsl_rng_free(r);
}

/*
 * n unit rows over features 1..dim, feature f present with probability 0.5 / f (common first features,
 * rare later ones); `from` shifts the rare part, so rows drawn with another `from` are far from these.
 */
static void ood_rows(gsl_rng *r, size_t n, int dim, int from, struct tr_node *pool, struct tr_node **rows)
{
	struct tr_node *p = pool;
	for (size_t i = 0; i < n; i++) {
		rows[i] = p;
		double ss = 0;
		for (int f = 1; f <= dim; f++) {
			int g = f <= 8 ? f : f + from;
			if (g <= dim && gsl_rng_uniform(r) < (f <= 8 ? 0.5 : 4.0 / f)) {
				*p = (struct tr_node){g, 0.1 + gsl_rng_uniform(r)};
				ss += p->value * p->value, p++;
			}
		}
		for (struct tr_node *q = rows[i]; q < p; q++)
			q->value /= sqrt(ss);
		*p++ = (struct tr_node){-1, 0};
	}
}

/* The routing check gives tr_ood_distances' verdicts; where it stops early, a bound within the limit. */
static void test_ood_check(void)
{
	enum { N = 400, Q = 300, DIM = 600 };
	gsl_rng *r = tr_rng_new(5);
	struct tr_node *pool = malloc((N + Q) * (DIM + 1) * sizeof *pool), *rows[N + Q];
	int y[N], need[Q], label[Q];
	ood_rows(r, N, DIM / 2, 0, pool, rows);
	ood_rows(r, Q / 3, DIM, DIM / 2, pool + N * (DIM + 1), rows + N);		  /* far: other rare features */
	for (size_t i = N + Q / 3; i < N + Q; i++) {					  /* near: training rows, nudged */
		rows[i] = pool + N * (DIM + 1) + (Q / 3) * (DIM + 1) + (i - N - Q / 3) * (DIM + 1);
		const struct tr_node *src = rows[gsl_rng_uniform_int(r, N)];
		size_t m = 0;
		double ss = 0;
		for (; src[m].index != -1; m++) {
			rows[i][m] = (struct tr_node){src[m].index, src[m].value * (0.8 + 0.4 * gsl_rng_uniform(r))};
			ss += rows[i][m].value * rows[i][m].value;
		}
		for (size_t t = 0; t < m; t++)
			rows[i][t].value /= sqrt(ss);
		rows[i][m] = (struct tr_node){-1, 0};
	}
	for (size_t i = 0; i < N; i++)
		y[i] = (int)gsl_rng_uniform_int(r, 4);
	for (size_t i = 0; i < Q; i++)
		need[i] = i % 7 != 0, label[i] = (int)gsl_rng_uniform_int(r, 5) - 1; /* -1: the global limit */
	struct tr_feats X = {.n = N, .dim = DIM, .rows = rows}, T = {.n = Q, .dim = DIM, .rows = rows + N};
	struct tr_ood *o = NULL;
	struct tr_err e;
	double full[Q], fast[Q];
	CHECK(tr_ood_fit(&X, y, 4, &o, &e) == 0, "ood fit: %s", e.msg);
	CHECK(tr_ood_distances(o, &T, need, full, &e) == 0 && tr_ood_check(o, &T, need, label, fast, &e) == 0, "%s",
	      e.msg);
	int same = 1, bounded = 1, early = 0, far = 0, near = 0;
	for (size_t i = 0; i < Q; i++) {
		if (!need[i]) {
			same &= isnan(full[i]) && isnan(fast[i]);
			continue;
		}
		int a = tr_ood_far(o, label[i], full[i]), b = tr_ood_far(o, label[i], fast[i]);
		same &= a == b;
		far += a, near += !a;
		if (memcmp(&full[i], &fast[i], sizeof full[i]) != 0) {
			early++;
			bounded &= fast[i] >= full[i] && !b;
		}
	}
	CHECK(same, "tr_ood_check's verdicts differ from tr_ood_distances'");
	CHECK(bounded, "an early distance below the true one, or beyond the limit");
	CHECK(far >= Q / 10 && near >= Q / 3 && early >= Q / 10, "a test that decides nothing: %d far, %d near, %d early", far,
	      near, early);
	tr_ood_free(o);
	free(pool);
	gsl_rng_free(r);
}

/* The table's rows: names, statistics, guarantees, and the audit's words for each rule. */
static void test_table(void)
{
	CHECK(tr_rule_count() == 4 && tr_rule_at(0) == &tr_rule_point && tr_rule_at(3) == &tr_rule_ltt_plan &&
		      tr_rule_at(4) == NULL,
	      "four rules, in order");
	CHECK(strcmp(tr_rule_list(", "), "point, cp-holdout, ltt, ltt-plan") == 0, "list: %s", tr_rule_list(", "));
	CHECK(tr_rule_find("ltt") == &tr_rule_ltt && !tr_rule_find("LTT") && !tr_rule_find(NULL), "lookup by name");
	CHECK(tr_rule_ltt.guarantee && tr_rule_ltt_plan.guarantee && !tr_rule_point.guarantee &&
		      !tr_rule_cp_holdout.guarantee,
	      "only ltt and ltt-plan claim a guarantee");
	struct tr_buf b = {0};
	tr_rule_cp_holdout.describe(&b, 0.1, 0.1 / 3, tr_rule_cp_holdout.param_value(100, 0.9, 0.1));
	CHECK(b.data && strstr(b.data, "Clopper–Pearson at 90% confidence"), "cp-holdout prose: %s", b.data);
	tr_buf_free(&b);
	double start = tr_rule_ltt.param_value(1000, 0.95, 0.1 / 3);
	tr_rule_ltt.describe(&b, 0.1, 0.1 / 3, start);
	CHECK(b.data && strstr(b.data, "δ = 0.10 (0.0333 per family; fixed sequence from coverage level 0.14)"),
	      "ltt prose: %s", b.data);
	tr_buf_free(&b);
	CHECK(tr_pol_family_count() == 3 && tr_pol_family_find("rsb") == &tr_pol_rsb &&
		      tr_pol_family_index(&tr_pol_l2d) == 1 && strcmp(tr_pol_family_name(NULL), "refused") == 0,
	      "the family table");
	struct tr_pol_family refused = {.name = "refused", .max_stages = 1}, three = {.name = "x", .max_stages = 3};
	CHECK(tr_pol_family_register(&refused) == -1 && tr_pol_family_register(&three) == -1 &&
		      tr_pol_family_register(&tr_pol_l2d) == -1,
	      "a family named refused, with too many stages, or twice is refused");
}

/*
 * Rows with uniform scores and P(agree | s) = lo + (hi - lo) s: validation and calibration drawn alike.
 * The true agreement of "accept s >= t" is lo + (hi - lo)(1 + t)/2 for t in [0, 1).
 */
static void synth_rows(gsl_rng *g, size_t n, double lo, double hi, double *s, int *a)
{
	for (size_t i = 0; i < n; i++) {
		s[i] = gsl_rng_uniform(g);
		a[i] = gsl_rng_uniform(g) < lo + (hi - lo) * s[i];
	}
}

static double true_agr(double lo, double hi, double t)
{
	if (!(t > 0))
		return lo + (hi - lo) / 2;
	return t >= 1 ? hi : lo + (hi - lo) * (1 + t) / 2;
}

/*
 * ltt-plan's promise over many seeds, in three settings: a sloped agreement curve (how much it deploys
 * compared with ltt at δ and δ/3), a flat curve just below α (every hypothesis is true, so every
 * deployment is a violation: deployments must stay within δ), and two families where the plan chooses
 * one on validation and tests it at the full δ.
 */
static void test_plan_promise(void)
{
	enum { N = 400, SEEDS = 400 };
	static double cs[N], vs[N], cs2[N], vs2[N];
	static int ca[N], va[N], ca2[N], va2[N];
	const double delta = 0.1, noise = 3 * sqrt(delta * (1 - delta) / SEEDS);
	struct tr_err e;
	/* 1. sloped: agreement 0.75 + 0.25 s */
	for (double alpha = 0.90; alpha < 0.96; alpha += 0.05) {
		int viol = 0, dep = 0, fails = 0;
		double cov_plan = 0, cov_ltt = 0, cov_ltt3 = 0;
		for (int seed = 0; seed < SEEDS; seed++) {
			gsl_rng *g = tr_rng_new((uint64_t)seed + 5000);
			synth_rows(g, N, 0.75, 1.0, cs, ca);
			synth_rows(g, N, 0.75, 1.0, vs, va);
			gsl_rng_free(g);
			struct tr_gate_input in = {.n = N, .score = cs, .agree = ca, .n_val = N, .val_score = vs,
						   .val_agree = va, .alpha = alpha, .delta = delta};
			struct tr_gate_result r;
			fails += tr_gate_run(&tr_rule_ltt_plan, &in, 0, &r, &e) != 0;
			if (r.deployed) {
				dep++;
				viol += true_agr(0.75, 1.0, r.threshold) < alpha;
				cov_plan += r.coverage;
			}
			tr_gate_result_free(&r);
			fails += tr_gate_run(&tr_rule_ltt, &in, 0, &r, &e) != 0;
			cov_ltt += r.deployed ? r.coverage : 0;
			tr_gate_result_free(&r);
			in.delta = delta / 3;
			fails += tr_gate_run(&tr_rule_ltt, &in, 0, &r, &e) != 0;
			cov_ltt3 += r.deployed ? r.coverage : 0;
			tr_gate_result_free(&r);
		}
		printf("ltt-plan, sloped, alpha %.2f: violation rate %.3f, deployed %d/%d, mean coverage %.3f "
		       "(ltt at delta %.3f, at delta/3 %.3f)\n", alpha, (double)viol / SEEDS, dep, SEEDS, cov_plan / SEEDS,
		       cov_ltt / SEEDS, cov_ltt3 / SEEDS);
		CHECK(!fails, "no errors");
		CHECK((double)viol / SEEDS <= delta + noise, "sloped alpha %.2f: ltt-plan violates %.3f", alpha,
		      (double)viol / SEEDS);
		CHECK(cov_plan >= cov_ltt3, "ltt-plan covers at least ltt at delta/3: %.3f < %.3f", cov_plan / SEEDS,
		      cov_ltt3 / SEEDS);
	}
	/* 2. flat just below α: every hypothesis true */
	const double alpha = 0.95, flat = 0.947;
	int dep = 0;
	for (int seed = 0; seed < SEEDS; seed++) {
		gsl_rng *g = tr_rng_new((uint64_t)seed + 9000);
		synth_rows(g, N, flat, flat, cs, ca);
		synth_rows(g, N, flat, flat, vs, va);
		gsl_rng_free(g);
		struct tr_gate_input in = {.n = N, .score = cs, .agree = ca, .n_val = N, .val_score = vs,
					   .val_agree = va, .alpha = alpha, .delta = delta};
		struct tr_gate_result r;
		tr_gate_run(&tr_rule_ltt_plan, &in, 0, &r, &e);
		dep += r.deployed;
		tr_gate_result_free(&r);
	}
	printf("ltt-plan, flat agreement %.3f < alpha %.2f: deployed (= violated) %d/%d\n", flat, alpha, dep, SEEDS);
	CHECK((double)dep / SEEDS <= delta + noise, "flat: deploys %.3f of the time, every time wrong",
	      (double)dep / SEEDS);
	/* 3. two families, chosen on validation: A = 0.80 + 0.20 s, B = 0.85 + 0.15 s */
	int viol = 0, chose_b = 0;
	for (int seed = 0; seed < SEEDS; seed++) {
		gsl_rng *g = tr_rng_new((uint64_t)seed + 13000);
		synth_rows(g, N, 0.80, 1.0, cs, ca);
		synth_rows(g, N, 0.80, 1.0, vs, va);
		synth_rows(g, N, 0.85, 1.0, cs2, ca2);
		synth_rows(g, N, 0.85, 1.0, vs2, va2);
		gsl_rng_free(g);
		struct tr_gate_input fam[2] = {
			{.n = N, .score = cs, .agree = ca, .n_val = N, .val_score = vs, .val_agree = va, .alpha = alpha,
			 .delta = delta},
			{.n = N, .score = cs2, .agree = ca2, .n_val = N, .val_score = vs2, .val_agree = va2,
			 .alpha = alpha, .delta = delta}};
		static const int all[2] = {0, 0};
		struct tr_plan plans[2];
		int f = tr_ltt_plan_choose(fam, all, 2, plans, &e);
		if (f < 0)
			continue;
		chose_b += f == 1;
		struct tr_gate_result r;
		tr_gate_run(&tr_rule_ltt_plan, &fam[f], 0, &r, &e);
		if (r.deployed)
			viol += true_agr(f ? 0.85 : 0.80, 1.0, r.threshold) < alpha;
		tr_gate_result_free(&r);
	}
	printf("ltt-plan, two families: chose the better %d/%d, violation rate %.3f\n", chose_b, SEEDS,
	       (double)viol / SEEDS);
	CHECK(chose_b > SEEDS / 2, "the better family is chosen most of the time (%d)", chose_b);
	CHECK((double)viol / SEEDS <= delta + noise, "two families: violates %.3f", (double)viol / SEEDS);
}

/*
 * Validation rows more optimistic than the traffic (the case the plan's slack is for): validation agrees
 * 0.97 at every score; the traffic agrees 0.99 above score 0.4 and 0.60 below, so agreement on the top c
 * of the traffic stays >= 0.90 up to c = 0.78 and thresholds looser than that violate. A start placed
 * where validation predicts the most coverage (the plan before TR_PLAN_SLACK started at 100% here) fails
 * and deploys nothing (measured: 0 of 200 seeds deployed); the strictest start within TR_PLAN_SLACK of
 * it walks the band. 200 seeds of calibration agreement on a score grid.
 */
static double band_truth(double t)
{
	double c = 1 - fmax(0, fmin(1, t)); /* coverage of threshold t on uniform scores */
	return c <= 0.6 ? 0.99 : (0.6 * 0.99 + (c - 0.6) * 0.60) / c;
}

static void test_plan_optimistic_validation(void)
{
	enum { N = 400, SEEDS = 200 };
	static double cs[N], vs[N];
	static int ca[N], va[N];
	const double alpha = 0.9, delta = 0.1;
	gsl_rng *g = tr_rng_new(5);
	for (int i = 0; i < N; i++)
		vs[i] = gsl_rng_uniform(g), va[i] = gsl_rng_uniform(g) < 0.97;
	gsl_rng_free(g);
	for (int i = 0; i < N; i++)
		cs[i] = (i + 0.5) / N;
	struct tr_err e;
	struct tr_plan p;
	CHECK(tr_ltt_plan(vs, va, N, N, alpha, delta, 0, &p, &e) == 0 && p.start > 0 && p.start <= 60,
	      "optimistic validation: the plan starts at %d%%, inside the band", p.start);
	double cov = 0;
	int viol = 0;
	for (int seed = 0; seed < SEEDS; seed++) {
		g = tr_rng_new(1000 + (uint64_t)seed);
		for (int i = 0; i < N; i++)
			ca[i] = gsl_rng_uniform(g) < (cs[i] >= 0.4 ? 0.99 : 0.60);
		gsl_rng_free(g);
		struct tr_gate_input in = {.n = N, .score = cs, .agree = ca, .n_val = N, .val_score = vs, .val_agree = va,
					   .alpha = alpha, .delta = delta};
		struct tr_gate_result r;
		if (tr_gate_run(&tr_rule_ltt_plan, &in, 0, &r, &e))
			break;
		if (r.deployed) {
			cov += 1 - fmax(0, fmin(1, r.threshold));
			viol += band_truth(r.threshold) < alpha;
		}
		tr_gate_result_free(&r);
	}
	double se = sqrt(delta * (1 - delta) / SEEDS);
	printf("ltt-plan, optimistic validation: start %d%%, mean coverage %.3f, violations %d/%d\n", p.start,
	       cov / SEEDS, viol, SEEDS);
	CHECK(cov / SEEDS >= 0.5, "walks the band: mean coverage %.3f (the plan before TR_PLAN_SLACK: 0)",
	      cov / SEEDS);
	CHECK((double)viol / SEEDS <= delta + 3 * se, "violates %d/%d", viol, SEEDS);
}

/* The fallback levels on one run: backup at φδ, main start at the rest plus what was carried. */
static void test_plan_walk(void)
{
	enum { N = 400 };
	static double cs[N], vs[N];
	static int ca[N], va[N];
	gsl_rng *g = tr_rng_new(77);
	synth_rows(g, N, 0.75, 1.0, cs, ca);
	synth_rows(g, N, 0.75, 1.0, vs, va);
	gsl_rng_free(g);
	struct tr_err e;
	struct tr_gate_input in = {.n = N, .score = cs, .agree = ca, .n_val = N, .val_score = vs, .val_agree = va,
				   .alpha = 0.9, .delta = 0.1};
	struct tr_plan p;
	CHECK(tr_ltt_plan(vs, va, N, N, 0.9, 0.1, 0, &p, &e) == 0 && p.start > 0 && p.expected > 0, "a plan: start %d",
	      p.start);
	struct tr_gate_result r;
	CHECK(tr_gate_run(&tr_rule_ltt_plan, &in, 0, &r, &e) == 0 && r.n_steps > 0, "ltt-plan runs");
	int ok = 1, chained = 1;
	double carried = 0;
	for (size_t i = 0; i < r.n_steps; i++) {
		const struct tr_gate_step *s = &r.steps[i];
		int c = (int)lround(s->level * 100);
		double w = (c == p.backup ? TR_PLAN_BACKUP : 0) + (c == p.start ? (p.backup > 0 ? 1 - TR_PLAN_BACKUP : 1) : 0);
		double want = w * 0.1 + carried;
		ok &= fabs(s->budget - want) < 1e-12 && s->pass == (s->n > 0 && want > 0 && s->stat <= want);
		carried = s->pass ? s->budget : 0;
		chained &= i == 0 || s->n >= r.steps[i - 1].n;
	}
	CHECK(ok, "every step tested at w δ plus the level carried from a rejected predecessor");
	CHECK(chained, "steps walk strict to loose");
	CHECK(!r.deployed || (r.stat <= 0.1 && r.agreement >= 0.9), "deployed: p=%.3g agreement %.3f", r.stat,
	      r.agreement);
	tr_gate_result_free(&r);
	in.val_agree = NULL;
	CHECK(tr_gate_run(&tr_rule_ltt_plan, &in, 0, &r, &e) == -1, "ltt-plan without validation agreement is an error");
	in.val_agree = va;
	/* accept-all: one hypothesis at the full δ */
	in.alpha = 0.8;
	CHECK(tr_gate_run(&tr_rule_ltt_plan, &in, 1, &r, &e) == 0 && r.deployed && isinf(r.threshold) &&
		      r.n_steps == 1 && fabs(r.steps[0].budget - 0.1) < 1e-12,
	      "accept-all at 0.8: deployed=%d", r.deployed);
	tr_gate_result_free(&r);
}

/*
 * Dense features built in the caller's embeddings (o.emb_scratch, as `tracer fit` does) against a copy of
 * them (o.emb alone): the same report, stage-1 model and decision on every row, with a cap below the row
 * count so that the kept rows move down in the buffer.
 */
static void test_dense_in_place(void)
{
	char path[4096], npy[4096];
	snprintf(path, sizeof path, "%s/tests/fixtures/emb/traces.jsonl", tr_root_dir());
	snprintf(npy, sizeof npy, "%s/tests/fixtures/emb/emb.npy", tr_root_dir());
	struct tr_traceset ts;
	struct tr_err e;
	double *emb, *scratch;
	size_t rows;
	int dim;
	if (tr_traces_load_jsonl(path, &ts, &e) || tr_npy_read(npy, &emb, &rows, &dim, &e)) {
		CHECK(0, "fixture: %s", e.msg);
		return;
	}
	size_t n = ts.part[TR_PART_TRACES].n;
	scratch = malloc(rows * (size_t)dim * sizeof *scratch);
	memcpy(scratch, emb, rows * (size_t)dim * sizeof *scratch);
	struct tr_policy *p[2] = {NULL, NULL};
	for (int k = 0; k < 2; k++) {
		struct tr_fit_options o = {.backend = "softmax", .grid = "C=1", .rule = &tr_rule_ltt, .target = 0.8,
					   .targets = {0.8}, .n_targets = 1, .delta = 0.1, .seed = 2, .ood = 1, .oof = 1,
					   .folds = 3, .cap = n - n / 4, .dense = 1, .emb = k ? scratch : emb, .emb_rows = rows,
					   .emb_dim = dim, .emb_scratch = k ? scratch : NULL};
		CHECK(tr_policy_fit(&ts, path, &o, &p[k], &e) == 0, "fit %d: %s", k, e.msg);
	}
	if (p[0] && p[1]) {
		CHECK(strcmp(p[0]->report, p[1]->report) == 0, "the reports differ");
		CHECK(p[0]->n_stages == p[1]->n_stages && p[0]->n_stages > 0, "stages %d and %d", p[0]->n_stages,
		      p[1]->n_stages);
		struct tr_buf a = {0}, b = {0};
		tr_surrogate_save(p[0]->st[0].s, &a, &e), tr_surrogate_save(p[1]->st[0].s, &b, &e);
		CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "the stage-1 models differ");
		tr_buf_free(&a), tr_buf_free(&b);
		size_t *idx = malloc(n * sizeof *idx);
		struct tr_decision *d0 = malloc(n * sizeof *d0), *d1 = malloc(n * sizeof *d1);
		for (size_t i = 0; i < n; i++)
			idx[i] = i;
		CHECK(tr_policy_route(p[0], ts.part[TR_PART_TRACES].v, idx, n, emb, rows, dim, d0, &e) == 0 &&
			      tr_policy_route(p[1], ts.part[TR_PART_TRACES].v, idx, n, emb, rows, dim, d1, &e) == 0,
		      "route: %s", e.msg);
		int same = 1;
		for (size_t i = 0; i < n; i++)
			same &= d0[i].handled == d1[i].handled && d0[i].label == d1[i].label && d0[i].ood == d1[i].ood &&
				(d0[i].score == d1[i].score || (isnan(d0[i].score) && isnan(d1[i].score)));
		CHECK(same, "the decisions differ");
		free(idx), free(d0), free(d1);
	}
	CHECK(memcmp(scratch, emb, (size_t)dim * sizeof *emb) != 0, "the scratch buffer was not written");
	tr_policy_free(p[0]), tr_policy_free(p[1]);
	tr_free(emb), free(scratch);
	tr_traceset_free(&ts);
}

int main(void)
{
	tr_gsl_init();
	test_table();
	test_ood_file();
	test_ood_dense();
	test_ood_check();
	test_bounds();
	test_walks();
	test_monotone();
	test_promise();
	test_plan_walk();
	test_plan_optimistic_validation();
	test_plan_promise();
	test_dense_in_place();
	return unit_done();
}
