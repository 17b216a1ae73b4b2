/*
 * Unit tests of src/exp and the cell collection of src/report: spec parsing (defaults, every key, errors
 * naming file and line), the cells a spec expands into (stable hashes that change with what determines
 * a cell), and collecting crafted cell files into table rows (sums over seeds, with and without the
 * OOD guard, missing cells counted, bad cells refused with their path).
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/report/report.h"
#include "unit.h"

#define SET "mnli:phi-3-small"

static int parse(const char *text, struct tr_spec *s, struct tr_err *e)
{
	return tr_spec_parse("t.spec", text, s, e);
}

static void test_parse(void)
{
	struct tr_spec s;
	struct tr_err e;
	CHECK(parse("# a comment\nname  q1 # trailing\nsets a:b c:d\nbackends liblinear knn\ngates ltt point\n"
		    "targets 0.9 0.95\n",
		    &s, &e) == 0,
	      "minimal spec: %s", e.msg);
	CHECK(strcmp(s.name, "q1") == 0 && s.n_sets == 2 && s.n_backends == 2 && s.n_gates == 2 && s.n_targets == 2,
	      "counts");
	CHECK(s.gates[0] == &tr_rule_ltt && s.gates[1] == &tr_rule_point, "rules from the table, in order");
	CHECK(s.n_protocols == 1 && s.protocols[0] == TR_PROTO_OFFICIAL && s.n_traces == 1 && s.traces[0] == -1 &&
		      s.n_seeds == 1 && s.seeds[0] == 0 && fabs(s.delta - 0.10) < 1e-12,
	      "defaults: official, all traces, seed 0, delta 0.10");
	tr_spec_free(&s);
	CHECK(parse("name x\nsets a:b\nprotocols official pooled\nbackends liblinear\ngrid liblinear C=1,10\n"
		    "gates cp-holdout\ntargets 0.8\ntraces 250 all\nseeds 3 5-7\ndelta 0.05\n",
		    &s, &e) == 0,
	      "full spec: %s", e.msg);
	CHECK(s.n_protocols == 2 && s.n_traces == 2 && s.traces[0] == 250 && s.n_seeds == 4 && s.seeds[3] == 7 &&
		      fabs(s.delta - 0.05) < 1e-12 && s.grids[0] && strcmp(s.grids[0], "C=1,10") == 0,
	      "every key read");
	tr_spec_free(&s);
	static const struct {
		const char *text, *want;
	} bad[] = {
		{"name x\nbogus 1\n", "t.spec:2: unknown key \"bogus\""},
		{"name x\nsets\n", "t.spec:2: \"sets\" has no value"},
		{"name a b\n", "t.spec:1: name must be one word"},
		{"name x\ngates point magic\n", "t.spec:2: unknown gate rule \"magic\" (point, cp-holdout, ltt"},
		{"name x\ntargets 0.9 1.0\n", "t.spec:2: bad targets \"1.0\""},
		{"name x\ndelta 0.1 0.2\n", "t.spec:2: bad delta"},
		{"name x\ntraces 5\n", "t.spec:2: bad trace count \"5\""},
		{"name x\nseeds 3-1\n", "t.spec:2: bad seeds \"3-1\""},
		{"name x\nseeds 0-64\n", "t.spec:2: bad seeds"},
		{"name x\nprotocols shifted\n", "t.spec:2: unknown protocol \"shifted\""},
		{"name x\nbackends gpt\n", "t.spec:2: unknown backend \"gpt\""},
		{"name x\ngrid liblinear C=1\n", "t.spec:2: expected `grid BACKEND SPEC` after the backends line"},
		{"name x\nbackends liblinear\ngrid liblinear C=1\ngrid liblinear C=2\n", "t.spec:4: a second grid"},
		{"name x\nbackends liblinear\ngrid liblinear C=-1\n", "t.spec:3:"},
		{"name x\nsets a:b\n", "t.spec: a spec needs name, sets, backends, gates (or oof) and targets"},
		{"name x\noof ltt-plan magic\n", "t.spec:2: unknown rule \"magic\" in `oof`"},
		{"name x\noofsplit 70/20\n", "t.spec:2: expected `oofsplit FIT/CAL`"},
		{"name x\nsubsample random\n", "t.spec:2: expected `subsample iid` or `subsample stratified`"},
		{"name x\nsets a:b\nbackends knn\noof ltt\ncrossfit ltt\ntargets 0.9\n", "t.spec: a crossfit line needs a gates line"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		e.msg[0] = 0;
		CHECK(parse(bad[i].text, &s, &e) == -1, "refused: %s", bad[i].text);
		CHECK_ERR(e, bad[i].want);
	}
}

/* The cells of a small spec, and how their hashes depend on what determines them. */
static void test_cells(void)
{
	struct tr_spec s, s2;
	struct tr_err e;
	const char *text = "name c\nsets " SET "\nprotocols official pooled\nbackends liblinear\ngates point ltt\n"
			   "targets 0.9\ntraces 100 100000 all\nseeds 0-1\n";
	if (parse(text, &s, &e)) {
		CHECK(0, "%s", e.msg);
		return;
	}
	struct tr_cell *c, *c2;
	size_t n, n2;
	CHECK(tr_spec_cells(&s, &c, &n, &e) == 0, "cells: %s", e.msg);
	CHECK(n == 8, "2 protocols × 2 trace counts (100000 is above the set) × 2 seeds: %zu", n);
	int distinct = 1;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			distinct &= strcmp(c[i].hash, c[j].hash) != 0;
	CHECK(distinct && strlen(c[0].hash) == 16, "distinct 16-hex hashes");
	char path[256];
	tr_cell_path("R", &s, &c[0], path, sizeof path);
	CHECK(strncmp(path, "R/cells/c/", 10) == 0 && strstr(path, c[0].hash), "cell path %s", path);
	/* same spec, same hashes; another delta, other hashes */
	parse(text, &s2, &e);
	tr_spec_cells(&s2, &c2, &n2, &e);
	CHECK(n2 == n && strcmp(c2[3].hash, c[3].hash) == 0, "stable hashes");
	tr_free(c2), tr_spec_free(&s2);
	char other[512];
	snprintf(other, sizeof other, "%sdelta 0.05\n", text);
	parse(other, &s2, &e);
	tr_spec_cells(&s2, &c2, &n2, &e);
	CHECK(n2 == n && strcmp(c2[3].hash, c[3].hash) != 0, "delta is part of the hash");
	tr_free(c2), tr_spec_free(&s2);
	/* `subsample iid` changes the hash; `subsample stratified` is the default and keeps it */
	snprintf(other, sizeof other, "%ssubsample iid\n", text);
	CHECK(parse(other, &s2, &e) == 0 && s2.subsample_iid == 1, "subsample iid read: %s", e.msg);
	tr_spec_cells(&s2, &c2, &n2, &e);
	CHECK(n2 == n && strcmp(c2[3].hash, c[3].hash) != 0, "subsample iid is part of the hash");
	tr_free(c2), tr_spec_free(&s2);
	snprintf(other, sizeof other, "%ssubsample stratified\n", text);
	CHECK(parse(other, &s2, &e) == 0 && s2.subsample_iid == 0, "subsample stratified read: %s", e.msg);
	tr_spec_cells(&s2, &c2, &n2, &e);
	CHECK(n2 == n && strcmp(c2[3].hash, c[3].hash) == 0, "subsample stratified keeps the default's hash");
	tr_free(c2), tr_spec_free(&s2);
	tr_free(c), tr_spec_free(&s);
	CHECK(parse("name d\nsets nosuchset:gold\nbackends liblinear\ngates ltt\ntargets 0.9\n", &s, &e) == 0 &&
		      tr_spec_cells(&s, &c, &n, &e) == -1,
	      "an unknown set is refused when cells are listed");
	tr_spec_free(&s);
}

