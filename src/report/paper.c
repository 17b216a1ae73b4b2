/*
 * paper.c - the generated sections of PAPER.md, rewritten from the collected tables.
 *
 * PAPER.md keeps its prose; each generated section sits between `<!-- BEGIN name -->` and
 * `<!-- END name -->` and is replaced whole. A section whose spec has no finished cells says so.
 */
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double alphas[] = {0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99};
/* the benchmarks and teachers of the coverage tables */
static const char *const all_sets[] = {"banking77:gold", "banking77:gpt-4o", "clinc150:gold",
				       "clinc150:llama-3.2-1b-lora", "mnli:gold", "mnli:phi-3-small"};
#define N_SETS (sizeof all_sets / sizeof *all_sets)
#define N_ALPHAS (int)(sizeof alphas / sizeof *alphas)

static double mean_cov(const struct tr_agg *a)
{
	return a ? a->cov_sum / a->seeds : NAN;
}

static double mean_agr(const struct tr_agg *a)
{
	return a && a->agr_n ? a->agr_sum / a->agr_n : NAN;
}

static void pct(struct tr_buf *b, double v)
{
	if (isnan(v))
		tr_buf_puts(b, "—");
	else
		tr_buf_printf(b, "%.1f%%", 100 * v);
}

/* Whether rule names a rule under oof calibration ("ltt-plan-oof"): its rows come from the -oof specs. */
static int is_oof(const char *rule)
{
	size_t n = strlen(rule);
	return n > 4 && strcmp(rule + n - 4, "-oof") == 0;
}

/* Rows of the coverage and honesty tables besides the rule table's: other calibrations. */
static const char *const extra_rules[] = {"crossfit", "cp-holdout-oof", "ltt-plan-oof"};
#define N_EXTRA (int)(sizeof extra_rules / sizeof *extra_rules)

/* The r-th rule of those tables: the rule table's, then extra_rules. */
static const char *any_rule(int r)
{
	return r < tr_rule_count() ? tr_rule_at(r)->name : extra_rules[r - tr_rule_count()];
}

/* ---- claims ---- */

/* The coverage study's row: spec coverage, or coverage-oof for the rules under oof calibration. */
static const struct tr_agg *cov_row(const struct tr_table *t, const char *set, const char *rule, double a)
{
	return tr_table_find(t, is_oof(rule) ? "coverage-oof" : "coverage", set, "official", "liblinear", -1, rule, a);
}

/* Our coverage range over the targets for one set and rule: min and max of the seed means. */
static int cov_range(const struct tr_table *t, const char *set, const char *rule, double *lo, double *hi)
{
	*lo = INFINITY, *hi = -INFINITY;
	int n = 0;
	for (int i = 0; i < N_ALPHAS; i++) {
		const struct tr_agg *a = cov_row(t, set, rule, alphas[i]);
		if (!a)
			continue;
		*lo = fmin(*lo, mean_cov(a)), *hi = fmax(*hi, mean_cov(a));
		n++;
	}
	return n;
}

/*
 * The rules the claims table and the flywheel show: the paper's, ours, ours planned on validation (holdout
 * calibration, the committed studies' protocol), and that rule under oof calibration (`tracer fit`'s default).
 */
static const char *const shown[] = {"point", "ltt", "ltt-plan", "ltt-plan-oof"};
#define N_SHOWN 4

static void claim_c1(const struct tr_table *t, struct tr_buf *b)
{
	double lo[N_SHOWN], hi[N_SHOWN];
	int ok[N_SHOWN];
	tr_buf_puts(b, "| C1 | Banking77: 83–100% coverage across α | 83%–100% | ");
	for (int r = 0; r < N_SHOWN; r++) {
		ok[r] = cov_range(t, "banking77:gold", shown[r], &lo[r], &hi[r]);
		if (ok[r])
			pct(b, lo[r]), tr_buf_puts(b, "–"), pct(b, hi[r]);
		else
			tr_buf_puts(b, "—");
		tr_buf_puts(b, " | ");
	}
	if (!ok[0]) {
		tr_buf_puts(b, "not run |\n");
		return;
	}
	const char *v = lo[0] >= 0.78 && hi[0] >= 0.95 ? "reproduced" : hi[0] >= 0.83 ? "partly" : "not reproduced";
	tr_buf_printf(b, "%s |\n", v);
}

/* Seeds of row a that deployed the global family. */
static int global_seeds(const struct tr_agg *a)
{
	return a->fam[1 + tr_pol_family_index(&tr_pol_global)];
}

