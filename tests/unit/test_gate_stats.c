/*
 * Statistical tests of ltt-plan's promise, tight enough to catch a procedure that spends more than δ,
 * and of the oof calibration mode's independence: nothing fitted looks at the calibration part.
 *
 * The flat cases: calibration agreement is the same at every score (p), so the true agreement of every
 * threshold is p and, when p < α, every deployment is a violation. The calibration scores are a fixed
 * grid and only the agreement flags are random, so the rows each threshold accepts are fixed and the
 * procedure's deployment probability has a closed form (flat_exact): the backup start b tested at φδ, and
 * when it fails the main start s at (1 - φ)δ (φ = TR_PLAN_BACKUP; with φ = 0 the start alone at δ). The
 * measured rate over 3,000 seeds must sit within four standard errors of it; a procedure that overspends
 * (every start at the full δ with a backup, the start at 2δ without one; printed as "mutant") has about
 * twice the rate here and fails that check.
 */
#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/gate/fit.h"
#include "unit.h"

#define NMAX 400

/* P(Binomial(n, p) = k). */
static double pmf(size_t k, size_t n, double p)
{
	return gsl_ran_binomial_pdf((unsigned)k, p, (unsigned)n);
}

/*
 * Deployment probability of the fallback sequence on flat agreement p: backup b (n_b rows) at level
 * wb·δ, then, if it failed, main start s (n_s ⊇ n_b rows) at ws·δ. A rejected backup deploys whatever
 * follows. nb = 0: no backup.
 */
static double flat_exact(size_t nb, size_t ns, double p, double alpha, double lb, double ls)
{
	double P = 0;
	if (nb == 0) {
		for (size_t k = 0; k <= ns; k++)
			P += tr_binom_tail(k, ns, alpha) <= ls ? pmf(k, ns, p) : 0;
		return P;
	}
	for (size_t kb = 0; kb <= nb; kb++) {
		double w = pmf(kb, nb, p);
		if (tr_binom_tail(kb, nb, alpha) <= lb) {
			P += w;
			continue;
		}
		for (size_t kr = 0; kr <= ns - nb; kr++)
			P += tr_binom_tail(kb + kr, ns, alpha) <= ls ? w * pmf(kr, ns - nb, p) : 0;
	}
	return P;
}

/*
 * One flat setting: n calibration rows on a score grid, agreement p; n_val validation rows, uniform
 * scores s, agreement lo + (hi - lo) s (optimistic where it exceeds p). Returns the measured deployment rate and fills
 * the exact one and the full-δ mutant's.
 */
static double flat_rate(size_t n, size_t n_val, double p, double lo, double hi, double alpha, double delta, int seeds, double *exact,
			double *mutant)
{
	static double cs[NMAX], vs[NMAX];
	static int ca[NMAX], va[NMAX];
	gsl_rng *g = tr_rng_new(424242 + n);
	for (size_t i = 0; i < n_val; i++)
		vs[i] = gsl_rng_uniform(g), va[i] = gsl_rng_uniform(g) < lo + (hi - lo) * vs[i];
	gsl_rng_free(g);
	for (size_t i = 0; i < n; i++)
		cs[i] = (i + 0.5) / (double)n;
	struct tr_plan plan;
	struct tr_err e;
	*exact = *mutant = 0;
	if (tr_ltt_plan(vs, va, n_val, n, alpha, delta, 0, &plan, &e) || plan.start < 0)
		return -1;
	long nb = -1, ns = -1;
	int dep = 0;
	for (int seed = 0; seed < seeds; seed++) {
		g = tr_rng_new((uint64_t)seed * 7919 + n);
		for (size_t i = 0; i < n; i++)
			ca[i] = gsl_rng_uniform(g) < p;
		gsl_rng_free(g);
		struct tr_gate_input in = {.n = n, .score = cs, .agree = ca, .n_val = n_val, .val_score = vs,
					   .val_agree = va, .alpha = alpha, .delta = delta};
		struct tr_gate_result r;
		if (tr_gate_run(&tr_rule_ltt_plan, &in, 0, &r, &e))
			return -1;
		dep += r.deployed;
		for (size_t i = 0; i < r.n_steps; i++) { /* the rows each start accepts (fixed by the grid) */
			int c = (int)lround(r.steps[i].level * 100);
			if (c == plan.backup)
				nb = (long)r.steps[i].n;
			if (c == plan.start)
				ns = (long)r.steps[i].n;
		}
		tr_gate_result_free(&r);
	}
	if (ns < 0 || (plan.backup > 0 && nb < 0))
		return -1;
	double phi = plan.backup > 0 ? TR_PLAN_BACKUP : 0;
	size_t b = plan.backup > 0 ? (size_t)nb : 0;
	*exact = flat_exact(b, (size_t)ns, p, alpha, phi * delta, (1 - phi) * delta);
	/* the mutant overspends: every start at the full δ with a backup, twice δ without one */
	*mutant = b ? flat_exact(b, (size_t)ns, p, alpha, delta, delta) : flat_exact(0, (size_t)ns, p, alpha, 0, 2 * delta);
	printf("flat n=%zu p=%.3f (validation %.2f-%.2f) alpha %.2f: plan backup %d%% (%ld rows) start %d%% (%ld rows); "
	       "deployed %.4f, exact %.4f, mutant %.4f\n",
	       n, p, lo, hi, alpha, plan.backup, nb, plan.start, ns, (double)dep / seeds, *exact, *mutant);
	return (double)dep / seeds;
}

