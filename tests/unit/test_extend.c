/*
 * The contributor guide kept true: a toy gate rule and a toy policy family, each defined here and added
 * with one registration call (the equivalent of one table line), go through every place that lists
 * rules or families - spec parsing, fit, the policy's files, loading, routing, experiment cells and the
 * collected table - without any other change to the tree.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/report/report.h"
#include "unit.h"

/* ---- the toy rule: the point rule that also wants half the calibration rows accepted ---- */

static size_t toy_rows; /* calibration rows of the gate being run (passes sees only n and k) */

static double toy_stat(size_t k, size_t n)
{
	return n ? (double)k / (double)n : 0;
}

static int toy_passes(size_t n, size_t k, double alpha, double delta)
{
	(void)delta;
	return 2 * n >= toy_rows && toy_stat(k, n) >= alpha;
}

static int toy_run(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r, struct tr_err *e);

static const struct tr_rule toy_rule = {
	.name = "toy-half",
	.stat = "agreement",
	.guarantee = NULL,
	.run = toy_run,
	.passes = toy_passes,
};

static int toy_run(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *r, struct tr_err *e)
{
	toy_rows = in->n;
	int found = tr_gate_loosest_passing(&toy_rule, in, accept_all, toy_stat, r, e);
	snprintf(r->reason, sizeof r->reason, "toy: %s", found > 0 ? "half accepted and agreeing" : "none");
	return found < 0 ? -1 : 0;
}

/* ---- the toy family: stage 1 alone, accepting everything, reported as agreeing everywhere ---- */

#include "../../src/gate/fit.h"

static const struct tr_pol_family toy_family;

static int toy_prepare(struct tr_fit *f, int t, struct tr_family_view *v, struct tr_err *e)
{
	(void)t;
	void **agree = tr_fit_state(f, &toy_family); /* kept for the fit's life, freed by toy_state_free */
	if (!*agree) {
		int *a = tr_malloc(f->nca * sizeof *a);
		if (!a)
			return tr_fail(e, "out of memory");
		for (size_t i = 0; i < f->nca; i++)
			a[i] = 1;
		*agree = a;
	}
	tr_fit_stage1_view(f, v);
	v->agree = *agree; /* a family that always looks perfect: it must win the competition */
	return 0;
}

static void toy_state_free(void *state)
{
	tr_free(state);
}

static const struct tr_pol_family toy_family = {
	.name = "toy-all",
	.about = "a test family",
	.accept_all = 1,
	.max_stages = 1,
	.prepare = toy_prepare,
	.state_free = toy_state_free,
};

static int contains(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle) != NULL;
}