static void claim_c2(const struct tr_table *t, struct tr_buf *b)
{
	tr_buf_puts(b, "| C2 | CLINC150: the surrogate fully replaces the teacher (α = 0.95) | 100% | ");
	const struct tr_agg *x[N_SHOWN];
	for (int r = 0; r < N_SHOWN; r++) {
		x[r] = cov_row(t, "clinc150:gold", shown[r], 0.95);
		if (x[r])
			pct(b, mean_cov(x[r])), tr_buf_printf(b, " (%s)", global_seeds(x[r]) == x[r]->seeds ? "global" : "not global");
		else
			tr_buf_puts(b, "—");
		tr_buf_puts(b, " | ");
	}
	if (!x[0]) {
		tr_buf_puts(b, "not run |\n");
		return;
	}
	const char *v = global_seeds(x[0]) == x[0]->seeds ? "reproduced" : mean_cov(x[0]) >= 0.90 ? "partly" : "not reproduced";
	tr_buf_printf(b, "%s |\n", v);
}

/* Seeds × targets >= 0.85 at which the set was refused, and how many there were. */
static void refusals(const struct tr_table *t, const char *set, const char *rule, int *refused, int *total)
{
	*refused = *total = 0;
	for (int i = 0; i < N_ALPHAS; i++) {
		const struct tr_agg *a = alphas[i] >= 0.85 - 1e-9 ? cov_row(t, set, rule, alphas[i]) : NULL;
		if (a)
			*refused += a->fam[0], *total += a->seeds;
	}
}

static void claim_c3(const struct tr_table *t, struct tr_buf *b)
{
	int rg[N_SHOWN], tg[N_SHOWN], rp[N_SHOWN], tp[N_SHOWN];
	tr_buf_puts(b, "| C3 | NLI: the parity gate refuses (α ≥ 0.85) | 0% coverage | ");
	for (int r = 0; r < N_SHOWN; r++) {
		refusals(t, "mnli:gold", shown[r], &rg[r], &tg[r]);
		refusals(t, "mnli:phi-3-small", shown[r], &rp[r], &tp[r]);
		if (tg[r])
			tr_buf_printf(b, "refused %d/%d (gold), %d/%d (Phi-3) | ", rg[r], tg[r], rp[r], tp[r]);
		else
			tr_buf_puts(b, "— | ");
	}
	if (!tg[0]) {
		tr_buf_puts(b, "not run |\n");
		return;
	}
	const char *v = rg[0] == tg[0] && rp[0] == tp[0] ? "reproduced" : rg[1] == tg[1] ? "partly" : "not reproduced";
	tr_buf_printf(b, "%s |\n", v);
}

static void claim_c4(const struct tr_table *t, struct tr_buf *b)
{
	const struct tr_agg *c = cov_row(t, "banking77:gold", "cp-holdout", 0.95);
	tr_buf_puts(b, "| C4 | Paper's tool, Banking77, α = 0.95: coverage / agreement on handled / end-to-end accuracy "
		       "| 92.2% / 96.1% / 96.4% | ");
	for (int r = 0; r < N_SHOWN; r++) {
		const struct tr_agg *x = r == 0 ? c : cov_row(t, "banking77:gold", shown[r], 0.95);
		if (!x) {
			tr_buf_puts(b, "— | ");
			continue;
		}
		pct(b, mean_cov(x)), tr_buf_puts(b, " / "), pct(b, mean_agr(x)), tr_buf_puts(b, " / ");
		pct(b, x->gold_n ? x->gold_sum / x->gold_n : NAN);
		tr_buf_puts(b, r == 0 ? " (cp-holdout) | " : " | ");
	}
	if (!c) {
		tr_buf_puts(b, "not run |\n");
		return;
	}
	double dc = fabs(mean_cov(c) - 0.922), da = fabs(mean_agr(c) - 0.961);
	tr_buf_printf(b, "%s |\n", dc <= 0.03 && da <= 0.02 ? "reproduced" : dc <= 0.10 ? "partly" : "not reproduced");
}