static void test_flat(void)
{
	const double alpha = 0.90, delta = 0.10, eps = 0.005;
	/* adversarial: validation climbs from 0.80 to 1.00, the truth is flat just below α; 3,000 seeds */
	enum { SEEDS = 3000 };
	double exact, mutant;
	double rate = flat_rate(400, NMAX, alpha - eps, 0.80, 1.0, alpha, delta, SEEDS, &exact, &mutant);
	double se = sqrt(exact * (1 - exact) / SEEDS);
	CHECK(rate >= 0, "flat n=400 runs and has a plan");
	CHECK(exact <= delta, "exact deployment probability %.4f within δ (every deployment a violation)", exact);
	CHECK(fabs(rate - exact) <= 4 * se + 1e-9, "measured %.4f vs exact %.4f (4 se = %.4f)", rate, exact, 4 * se);
	/* the mutant's measured rate lands outside the 4-se band in all but about 0.6% of runs */
	CHECK(mutant - exact > 4 * se + 2.5 * sqrt(mutant * (1 - mutant) / SEEDS),
	      "the check separates the overspending mutant (%.4f) from the rule (%.4f)", mutant, exact);
	/* boundary cases at n = 50..400: truth exactly α (no violation possible) and α - ε */
	static const size_t ns[] = {50, 100, 200, 400};
	for (int i = 0; i < 4; i++) {
		for (int at = 0; at < 2; at++) {
			double p = at ? alpha : alpha - eps, ex, mu;
			double r = flat_rate(ns[i], NMAX, p, 0.97, 0.97, alpha, delta, 500, &ex, &mu);
			double s = sqrt(fmax(ex * (1 - ex), 1e-4) / 500);
			CHECK(r >= 0, "flat n=%zu p=%.3f runs", ns[i], p);
			CHECK(fabs(r - ex) <= 4 * s + 1e-9, "n=%zu p=%.3f: measured %.4f vs exact %.4f", ns[i], p, r, ex);
			CHECK(at || ex <= delta, "n=%zu below α: exact violation probability %.4f within δ", ns[i], ex);
		}
	}
}