int main(void)
{
	tr_gsl_init();
	int n_rules = tr_rule_count(), n_fams = tr_pol_family_count();
	CHECK(tr_rule_register(&toy_rule) == 0 && tr_rule_count() == n_rules + 1, "rule registered");
	CHECK(tr_rule_register(&toy_rule) == -1, "a second rule of the same name is refused");
	CHECK(tr_pol_family_register(&toy_family) == 0 && tr_pol_family_count() == n_fams + 1, "family registered");
	CHECK(tr_rule_find("toy-half") == &toy_rule && contains(tr_rule_list("|"), "|toy-half"), "rule listed");
	CHECK(contains(tr_pol_family_list(", "), ", toy-all"), "family listed");
	CHECK(tr_gate_shortfall(&toy_rule, 10, 8, 0.9, 0.1) == 1, "shortfall derives from passes");

	/* a spec names the rule */
	struct tr_spec spec;
	struct tr_err e;
	char root[4096];
	snprintf(root, sizeof root, "%s", tr_root_dir());
	CHECK(tr_spec_parse("toy.spec", "name toy\nsets x:y\nbackends liblinear\ngates toy-half ltt\ntargets 0.8\n", &spec,
			    &e) == 0 && spec.n_gates == 2 && spec.gates[0] == &toy_rule,
	      "spec takes the toy rule: %s", e.msg);
	tr_spec_free(&spec);

	/* fit under the toy rule: the toy family competes and wins */
	char path[4096];
	snprintf(path, sizeof path, "%s/tests/fixtures/audit/traces.jsonl", root);
	struct tr_traceset ts;
	if (tr_traces_load_jsonl(path, &ts, &e)) {
		CHECK(0, "load: %s", e.msg);
		return unit_done();
	}
	struct tr_fit_options o = {.backend = "liblinear", .grid = "C=1", .rule = &toy_rule, .threads = 1,
				   .target = 0.8, .targets = {0.8, 0.9}, .n_targets = 2, .delta = 0.1, .seed = 1, .ood = 1};
	struct tr_policy *p = NULL;
	CHECK(tr_policy_fit(&ts, path, &o, &p, &e) == 0, "fit: %s", e.msg);
	if (p) {
		CHECK(p->family == &toy_family, "the toy family deploys (%s)", tr_pol_family_name(p->family));
		json_t *fr = json_array_get(p->frontier, 0), *fams = json_object_get(fr, "families");
		CHECK(json_array_size(fams) == (size_t)n_fams + 1, "frontier has every family");
		CHECK(contains(json_string_value(json_object_get(p->audit, "rule")), "toy-half"), "audit names the rule");
		CHECK(contains(p->report, "| toy-all |"), "report.md has a toy-all column");
		char tmp[] = "/tmp/tracer-extend-XXXXXX", dir[64];
		CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
		snprintf(dir, sizeof dir, "%s/policy", tmp);
		struct tr_policy *q = NULL;
		char aside[64];
		CHECK(tr_policy_write(p, dir, 0, aside, sizeof aside, &e) == 0 && tr_policy_load(dir, &q, &e) == 0,
		      "write + load: %s", e.msg);
		if (q) {
			CHECK(q->family == &toy_family && q->n_stages == 1, "loaded family toy-all");
			size_t idx[4] = {0, 1, 2, 3};
			struct tr_decision d[4];
			CHECK(tr_policy_route(q, ts.part[TR_PART_TRACES].v, idx, 4, NULL, 0, 0, d, &e) == 0, "route: %s",
			      e.msg);
			int handled = 0;
			for (int i = 0; i < 4; i++)
				handled += d[i].handled || d[i].ood;
			CHECK(handled == 4, "accept-all family handles every input (unless the OOD guard defers it)");
			tr_policy_free(q);
		}
		/* a manifest naming a family outside the table is refused, naming it */
		char mpath[96];
		snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
		json_t *m = json_load_file(mpath, 0, NULL);
		json_object_set_new(json_object_get(m, "deployed"), "family", json_string("mystery"));
		CHECK(m && json_dump_file(m, mpath, JSON_INDENT(1)) == 0, "manifest edited");
		json_decref(m);
		q = NULL;
		CHECK(tr_policy_load(dir, &q, &e) == -1 && !q, "unknown family refused");
		CHECK_ERR(e, "unknown policy family \"mystery\"");
		CHECK(tr_remove_tree(tmp) == 0, "cleanup");
		tr_policy_free(p);
	}

	/* an experiment cell under the toy rule and ltt, and the collected table */
	const struct tr_rule *rules[2] = {&toy_rule, &tr_rule_ltt};
	struct json_t *cell = NULL;
	double secs;
	CHECK(tr_cell_evaluate(&ts, &ts.part[TR_PART_TRACES], &o, rules, 2, &cell, &secs, &e) == 0, "cell: %s", e.msg);
	json_t *res = json_object_get(cell, "results");
	CHECK(json_array_size(res) == 4, "2 rules × 2 targets: %zu results", json_array_size(res));
	json_t *r0 = json_array_get(res, 0);
	CHECK(contains(json_string_value(json_object_get(r0, "rule")), "toy-half") &&
		      contains(json_string_value(json_object_get(r0, "family")), "toy-all"),
	      "cell result names the toy rule and family");
	CHECK(json_is_object(json_object_get(r0, "without_ood")), "cell keeps the gate-only numbers");
	json_decref(cell);
	tr_traceset_free(&ts);
	struct tr_table t = {0};
	struct tr_buf tsv = {0};
	CHECK(tr_table_write_tsv(&t, "none", &tsv) == 0 && contains(tsv.data, "\ttoy-all\n"),
	      "the table has a toy-all count column");
	tr_buf_free(&tsv);
	return unit_done();
}