static void claim_c5(const struct tr_table *t, struct tr_buf *b)
{
	static const long n[3] = {2000, 6000, -1};
	static const double paper[3] = {0.84, 0.90, 0.92};
	const struct tr_agg *x[N_SHOWN][3];
	tr_buf_puts(b, "| C5 | Coverage grows with traces (α = 0.95): 2k → 84%, 6k → 90%, 10k → 92% | 84% / 90% / 92% | ");
	for (int r = 0; r < N_SHOWN; r++) {
		int have = 1;
		for (int i = 0; i < 3; i++)
			have &= (x[r][i] = tr_table_find(t, is_oof(shown[r]) ? "flywheel-oof" : "flywheel", "banking77:gold",
							 "official", "liblinear", n[i], shown[r], 0.95)) != NULL;
		for (int i = 0; i < 3 && have; i++)
			pct(b, mean_cov(x[r][i])), tr_buf_puts(b, i < 2 ? " / " : "");
		tr_buf_puts(b, have ? " | " : "— | ");
		if (!have)
			x[r][0] = NULL;
	}
	if (!x[0][0]) {
		tr_buf_puts(b, "not run |\n");
		return;
	}
	int close = 1, grows = 1;
	for (int i = 0; i < 3; i++) {
		close &= fabs(mean_cov(x[0][i]) - paper[i]) <= 0.05;
		grows &= i == 0 || mean_cov(x[0][i]) >= mean_cov(x[0][i - 1]);
	}
	tr_buf_printf(b, "%s |\n", close && grows ? "reproduced" : grows ? "partly" : "not reproduced");
}

static void sec_claims(const struct tr_table *t, struct tr_buf *b)
{
	tr_buf_puts(b, "| id | claim | paper | ours: point rule (the paper's) | ours: ltt | ours: ltt-plan (holdout) | ours: "
		       "ltt-plan-oof (fit's default) | verdict (point rule) |\n|---|---|---|---|---|---|---|---|\n");
	claim_c1(t, b);
	claim_c2(t, b);
	claim_c3(t, b);
	claim_c4(t, b);
	claim_c5(t, b);
}

/* ---- tables ---- */

/* The coverage study (official traffic): every rule, holdout rules from coverage.spec, oof rules from coverage-oof.spec. */
static void sec_coverage(const struct tr_table *t, struct tr_buf *b)
{
	tr_buf_puts(b, "| set | rule |");
	for (int i = 0; i < N_ALPHAS; i++)
		tr_buf_printf(b, " α=%.2f |", alphas[i]);
	tr_buf_puts(b, "\n|---|---|");
	for (int i = 0; i < N_ALPHAS; i++)
		tr_buf_puts(b, "---|");
	tr_buf_puts(b, "\n");
	int rows = 0;
	for (size_t s = 0; s < N_SETS; s++)
		for (int r = 0; r < tr_rule_count() + N_EXTRA; r++) {
			const char *rule = any_rule(r);
			int any = 0;
			for (int i = 0; i < N_ALPHAS; i++)
				any |= cov_row(t, all_sets[s], rule, alphas[i]) != NULL;
			if (!any)
				continue;
			rows++;
			tr_buf_printf(b, "| %s | %s |", all_sets[s], rule);
			for (int i = 0; i < N_ALPHAS; i++) {
				const struct tr_agg *a = cov_row(t, all_sets[s], rule, alphas[i]);
				tr_buf_puts(b, " ");
				if (!a) {
					tr_buf_puts(b, "— |");
					continue;
				}
				pct(b, mean_cov(a));
				tr_buf_puts(b, " (");
				if (a->agr_n)
					tr_buf_printf(b, "%.3f", mean_agr(a));
				else
					tr_buf_puts(b, "—");
				tr_buf_puts(b, ")");
				if (a->violations)
					tr_buf_printf(b, " **✗%d/%d**", a->violations, a->seeds);
				tr_buf_puts(b, " |");
			}
			tr_buf_puts(b, "\n");
		}
	if (!rows)
		tr_buf_puts(b, "\n*(no finished cells)*\n");
}

/*
 * What `tracer fit`'s default calibration (rule ltt-plan-oof) gives per set on the coverage study's traffic,
 * beside holdout ltt-plan and the paper's point rule: mean coverage at α = 0.90 / 0.95 / 0.97 and the
 * violating seeds over those three targets.
 */