/* A crafted cell: one result per rule at 0.9 (coverage cov with the guard, cov_wo without). */
static void write_cell(const char *path, const char *family, double cov, double cov_wo, int violation)
{
	json_t *res = json_array();
	const char *rules[2] = {"point", "ltt"};
	for (int r = 0; r < 2; r++) {
		json_t *x = json_pack("{s:s, s:f, s:s, s:f, s:f, s:f, s:f, s:o, s:b, s:f}", "rule", rules[r], "target", 0.9,
				      "family", family, "cal_coverage", 0.5, "test_coverage", cov, "test_agreement", 0.92,
				      "e2e_agreement", 0.95, "gold_accuracy", json_null(), "violation", violation,
				      "ood_deferred", 1.0);
		json_object_set_new(x, "without_ood", json_pack("{s:f, s:f, s:b}", "test_coverage", cov_wo, "test_agreement",
								0.91, "violation", 0));
		json_array_append_new(res, x);
	}
	json_t *cell = json_pack("{s:o, s:{s:I}}", "results", res, "splits", "used", (json_int_t)100);
	json_dump_file(cell, path, 0);
	json_decref(cell);
}

static void test_collect(void)
{
	char dir[] = "/tmp/tracer-exp-XXXXXX";
	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp");
		return;
	}
	struct tr_spec s;
	struct tr_err e;
	parse("name k\nsets " SET "\nbackends liblinear\ngates point ltt\ntargets 0.9\nseeds 0-2\n", &s, &e);
	struct tr_cell *c;
	size_t n;
	if (tr_spec_cells(&s, &c, &n, &e) || n != 3) {
		CHECK(0, "cells: %s", e.msg);
		return;
	}
	char sub[128], path[256];
	snprintf(sub, sizeof sub, "%s/cells/k", dir);
	tr_mkdirs(sub, &e);
	tr_cell_path(dir, &s, &c[0], path, sizeof path);
	write_cell(path, "l2d", 0.6, 0.7, 1);
	tr_cell_path(dir, &s, &c[1], path, sizeof path);
	write_cell(path, "refused", 0.0, 0.0, 0);
	struct tr_table t = {0};
	CHECK(tr_table_add_spec(&t, &s, dir, NULL, &e) == 0, "collect: %s", e.msg);
	CHECK(t.cells == 3 && t.missing == 1 && t.n == 2, "3 cells, 1 missing, 2 rows: %zu %zu %zu", t.cells, t.missing, t.n);
	const struct tr_agg *a = tr_table_find(&t, "k", SET, "official", "liblinear", -1, "ltt", 0.9);
	CHECK(a && a->seeds == 2 && fabs(a->cov_sum - 0.6) < 1e-12 && a->cov_min == 0 && a->cov_max == 0.6 &&
		      fabs(a->cov_noood_sum - 0.7) < 1e-12 && a->violations == 1 && a->violations_noood == 0,
	      "sums with and without the guard");
	CHECK(a && a->fam[0] == 1 && a->fam[1 + tr_pol_family_index(&tr_pol_l2d)] == 1, "family counts");
	CHECK(a && a->agr_n == 2 && a->gold_n == 0 && a->n_traces_sum == 200, "agreement, gold, traces used");
	tr_table_free(&t);
	/* a cell naming a family outside the table, and a file that is not JSON */
	tr_cell_path(dir, &s, &c[2], path, sizeof path);
	write_cell(path, "mystery", 0.5, 0.5, 0);
	CHECK(tr_table_add_spec(&t, &s, dir, NULL, &e) == -1, "unknown family refused");
	CHECK_ERR(e, "bad result");
	tr_table_free(&t);
	struct tr_err we;
	tr_write_atomic(path, "{not json", 9, &we);
	CHECK(tr_table_add_spec(&t, &s, dir, NULL, &e) == -1, "broken cell refused");
	CHECK_ERR(e, path);
	tr_table_free(&t);
	tr_free(c), tr_spec_free(&s);
	tr_remove_tree(dir);
}

int main(void)
{
	tr_gsl_init();
	test_parse();
	test_cells();
	test_collect();
	return unit_done();
}