/* The plan and the family choice read validation rows only: permuting calibration labels changes neither. */
static void test_plan_blind(void)
{
	enum { N = 300 };
	static double cs[N], vs[N], cs2[N], vs2[N];
	static int ca[N], va[N], ca2[N], va2[N], perm[N], perm2[N];
	gsl_rng *g = tr_rng_new(31);
	for (int i = 0; i < N; i++) {
		cs[i] = gsl_rng_uniform(g), vs[i] = gsl_rng_uniform(g), cs2[i] = gsl_rng_uniform(g),
		vs2[i] = gsl_rng_uniform(g);
		ca[i] = gsl_rng_uniform(g) < 0.8 + 0.2 * cs[i], va[i] = gsl_rng_uniform(g) < 0.8 + 0.2 * vs[i];
		ca2[i] = gsl_rng_uniform(g) < 0.85 + 0.15 * cs2[i], va2[i] = gsl_rng_uniform(g) < 0.85 + 0.15 * vs2[i];
	}
	memcpy(perm, ca, sizeof perm), memcpy(perm2, ca2, sizeof perm2);
	gsl_ran_shuffle(g, perm, N, sizeof *perm);
	gsl_ran_shuffle(g, perm2, N, sizeof *perm2);
	gsl_rng_free(g);
	struct tr_err e;
	struct tr_gate_input fam[2] = {
		{.n = N, .score = cs, .agree = ca, .n_val = N, .val_score = vs, .val_agree = va, .alpha = 0.93, .delta = 0.1},
		{.n = N, .score = cs2, .agree = ca2, .n_val = N, .val_score = vs2, .val_agree = va2, .alpha = 0.93,
		 .delta = 0.1}};
	static const int all[2] = {0, 0};
	struct tr_plan p1[2], p2[2];
	int f1 = tr_ltt_plan_choose(fam, all, 2, p1, &e);
	fam[0].agree = perm, fam[1].agree = perm2;
	int f2 = tr_ltt_plan_choose(fam, all, 2, p2, &e);
	CHECK(f1 >= 0 && f1 == f2, "the same family chosen (%d, %d)", f1, f2);
	CHECK(memcmp(p1, p2, sizeof p1) == 0 || (p1[0].start == p2[0].start && p1[1].start == p2[1].start &&
						 p1[0].backup == p2[0].backup && p1[1].backup == p2[1].backup &&
						 p1[0].expected == p2[0].expected && p1[1].expected == p2[1].expected),
	      "the same plans");
	/* the first tested step: same threshold, same level */
	struct tr_gate_result r1, r2;
	fam[0].agree = ca;
	CHECK(tr_gate_run(&tr_rule_ltt_plan, &fam[0], 0, &r1, &e) == 0, "run");
	fam[0].agree = perm;
	CHECK(tr_gate_run(&tr_rule_ltt_plan, &fam[0], 0, &r2, &e) == 0, "run permuted");
	CHECK(r1.n_steps && r2.n_steps && r1.steps[0].threshold == r2.steps[0].threshold &&
		      r1.steps[0].budget == r2.steps[0].budget && r1.steps[0].level == r2.steps[0].level,
	      "first step fixed before calibration labels");
	tr_gate_result_free(&r1), tr_gate_result_free(&r2);
}

/*
 * A small trace set: 3 labels told apart by a word, 20% noise, groups of 3 rows sharing a key for
 * rows i < 600 (the rest alone). teacher[i] < 0: the generated label; else that one.
 */
static int toy_set(const int *teacher, struct tr_traceset *ts, int *out_teacher, struct tr_err *e)
{
	enum { N = 900 };
	static const char *names[3] = {"alpha", "beta", "gamma"};
	struct tr_buf b = {0};
	gsl_rng *g = tr_rng_new(5);
	for (int i = 0; i < N; i++) {
		int y = (int)gsl_rng_uniform_int(g, 3), w = gsl_rng_uniform(g) < 0.8 ? y : (int)gsl_rng_uniform_int(g, 3);
		int t = teacher && teacher[i] >= 0 ? teacher[i] : y;
		out_teacher[i] = t;
		tr_buf_printf(&b, "{\"id\":\"r%d\",\"input\":\"w%s x%lu y%lu\",\"teacher\":\"%s\"", i, names[w],
			      gsl_rng_uniform_int(g, 40), gsl_rng_uniform_int(g, 40), names[t]);
		if (i < 600)
			tr_buf_printf(&b, ",\"group\":\"g%d\"", i / 3);
		tr_buf_puts(&b, "}\n");
	}
	gsl_rng_free(g);
	int rc = tr_traces_read_jsonl("toy.jsonl", b.data, b.len, ts, e);
	tr_buf_free(&b);
	return rc;
}

static int fit_oof(const struct tr_traceset *ts, struct tr_fit_options *o, struct tr_fit **f, struct tr_err *e)
{
	*o = (struct tr_fit_options){.backend = "liblinear", .grid = "C=1", .rule = &tr_rule_ltt_plan, .threads = 1,
				     .target = 0.8, .targets = {0.7, 0.8}, .n_targets = 2, .delta = 0.1, .seed = 9,
				     .oof = 1};
	return tr_fit_new(ts, "toy", o, f, e) || tr_fit_gate(*f, &tr_rule_ltt_plan, e);
}