static void sec_coverage_default(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const rules[] = {"ltt-plan-oof", "ltt-plan", "point"};
	static const double as[] = {0.90, 0.95, 0.97};
	int rows = 0;
	for (size_t s = 0; s < N_SETS; s++) {
		if (!cov_row(t, all_sets[s], rules[0], as[0]))
			continue;
		if (!rows++)
			tr_buf_puts(b, "| set | ltt-plan-oof (fit's default): coverage at α = 0.90 / 0.95 / 0.97, violating seeds "
				       "| ltt-plan (holdout) | point (the paper's) |\n|---|---|---|---|\n");
		tr_buf_printf(b, "| %s |", all_sets[s]);
		for (size_t r = 0; r < sizeof rules / sizeof *rules; r++) {
			int v = 0, n = 0;
			tr_buf_puts(b, " ");
			for (size_t i = 0; i < sizeof as / sizeof *as; i++) {
				const struct tr_agg *a = cov_row(t, all_sets[s], rules[r], as[i]);
				pct(b, a ? mean_cov(a) : NAN);
				tr_buf_puts(b, i + 1 < sizeof as / sizeof *as ? " / " : "");
				if (a)
					v += a->violations, n += a->seeds;
			}
			tr_buf_printf(b, ", %d/%d |", v, n);
		}
		tr_buf_puts(b, "\n");
	}
	if (!rows)
		tr_buf_puts(b, "*(no finished cells of coverage-oof.spec)*\n");
}

static void sec_flywheel(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const sets[] = {"banking77:gold", "clinc150:gold", "banking77:gpt-4o"};
	static const long counts[] = {250, 500, 1000, 2000, 4000, 6000, 8000, -1};
	tr_buf_puts(b, "| set | rule | α |");
	for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
		counts[i] < 0 ? tr_buf_puts(b, " all |") : tr_buf_printf(b, " %ld |", counts[i]);
	tr_buf_puts(b, "\n|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t s = 0; s < sizeof sets / sizeof *sets; s++)
		for (int r = 0; r < N_SHOWN; r++) /* ltt-plan-oof's rows are spec flywheel-oof's */
			for (double a = 0.90; a < 0.96; a += 0.05) {
				const char *rule = shown[r];
				const char *spec = is_oof(rule) ? "flywheel-oof" : "flywheel";
				const struct tr_agg *any = NULL;
				for (size_t i = 0; i < sizeof counts / sizeof *counts && !any; i++)
					any = tr_table_find(t, spec, sets[s], "official", "liblinear", counts[i], rule, a);
				if (!any)
					continue;
				tr_buf_printf(b, "| %s | %s | %.2f |", sets[s], rule, a);
				for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
					const struct tr_agg *x = tr_table_find(t, spec, sets[s], "official", "liblinear", counts[i],
									       rule, a);
					tr_buf_puts(b, " ");
					if (x)
						pct(b, mean_cov(x));
					else
						tr_buf_puts(b, "—");
					tr_buf_puts(b, " |");
				}
				tr_buf_puts(b, "\n");
			}
}

/*
 * The honesty study's row for set × traces × rule: spec honesty-4k for 4,000 traces (every rule), else
 * honesty, honesty-crossfit for crossfit, or honesty-oof (then honesty-oof-teachers) for the rules under
 * oof calibration.
 */
static const struct tr_agg *hon_row(const struct tr_table *t, const char *set, long n, const char *rule, double a)
{
	/* honesty-crossfit's holdout rows repeat honesty's: only its crossfit rows are read */
	const char *spec = n == 4000		       ? "honesty-4k"
			   : strcmp(rule, "crossfit") == 0 ? "honesty-crossfit"
			   : is_oof(rule)		       ? "honesty-oof"
							       : "honesty";
	const struct tr_agg *x = tr_table_find(t, spec, set, "pooled", "liblinear", n, rule, a);
	if (!x && n != 4000 && is_oof(rule)) /* the teacher sets' oof rows: a spec of their own */
		x = tr_table_find(t, "honesty-oof-teachers", set, "pooled", "liblinear", n, rule, a);
	return x;
}

/* Rows exceeding this many violating seeds out of 40 are listed: δ = 0.10 of 40 plus sampling noise. */
#define HON_MAX_VIOLATIONS 7

/* One honesty cell: violating seeds of all, their mean depth below α, mean test coverage. */
static void hon_cell(struct tr_buf *b, const struct tr_agg *x)
{
	tr_buf_printf(b, " %d/%d", x->violations, x->seeds);
	if (x->violations)
		tr_buf_printf(b, " (−%.3f)", x->gap_sum / x->violations);
	tr_buf_printf(b, " · %.0f%% |", 100 * mean_cov(x));
}

static void hon_header(struct tr_buf *b)
{
	tr_buf_puts(b, "| set | traces | rule |");
	for (int i = 0; i < N_ALPHAS; i++)
		tr_buf_printf(b, " α=%.2f |", alphas[i]);
	tr_buf_puts(b, "\n|---|---|---|");
	for (int i = 0; i < N_ALPHAS; i++)
		tr_buf_puts(b, "---|");
	tr_buf_puts(b, "\n");
}

