/*
 * Allocation-failure test: fail the Nth allocation, for N = 1, 2, ... through loading traces, training
 * and fitting a small policy (under ltt, ltt-plan, and ltt-plan with crossfit or oof calibration); every run must
 * end in a clean error, or - where the failure only cost a log line - in exactly the decisions of an
 * undisturbed run. No crash; under `make asan`, no leak.
 * (liblinear, libsvm and jansson allocate with their own malloc: only our allocations are failed.)
 */
#include <math.h>
#include <stdlib.h>

#include <jansson.h>

#include "../../src/exp/exp.h"
#include "unit.h"

/* The fit under test: the gate rule, and whether calibration is cross-fitted or out of fold. */
static const struct tr_rule *rule;
static int crossfit, oof;

static int run(const char *path, struct tr_decision *d, struct tr_err *e)
{
	struct tr_traceset ts;
	if (tr_traces_load_jsonl(path, &ts, e))
		return -1;
	struct tr_fit_options o = {.backend = "liblinear", .grid = "C=1", .rule = rule, .threads = 1, .target = 0.8,
				   .targets = {0.8, 0.9}, .n_targets = 2, .delta = 0.1, .seed = 1, .ood = 1,
				   .crossfit = crossfit, .oof = oof, .folds = 3};
	struct tr_policy *p;
	int rc = tr_policy_fit(&ts, path, &o, &p, e);
	if (!rc) {
		size_t idx[3] = {0, 1, 2};
		rc = tr_policy_route(p, ts.part[TR_PART_TRACES].v, idx, 3, NULL, 0, 0, d, e);
		tr_policy_free(p);
	}
	tr_traceset_free(&ts);
	return rc;
}

/* An experiment cell under every rule (cp-holdout's 70/30 check included): its JSON text, or NULL. */
static char *cell(const char *path, struct tr_err *e)
{
	struct tr_traceset ts;
	if (tr_traces_load_jsonl(path, &ts, e))
		return NULL;
	struct tr_fit_options o = {.backend = "liblinear", .grid = "C=1", .threads = 1, .targets = {0.8, 0.9},
				   .n_targets = 2, .delta = 0.1, .seed = 1};
	const struct tr_rule *rules[4] = {&tr_rule_point, &tr_rule_cp_holdout, &tr_rule_ltt, &tr_rule_ltt_plan};
	struct json_t *c = NULL;
	double secs;
	char *text = NULL;
	if (tr_cell_evaluate(&ts, &ts.part[TR_PART_TRACES], &o, rules, 4, &c, &secs, e) == 0) {
		text = json_dumps(c, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
		json_decref(c);
	}
	tr_traceset_free(&ts);
	return text;
}

/* Fails each allocation of a cell once: a clean error, or the same cell. */
static void test_cell_faults(const char *path)
{
	struct tr_err e;
	tr_alloc_fail_at(0);
	char *base = cell(path, &e);
	unsigned long total = tr_alloc_count();
	CHECK(base != NULL, "cell: %s", e.msg);
	int clean = 1;
	for (unsigned long n = 1; base && n <= total && clean; n++) {
		e.msg[0] = 0;
		tr_alloc_fail_at(n);
		char *c = cell(path, &e);
		tr_alloc_fail_at(0);
		if (c ? strcmp(c, base) != 0 : !e.msg[0]) {
			clean = 0;
			fprintf(stderr, "cell allocation %lu: %s\n", n, c ? "failure changed the cell silently" : "no message");
		}
		free(c);
	}
	printf("cell: %lu allocations, each failed once: %s\n", total, clean ? "all clean" : "NOT clean");
	CHECK(clean, "every allocation failure of a cell ends in a clean error");
	free(base);
}

/* Fails each allocation of one fit in turn. */
static void sweep(const char *path)
{
	struct tr_err e;
	struct tr_decision base[3], d[3];
	tr_alloc_fail_at(0);
	CHECK(run(path, base, &e) == 0, "%s", e.msg);
	unsigned long total = tr_alloc_count(), recovered = 0;
	int clean = 1;
	unsigned long n;
	for (n = 1; n <= total; n++) {
		e.msg[0] = 0;
		memset(d, 0, sizeof d);
		tr_alloc_fail_at(n);
		int rc = run(path, d, &e);
		int same = rc == 0;
		for (int i = 0; same && i < 3; i++)
			same = d[i].label == base[i].label && d[i].handled == base[i].handled &&
			       d[i].ood == base[i].ood && (d[i].score == base[i].score || (isnan(d[i].score) && isnan(base[i].score)));
		recovered += same;
		if ((rc == 0 && !same) || (rc != 0 && !e.msg[0])) {
			clean = 0;
			fprintf(stderr, "allocation %lu: %s\n", n, rc == 0 ? "failure changed the result silently" : "no message");
			break;
		}
	}
	tr_alloc_fail_at(0);
	printf("%s%s: %lu allocations, each failed once: %s (%lu without effect on the result)\n", rule->name,
	       crossfit ? " + crossfit" : oof ? " + oof" : "", total, clean ? "all clean" : "NOT clean", recovered);
	CHECK(clean, "every allocation failure ends in a clean error (%s%s)", rule->name,
	      crossfit ? " + crossfit" : oof ? " + oof" : "");
	CHECK(total > 100, "the run made %lu allocations", total);
}

int main(void)
{
	tr_gsl_init();
	char path[4096];
	snprintf(path, sizeof path, "%s/tests/fixtures/emb/traces.jsonl", tr_root_dir());
	rule = &tr_rule_ltt, crossfit = 0;
	sweep(path);
	rule = &tr_rule_ltt_plan; /* plans on validation, tests one family */
	sweep(path);
	crossfit = 1; /* folds, out-of-fold probabilities, refit */
	sweep(path);
	crossfit = 0, oof = 1; /* fit / calibration parts, folds on the fit part, one row per group */
	sweep(path);
	snprintf(path, sizeof path, "%s/tests/fixtures/audit/traces.jsonl", tr_root_dir());
	test_cell_faults(path);
	return unit_done();
}