static void test_oof(void)
{
	enum { N = 900 };
	static int t1[N], t2[N], perm[N];
	struct tr_traceset a, b;
	struct tr_fit_options oa, ob;
	struct tr_fit *fa = NULL, *fb = NULL;
	struct tr_err e;
	if (toy_set(NULL, &a, t1, &e) || fit_oof(&a, &oa, &fa, &e)) {
		CHECK(0, "oof fit: %s", e.msg);
		return;
	}
	/* one row per group: each tested group once, drawn at random (not always its first row, which a file's
	 * order could tie to the labels); the rest counted as dropped */
	size_t nc = 0, groups_ok = 1, not_first = 0;
	for (size_t j = 0; j < fa->n; j++)
		nc += fa->fold[j] < 0;
	for (size_t i = 0; i < fa->nca; i++) {
		const char *gi = tr_trace_group(&a.part[TR_PART_TRACES].v[fa->use[fa->ca[i]]]);
		for (size_t k = 0; k < i; k++)
			groups_ok &= strcmp(gi, tr_trace_group(&a.part[TR_PART_TRACES].v[fa->use[fa->ca[k]]])) != 0;
		int earlier = 0;
		for (size_t j = 0; j < fa->n; j++)
			if (fa->fold[j] < 0 && fa->use[j] < fa->use[fa->ca[i]])
				earlier |= strcmp(gi, tr_trace_group(&a.part[TR_PART_TRACES].v[fa->use[j]])) == 0;
		not_first += earlier;
	}
	CHECK(groups_ok, "every tested calibration row has its own group");
	CHECK(not_first > 0 && not_first < fa->nca, "the tested row is drawn, not always its group's first (%zu of %zu are not)",
	      not_first, fa->nca);
	CHECK(fa->ca_dropped > 0 && fa->nca + fa->ca_dropped == nc, "%zu tested + %zu dropped = %zu calibration rows",
	      fa->nca, fa->ca_dropped, nc);
	CHECK(fa->ntr == fa->nva && fa->ntr + nc == fa->n, "the fit part trains the refit and gives the out-of-fold rows");
	/* C's teacher labels permuted: the split, surrogate, acceptor and plans do not move */
	size_t m = 0;
	for (size_t j = 0; j < fa->n; j++)
		perm[j] = -1;
	size_t *cj = malloc(nc * sizeof *cj);
	for (size_t j = 0; j < fa->n; j++)
		if (fa->fold[j] < 0)
			cj[m++] = j;
	for (size_t i = 0; i < m; i++) /* rotate C's labels by one position */
		perm[fa->use[cj[i]]] = t1[fa->use[cj[(i + 1) % m]]];
	free(cj);
	if (toy_set(perm, &b, t2, &e) || fit_oof(&b, &ob, &fb, &e)) {
		CHECK(0, "oof fit, permuted: %s", e.msg);
		tr_fit_free(fa), tr_traceset_free(&a);
		return;
	}
	int changed = 0, same_split = fa->n == fb->n && fa->nca == fb->nca, same_scores = 1, same_probs = 1;
	for (size_t j = 0; same_split && j < fa->n; j++) {
		same_split &= fa->fold[j] == fb->fold[j];
		same_scores &= fa->sc1[j] == fb->sc1[j];
		for (int k = 0; k < fa->K; k++)
			same_probs &= fa->p1[j * (size_t)fa->K + k] == fb->p1[j * (size_t)fa->K + k];
		changed += fa->y[j] != fb->y[j];
	}
	for (size_t i = 0; same_split && i < fa->nca; i++)
		same_split &= fa->ca[i] == fb->ca[i];
	CHECK(changed > 0, "the permutation changed %d calibration labels", changed);
	CHECK(same_split, "same fit / calibration split and folds");
	CHECK(same_probs, "same surrogate probabilities on every row (the deployed surrogate on C)");
	CHECK(same_scores, "same acceptor scores on every row");
	CHECK(fa->s1->hp[0] == fb->s1->hp[0] && memcmp(fa->acc1.mean, fb->acc1.mean, sizeof fa->acc1.mean) == 0 &&
		      memcmp(fa->acc1.sd, fb->acc1.sd, sizeof fa->acc1.sd) == 0,
	      "same hyperparameters and acceptor");
	int same_plans = 1;
	for (int t = 0; t < oa.n_targets; t++)
		for (int fam = 0; fam < fa->n_fam; fam++) {
			const struct tr_plan *p = &tr_fit_result(fa, t, fam)->plan, *q = &tr_fit_result(fb, t, fam)->plan;
			same_plans &= p->start == q->start && p->backup == q->backup && p->expected == q->expected;
		}
	CHECK(same_plans, "same plans (start, backup, predicted coverage) at every target and family");
	const struct tr_fam_result *rsb = tr_fit_result(fa, 0, tr_pol_family_index(&tr_pol_rsb));
	CHECK(!rsb->v.tried && strstr(rsb->v.why, "oof"), "rsb is not tried under oof: %s", rsb->v.why);
	tr_fit_free(fa), tr_fit_free(fb);
	tr_traceset_free(&a), tr_traceset_free(&b);
}

int main(void)
{
	tr_gsl_init();
	test_flat();
	test_plan_blind();
	test_oof();
	return unit_done();
}