/*
 * honesty-iid.spec: the holdout and oof rules when the trace count is drawn blind to labels (`subsample
 * iid`), in the honesty table's format.
 */
static void sec_honesty_iid(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const sets[] = {"banking77:gold", "clinc150:gold"};
	static const char *const rules[] = {"cp-holdout", "ltt-plan", "cp-holdout-oof", "ltt-plan-oof"};
	static const long counts[] = {500, 1000, 2000, 4000};
	int rows = 0;
	hon_header(b);
	for (size_t s = 0; s < sizeof sets / sizeof *sets; s++)
		for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
			for (size_t r = 0; r < sizeof rules / sizeof *rules; r++) {
				const struct tr_agg *x[N_ALPHAS];
				int any = 0;
				for (int i = 0; i < N_ALPHAS; i++)
					any |= (x[i] = tr_table_find(t, "honesty-iid", sets[s], "pooled", "liblinear", counts[c],
								    rules[r], alphas[i])) != NULL;
				if (!any)
					continue;
				rows++;
				tr_buf_printf(b, "| %s | %ld | %s |", sets[s], counts[c], rules[r]);
				for (int i = 0; i < N_ALPHAS; i++) {
					if (x[i])
						hon_cell(b, x[i]);
					else
						tr_buf_puts(b, " — |");
				}
				tr_buf_puts(b, "\n");
			}
	if (!rows)
		tr_buf_puts(b, "\n*(no finished cells)*\n");
}

static void sec_honesty(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const sets[] = {"banking77:gold", "clinc150:gold", "banking77:gpt-4o",
					   "clinc150:llama-3.2-1b-lora"};
	static const long counts[] = {500, 1000, 2000, 4000};
	struct tr_buf over = {0};
	int point_above = 0, point_rows = 0;
	hon_header(b);
	int rows = 0;
	for (size_t s = 0; s < sizeof sets / sizeof *sets; s++)
		for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
			for (int r = 0; r < tr_rule_count() + N_EXTRA; r++) {
				const char *rule = any_rule(r);
				const struct tr_agg *x0 = NULL;
				for (int i = 0; i < N_ALPHAS && !x0; i++)
					x0 = hon_row(t, sets[s], counts[c], rule, alphas[i]);
				if (!x0)
					continue;
				rows++;
				tr_buf_printf(b, "| %s | %ld | %s |", sets[s], counts[c], rule);
				for (int i = 0; i < N_ALPHAS; i++) {
					const struct tr_agg *x = hon_row(t, sets[s], counts[c], rule, alphas[i]);
					if (!x) {
						tr_buf_puts(b, " — |");
						continue;
					}
					hon_cell(b, x);
					int above = x->violations * 40 > HON_MAX_VIOLATIONS * x->seeds;
					if (above && strcmp(rule, "point") == 0) /* the paper's rule: counted, not listed */
						point_above++;
					else if (above)
						tr_buf_printf(&over, "%s%s, %s, %ld traces, α = %.2f: %d/%d", over.len ? "; " : "",
							      sets[s], rule, counts[c], alphas[i], x->violations, x->seeds);
					point_rows += strcmp(rule, "point") == 0;
				}
				tr_buf_puts(b, "\n");
			}
	if (!rows) {
		tr_buf_puts(b, "\n*(no finished cells)*\n");
	} else {
		tr_buf_printf(b, "\nAbove %d violating seeds of 40 (δ = 0.10 plus sampling noise), or the same rate over "
				 "fewer seeds: the point rule in %d of its %d cells",
			      HON_MAX_VIOLATIONS, point_above, point_rows);
		tr_buf_printf(b, "%s%s.\n", over.len ? "; " : "; no cell of any other rule", over.len ? over.data : "");
	}
	tr_buf_free(&over);
}

/* A table cell: mean test coverage (violating seeds / seeds), or a dash without a row. */
static void cov_cell(struct tr_buf *b, const struct tr_agg *x)
{
	if (x)
		tr_buf_printf(b, " %.1f%% (%d/%d) |", 100 * mean_cov(x), x->violations, x->seeds);
	else
		tr_buf_puts(b, " — |");
}

/* The train / validation / calibration sweep (splits.spec): mean test coverage (violations) per split. */
static void sec_splits(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const splits[] = {"60/20/20", "50/10/40", "45/15/40", "40/10/50"};
	static const double as[] = {0.90, 0.95, 0.97};
	tr_buf_puts(b, "| set | traces | rule | α |");
	for (size_t k = 0; k < sizeof splits / sizeof *splits; k++)
		tr_buf_printf(b, " %s |", splits[k]);
	tr_buf_puts(b, "\n|---|---|---|---|---|---|---|---|\n");
	int rows = 0;
	for (size_t i = 0; i < t->n; i++) {
		const struct tr_agg *a = &t->v[i];
		if (strcmp(a->spec, "splits") != 0 || strcmp(a->split, splits[0]) != 0)
			continue;
		int shown_alpha = 0;
		for (size_t k = 0; k < sizeof as / sizeof *as; k++)
			shown_alpha |= fabs(a->target - as[k]) < 1e-9;
		if (!shown_alpha)
			continue;
		rows++;
		tr_buf_printf(b, "| %s | %ld | %s | %.2f |", a->set, a->traces, a->rule, a->target);
		for (size_t k = 0; k < sizeof splits / sizeof *splits; k++) {
			const struct tr_agg *x = NULL;
			for (size_t j = 0; j < t->n && !x; j++) {
				const struct tr_agg *y = &t->v[j];
				if (strcmp(y->spec, "splits") == 0 && strcmp(y->split, splits[k]) == 0 &&
				    strcmp(y->set, a->set) == 0 && y->traces == a->traces && strcmp(y->rule, a->rule) == 0 &&
				    fabs(y->target - a->target) < 1e-9)
					x = y;
			}
			cov_cell(b, x);
		}
		tr_buf_puts(b, "\n");
	}
	if (!rows)
		tr_buf_puts(b, "\n*(no finished cells)*\n");
}

/*
 * oof's fit / calibration split (honesty-oof.spec at 70/30, honesty-oof80.spec at 80/20): mean test
 * coverage (violating seeds / seeds) of ltt-plan-oof per set, trace count and α, beside cp-holdout under
 * holdout (honesty.spec), the yardstick of issue 11's done-when.
 */
static void sec_oofsplit(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const sets[] = {"banking77:gold", "clinc150:gold"};
	static const long traces[] = {1000, 2000};
	static const double as[] = {0.80, 0.85, 0.90, 0.95, 0.97};
	tr_buf_puts(b, "| set | traces | α | ltt-plan-oof, 70/30 | ltt-plan-oof, 80/20 | cp-holdout (holdout) |\n"
		       "|---|---|---|---|---|---|\n");
	int rows = 0;
	for (size_t s = 0; s < sizeof sets / sizeof *sets; s++)
		for (size_t n = 0; n < sizeof traces / sizeof *traces; n++)
			for (size_t k = 0; k < sizeof as / sizeof *as; k++) {
				const struct tr_agg *x[3] = {
					tr_table_find(t, "honesty-oof", sets[s], "pooled", "liblinear", traces[n], "ltt-plan-oof", as[k]),
					tr_table_find(t, "honesty-oof80", sets[s], "pooled", "liblinear", traces[n], "ltt-plan-oof", as[k]),
					tr_table_find(t, "honesty", sets[s], "pooled", "liblinear", traces[n], "cp-holdout", as[k])};
				if (!x[0] || !x[1])
					continue;
				rows++;
				tr_buf_printf(b, "| %s | %ld | %.2f |", sets[s], traces[n], as[k]);
				for (int c = 0; c < 3; c++)
					cov_cell(b, x[c]);
				tr_buf_puts(b, "\n");
			}
	if (!rows)
		tr_buf_puts(b, "\n*(no finished cells)*\n");
}

static void sec_backends(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const sets[] = {"banking77:gold", "clinc150:gold"};
	tr_buf_puts(b, "| set | backend | coverage α=0.90 | agreement | coverage α=0.95 | agreement | fit seconds |\n"
		       "|---|---|---|---|---|---|---|\n");
	for (int s = 0; s < 2; s++)
		for (int f = 0; tr_families[f]; f++) {
			const char *fam = tr_families[f]->name;
			const struct tr_agg *a = tr_table_find(t, "backends", sets[s], "official", fam, -1, "ltt", 0.90);
			const struct tr_agg *c = tr_table_find(t, "backends", sets[s], "official", fam, -1, "ltt", 0.95);
			if (!a || !c)
				continue;
			tr_buf_printf(b, "| %s | %s | ", sets[s], fam);
			pct(b, mean_cov(a)), tr_buf_puts(b, " | "), pct(b, mean_agr(a)), tr_buf_puts(b, " | ");
			pct(b, mean_cov(c)), tr_buf_puts(b, " | "), pct(b, mean_agr(c));
			tr_buf_printf(b, " | %.1f |\n", a->fit_n ? a->fit_sum / a->fit_n : NAN);
		}
}

static void sec_cost(const struct tr_table *t, struct tr_buf *b)
{
	tr_buf_puts(b, "| set | α | LLM calls per 10k queries (no policy → ltt policy) | cost per 10k at $0.002/call "
		       "| with the drift guard's audits (rate 0.02 of handled) |\n|---|---|---|---|---|\n");
	for (size_t s = 0; s < N_SETS; s++)
		for (double a = 0.90; a < 0.96; a += 0.05) {
			const struct tr_agg *x = cov_row(t, all_sets[s], "ltt", a);
			if (!x)
				continue;
			double calls = 10000 * (1 - mean_cov(x));
			double audited = calls + 10000 * mean_cov(x) * 0.02; /* audits are teacher calls too */
			tr_buf_printf(b, "| %s | %.2f | 10,000 → %.0f | $20.00 → $%.2f | %.0f calls, $%.2f |\n", all_sets[s], a,
				      calls, calls * 0.002, audited, audited * 0.002);
		}
}

static void sec_shift(const struct tr_table *t, struct tr_buf *b)
{
	static const char *const sets[] = {"banking77:gold", "clinc150:gold"};
	tr_buf_puts(b, "| set | rule | α | official: coverage, agreement on handled, violations | pooled: coverage, agreement, "
		       "violations |\n|---|---|---|---|---|\n");
	for (int s = 0; s < 2; s++)
		for (int r = 0; r < tr_rule_count(); r++)
			for (int i = 2; i < N_ALPHAS; i++) {
				const struct tr_agg *o = cov_row(t, sets[s], tr_rule_at(r)->name, alphas[i]);
				const struct tr_agg *p = tr_table_find(t, "pooled", sets[s], "pooled", "liblinear", -1, tr_rule_at(r)->name, alphas[i]);
				if (!o || !p)
					continue;
				tr_buf_printf(b, "| %s | %s | %.2f | ", sets[s], tr_rule_at(r)->name, alphas[i]);
				const struct tr_agg *x[2] = {o, p};
				for (int k = 0; k < 2; k++) {
					pct(b, mean_cov(x[k]));
					tr_buf_puts(b, ", ");
					if (x[k]->agr_n)
						tr_buf_printf(b, "%.3f", mean_agr(x[k]));
					else
						tr_buf_puts(b, "—");
					tr_buf_printf(b, ", %d/%d |", x[k]->violations, x[k]->seeds);
					tr_buf_puts(b, k ? "\n" : " ");
				}
			}
}

/* The OOD guard's effect: every number above is with it (what `tracer fit`'s policy does); this
 * section sets the gate-only routing of the same cells beside it. */
static void sec_ood(const struct tr_table *t, struct tr_buf *b)
{
	double drop_sum = 0, drop_max = 0;
	int rows = 0, changed = 0;
	struct tr_buf tab = {0};
	for (size_t s = 0; s < N_SETS; s++)
		for (int r = 0; r < tr_rule_count(); r++)
			for (double a = 0.90; a < 0.96; a += 0.05) {
				const struct tr_agg *x = cov_row(t, all_sets[s], tr_rule_at(r)->name, a);
				if (!x)
					continue;
				double drop = x->cov_noood_sum / x->seeds - mean_cov(x);
				rows++, drop_sum += drop, drop_max = fmax(drop_max, drop);
				changed += x->violations != x->violations_noood;
				tr_buf_printf(&tab, "| %s | %s | %.2f | ", all_sets[s], tr_rule_at(r)->name, a);
				pct(&tab, mean_cov(x)), tr_buf_puts(&tab, " / "), pct(&tab, x->cov_noood_sum / x->seeds);
				tr_buf_puts(&tab, " | ");
				pct(&tab, mean_agr(x)), tr_buf_puts(&tab, " / ");
				pct(&tab, x->agr_noood_n ? x->agr_noood_sum / x->agr_noood_n : NAN);
				tr_buf_printf(&tab, " | %d/%d / %d/%d |\n", x->violations, x->seeds, x->violations_noood,
					      x->seeds);
			}
	tr_buf_printf(b, "Every number in this document routes the test traffic as `tracer route` does with the policy "
			 "`tracer fit` writes: the deployed stages, then the OOD guard, which defers a handled input whose "
			 "mean cosine distance to its %d nearest training traces lies beyond the %.1fth percentile of the "
			 "training traces' own distances (per answered label with at least 10 training traces). Cells "
			 "before format 3 measured the gate alone; the same cells' gate-only routing is kept beside it "
			 "(same thresholds: the guard can only defer more). ltt's guarantee is proven for the gate's "
			 "handled set; the guard then drops inputs by a rule the calibration rows never saw, so with the "
			 "guard on the guarantee is measured (here and in the honesty study), not proven. ",
		      TR_OOD_K, 100 * TR_OOD_PCT);
	if (rows)
		tr_buf_printf(b, "Over the %d rows below (official traffic, α = 0.90 and 0.95), the guard lowers mean "
				 "test coverage by %.2f percentage points on average (at most %.2f) and changes the "
				 "violation count in %d of them.\n\n",
			      rows, 100 * drop_sum / rows, 100 * drop_max, changed);
	else
		tr_buf_puts(b, "\n\n");
	tr_buf_puts(b, "| set | rule | α | coverage: with guard / gate only | agreement on handled: with / gate only | "
		       "violations: with / gate only |\n|---|---|---|---|---|---|\n");
	tr_buf_puts(b, rows ? tab.data : "\n*(no finished cells)*\n");
	tr_buf_free(&tab);
}

/* ---- splicing ---- */

static int splice(struct tr_buf *doc, const char *name, const char *body, struct tr_err *e)
{
	char begin[96], end[96];
	snprintf(begin, sizeof begin, "<!-- BEGIN %s -->\n", name);
	snprintf(end, sizeof end, "<!-- END %s -->", name);
	char *b = strstr(doc->data, begin), *x = b ? strstr(b, end) : NULL;
	if (!b || !x)
		return tr_fail(e, "PAPER.md: no section markers for \"%s\"", name);
	struct tr_buf out = {0};
	size_t head = (size_t)(b - doc->data) + strlen(begin);
	if (tr_buf_add(&out, doc->data, head) || tr_buf_puts(&out, body) || tr_buf_puts(&out, x)) {
		tr_buf_free(&out);
		return tr_fail(e, "out of memory");
	}
	tr_buf_free(doc);
	*doc = out;
	return 0;
}

int tr_paper_splice_file(const char *paper_path, const char *name, const char *body, struct tr_err *e)
{
	struct tr_buf doc = {0};
	char *text;
	size_t len;
	if (tr_read_file(paper_path, &text, &len, e))
		return -1;
	int rc = tr_buf_add(&doc, text, len) ? tr_fail(e, "out of memory") : splice(&doc, name, body, e);
	tr_free(text);
	if (!rc)
		rc = tr_write_atomic(paper_path, doc.data, doc.len, e);
	tr_buf_free(&doc);
	return rc;
}

int tr_paper_update(const struct tr_table *t, const char *paper_path, struct tr_err *e)
{
	struct tr_buf doc = {0};
	char *text;
	size_t len;
	if (tr_read_file(paper_path, &text, &len, e))
		return -1;
	if (tr_buf_add(&doc, text, len)) {
		tr_free(text);
		return tr_fail(e, "out of memory");
	}
	tr_free(text);
	struct {
		const char *name;
		void (*fn)(const struct tr_table *, struct tr_buf *);
	} secs[] = {{"claims", sec_claims}, {"flywheel", sec_flywheel}, {"honesty", sec_honesty},
		    {"honesty-iid", sec_honesty_iid},
		    {"backends", sec_backends}, {"cost", sec_cost},	  {"shift", sec_shift},
		    {"ood", sec_ood}, {"splits", sec_splits}, {"oofsplit", sec_oofsplit}};
	int rc = 0;
	for (size_t i = 0; i < sizeof secs / sizeof *secs && !rc; i++) {
		struct tr_buf body = {0};
		secs[i].fn(t, &body);
		rc = splice(&doc, secs[i].name, body.data ? body.data : "", e);
		tr_buf_free(&body);
	}
	if (!rc) {
		struct tr_buf body = {0};
		tr_buf_puts(&body, "Test traffic routed as `tracer route` routes it, OOD guard included (the gate alone: "
				   "see the OOD guard section below).\n\n");
		sec_coverage(t, &body);
		tr_buf_puts(&body, "\n`tracer fit`'s default calibration per set (spec `experiments/coverage-oof.spec`; violating "
				   "seeds counted over the three targets):\n\n");
		sec_coverage_default(t, &body);
		rc = splice(&doc, "coverage", body.data, e);
		tr_buf_free(&body);
	}
	if (!rc)
		rc = tr_write_atomic(paper_path, doc.data, doc.len, e);
	tr_buf_free(&doc);
	return rc;
}
