/*
 * Unit tests of src/report: PAPER.md's generated sections rewritten between their markers (prose kept,
 * a missing marker refused with the file untouched), and the verdict rules of the claims (C1-C5) on
 * crafted tables at and around each rule's boundary; the TSV table's columns; thresholds in JSON.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/report/report.h"
#include "unit.h"

static const char *const sections[] = {"claims", "coverage", "ood", "shift", "flywheel", "honesty", "honesty-iid",
					"backends", "cost", "splits", "oofsplit"};
#define N_SECTIONS (sizeof sections / sizeof *sections)

static char dir[] = "/tmp/tracer-report-XXXXXX";
static char paper[64];

/* A PAPER.md with prose around every section's markers. */
static void write_paper(const char *skip)
{
	struct tr_buf b = {0};
	tr_buf_puts(&b, "# Title\n\nhand-written prose\n\n");
	for (size_t i = 0; i < N_SECTIONS; i++) {
		if (skip && strcmp(skip, sections[i]) == 0)
			continue;
		tr_buf_printf(&b, "## %s\n\n<!-- BEGIN %s -->\nold %s body\n<!-- END %s -->\n\nprose after %s\n\n",
			      sections[i], sections[i], sections[i], sections[i], sections[i]);
	}
	struct tr_err e;
	CHECK(tr_write_atomic(paper, b.data, b.len, &e) == 0, "write %s", paper);
	tr_buf_free(&b);
}

static char *read_paper(void)
{
	char *text = NULL;
	size_t len;
	struct tr_err e;
	if (tr_read_file(paper, &text, &len, &e))
		return NULL;
	return text;
}

/* One table row with `seeds` seeds of equal coverage and agreement; family counts as given. */
static struct tr_agg *add(struct tr_table *t, const char *spec, const char *set, long traces, const char *rule,
			  double target, double cov, double agr, int seeds, int refused, int global)
{
	tr_grow(&t->v, &t->cap, t->n + 1, sizeof *t->v);
	struct tr_agg *a = &t->v[t->n++];
	memset(a, 0, sizeof *a);
	snprintf(a->spec, sizeof a->spec, "%s", spec);
	snprintf(a->set, sizeof a->set, "%s", set);
	snprintf(a->protocol, sizeof a->protocol, "official");
	snprintf(a->backend, sizeof a->backend, "liblinear");
	snprintf(a->rule, sizeof a->rule, "%s", rule);
	a->traces = traces, a->target = target, a->seeds = seeds;
	a->cov_sum = cov * seeds, a->cov_min = a->cov_max = cov, a->cov_noood_sum = cov * seeds;
	a->agr_sum = agr * seeds, a->agr_n = seeds;
	a->agr_noood_sum = agr * seeds, a->agr_noood_n = seeds;
	a->fam[0] = refused;
	a->fam[1 + tr_pol_family_index(&tr_pol_global)] = global;
	return a;
}

/* The verdict (last cell) of claim `id` in the rewritten PAPER.md. */
static int verdict(const struct tr_table *t, const char *id, char *out, size_t size)
{
	struct tr_err e;
	write_paper(NULL);
	out[0] = 0;
	if (tr_paper_update(t, paper, &e))
		return -1;
	char *text = read_paper(), key[16];
	snprintf(key, sizeof key, "| %s |", id);
	char *line = text ? strstr(text, key) : NULL;
	if (line) {
		char *end = strchr(line, '\n');
		*end = 0;
		end[-2] = 0; /* drop the closing " |" */
		char *last = strrchr(line, '|');
		snprintf(out, size, "%s", last + 2);
	}
	free(text);
	return line ? 0 : -1;
}

#define VERDICT(t, id, want, ...)                                                                          \
	do {                                                                                               \
		char got[64];                                                                              \
		verdict(t, id, got, sizeof got);                                                          \
		CHECK(strcmp(got, want) == 0, "%s: \"%s\", want \"%s\" (%s)", id, got, want, __VA_ARGS__);  \
	} while (0)

static const double alphas[] = {0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99};

/* C1: point coverage spans >= 78%..95% over α: reproduced; reaches 83%: partly. */
static void test_c1(void)
{
	struct tr_table t = {0};
	VERDICT(&t, "C1", "not run", "empty table");
	struct tr_agg *lo = NULL, *hi = NULL;
	for (int i = 0; i < 7; i++) {
		struct tr_agg *a = add(&t, "coverage", "banking77:gold", -1, "point", alphas[i], 0.90, 0.95, 1, 0, 0);
		add(&t, "coverage", "banking77:gold", -1, "ltt", alphas[i], 0.85, 0.95, 1, 0, 0);
		if (i == 0)
			hi = a;
		if (i == 6)
			lo = a;
	}
	/* tr_grow may move rows: find them again by target */
	hi = (struct tr_agg *)tr_table_find(&t, "coverage", "banking77:gold", "official", "liblinear", -1, "point", 0.80);
	lo = (struct tr_agg *)tr_table_find(&t, "coverage", "banking77:gold", "official", "liblinear", -1, "point", 0.99);
	hi->cov_sum = 0.95, lo->cov_sum = 0.78;
	VERDICT(&t, "C1", "reproduced", "78%%..95%%: at both boundaries");
	lo->cov_sum = 0.7799;
	VERDICT(&t, "C1", "partly", "low end just below 78%%");
	lo->cov_sum = 0.78, hi->cov_sum = 0.9499;
	VERDICT(&t, "C1", "partly", "high end just below 95%%");
	hi->cov_sum = 0.83, lo->cov_sum = 0.50;
	for (size_t i = 0; i < t.n; i++)
		if (strcmp(t.v[i].rule, "point") == 0 && &t.v[i] != hi && &t.v[i] != lo)
			t.v[i].cov_sum = 0.6;
	VERDICT(&t, "C1", "partly", "reaches 83%% exactly");
	hi->cov_sum = 0.8299;
	VERDICT(&t, "C1", "not reproduced", "just below 83%%");
	tr_table_free(&t);
}

/* C2: point deploys global in every seed at 0.95: reproduced; else coverage >= 90%: partly. */
static void test_c2(void)
{
	struct tr_table t = {0};
	add(&t, "coverage", "clinc150:gold", -1, "ltt", 0.95, 0.9, 0.95, 3, 0, 3);
	struct tr_agg *p = add(&t, "coverage", "clinc150:gold", -1, "point", 0.95, 1.0, 0.93, 3, 0, 3);
	VERDICT(&t, "C2", "reproduced", "global in 3/3 seeds");
	p->fam[1 + tr_pol_family_index(&tr_pol_global)] = 2;
	p->cov_sum = 0.90 * 3;
	VERDICT(&t, "C2", "partly", "global in 2/3, coverage 90%%");
	p->cov_sum = 0.8999 * 3;
	VERDICT(&t, "C2", "not reproduced", "coverage just below 90%%");
	tr_table_free(&t);
}

/* C3: point refuses both MNLI sets at every α >= 0.85: reproduced; ltt refuses mnli:gold: partly. */
static void test_c3(void)
{
	struct tr_table t = {0};
	const char *sets[2] = {"mnli:gold", "mnli:phi-3-small"};
	for (int s = 0; s < 2; s++)
		for (int i = 0; i < 7; i++)
			for (int r = 0; r < 2; r++)
				add(&t, "coverage", sets[s], -1, r ? "ltt" : "point", alphas[i], 0, NAN, 3, 3, 0);
	VERDICT(&t, "C3", "reproduced", "refused everywhere");
	/* a deployment at α = 0.80 does not count */
	((struct tr_agg *)tr_table_find(&t, NULL, "mnli:gold", "official", "liblinear", -1, "point", 0.80))->fam[0] = 2;
	VERDICT(&t, "C3", "reproduced", "α = 0.80 is outside the claim");
	struct tr_agg *p = (struct tr_agg *)tr_table_find(&t, NULL, "mnli:phi-3-small", "official", "liblinear", -1,
							  "point", 0.85);
	p->fam[0] = 2;
	VERDICT(&t, "C3", "partly", "point deployed once at 0.85 on phi-3, ltt refused");
	((struct tr_agg *)tr_table_find(&t, NULL, "mnli:gold", "official", "liblinear", -1, "ltt", 0.99))->fam[0] = 2;
	VERDICT(&t, "C3", "not reproduced", "ltt deployed once too");
	tr_table_free(&t);
}

/* C4: cp-holdout within 3 pp of 92.2% coverage and 2 pp of 96.1% agreement: reproduced; 10 pp: partly. */
static void test_c4(void)
{
	struct tr_table t = {0};
	add(&t, "coverage", "banking77:gold", -1, "ltt", 0.95, 0.85, 0.96, 1, 0, 0);
	struct tr_agg *c = add(&t, "coverage", "banking77:gold", -1, "cp-holdout", 0.95, 0.922 - 0.0299, 0.961 + 0.0199,
			       1, 0, 0);
	VERDICT(&t, "C4", "reproduced", "inside both margins");
	c->agr_sum = 0.961 + 0.0201;
	VERDICT(&t, "C4", "partly", "agreement 2.01 pp off");
	c->agr_sum = 0.961, c->cov_sum = 0.922 + 0.0301;
	VERDICT(&t, "C4", "partly", "coverage 3.01 pp off");
	c->cov_sum = 0.922 - 0.0999;
	VERDICT(&t, "C4", "partly", "coverage 9.99 pp off");
	c->cov_sum = 0.922 - 0.1001;
	VERDICT(&t, "C4", "not reproduced", "coverage 10.01 pp off");
	tr_table_free(&t);
}

/* C5: point coverage at 2k, 6k, all within 5 pp of 84/90/92% and growing: reproduced; growing: partly. */
static void test_c5(void)
{
	struct tr_table t = {0};
	static const long n[3] = {2000, 6000, -1};
	static const double paper_cov[3] = {0.84, 0.90, 0.92};
	for (int i = 0; i < 3; i++) {
		add(&t, "flywheel", "banking77:gold", n[i], "point", 0.95, paper_cov[i], 0.95, 1, 0, 0);
		add(&t, "flywheel", "banking77:gold", n[i], "ltt", 0.95, paper_cov[i] - 0.05, 0.96, 1, 0, 0);
	}
	struct tr_agg *p[3];
	for (int i = 0; i < 3; i++)
		p[i] = (struct tr_agg *)tr_table_find(&t, "flywheel", "banking77:gold", "official", "liblinear", n[i], "point",
						      0.95);
	VERDICT(&t, "C5", "reproduced", "the paper's figures");
	p[0]->cov_sum = 0.84 + 0.0499, p[1]->cov_sum = 0.90 + 0.0499, p[2]->cov_sum = 0.92 + 0.0499;
	VERDICT(&t, "C5", "reproduced", "just inside 5 pp, still growing");
	p[0]->cov_sum = 0.84 - 0.0501, p[1]->cov_sum = 0.90, p[2]->cov_sum = 0.92;
	VERDICT(&t, "C5", "partly", "2k 5.01 pp off, growing");
	p[0]->cov_sum = 0.84, p[1]->cov_sum = 0.8399, p[2]->cov_sum = 0.92;
	VERDICT(&t, "C5", "not reproduced", "6k below 2k: not growing");
	p[1]->cov_sum = 0.84;
	VERDICT(&t, "C5", "partly", "flat counts as growing, 6k 6 pp off");
	tr_table_free(&t);
}

/* The other generated tables each show a crafted row. */
static void test_tables(void)
{
	struct tr_table t = {0};
	struct tr_agg *a = add(&t, "coverage", "clinc150:gold", -1, "point", 0.95, 0.0, NAN, 3, 3, 0);
	a->agr_n = 0, a->violations = 1;
	add(&t, "pooled", "clinc150:gold", -1, "point", 0.95, 0.9, 0.96, 3, 0, 0);
	snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
	add(&t, "honesty", "clinc150:gold", 2000, "ltt", 0.90, 0.7, 0.95, 20, 0, 0);
	snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
	t.v[t.n - 1].violations = 2;
	add(&t, "honesty-iid", "banking77:gold", 1000, "ltt-plan-oof", 0.95, 0.3, 0.96, 20, 0, 0);
	snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
	t.v[t.n - 1].violations = 1, t.v[t.n - 1].gap_sum = 0.004;
	/* 4,000 traces: every rule's row is honesty-4k's (a stray honesty row at 4,000 is not read) */
	add(&t, "honesty-4k", "clinc150:gold", 4000, "ltt-plan-oof", 0.95, 0.55, 0.96, 40, 0, 0);
	snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
	t.v[t.n - 1].violations = 3, t.v[t.n - 1].gap_sum = 0.006;
	add(&t, "honesty", "clinc150:gold", 4000, "ltt", 0.95, 0.99, 0.96, 40, 0, 0);
	snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
	add(&t, "honesty-oof-teachers", "banking77:gpt-4o", 1000, "cp-holdout-oof", 0.90, 0.25, 0.93, 10, 0, 0);
	snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
	/* the coverage study under oof calibration: its own spec, a row of the coverage table and of the default's */
	add(&t, "coverage-oof", "banking77:gold", -1, "ltt-plan-oof", 0.90, 0.9, 0.93, 3, 0, 0);
	add(&t, "coverage-oof", "banking77:gold", -1, "ltt-plan-oof", 0.95, 0.8, 0.96, 3, 0, 0);
	t.v[t.n - 1].violations = 1;
	add(&t, "coverage", "banking77:gold", -1, "ltt-plan-oof", 0.97, 0.7, 0.98, 3, 0, 0); /* wrong spec: not read */
	static const long fly_n[3] = {2000, 6000, -1};
	for (int i = 0; i < 3; i++)
		add(&t, "flywheel-oof", "banking77:gold", fly_n[i], "ltt-plan-oof", 0.95, 0.5 + 0.1 * i, 0.96, 1, 0, 0);
	add(&t, "backends", "banking77:gold", -1, "ltt", 0.90, 0.8, 0.95, 1, 0, 0);
	t.v[t.n - 1].fit_sum = 4.25, t.v[t.n - 1].fit_n = 1;
	snprintf(t.v[t.n - 1].backend, sizeof t.v[t.n - 1].backend, "knn");
	add(&t, "backends", "banking77:gold", -1, "ltt", 0.95, 0.6, 0.97, 1, 0, 0);
	snprintf(t.v[t.n - 1].backend, sizeof t.v[t.n - 1].backend, "knn");
	/* oof's split at 70/30 and 80/20 beside cp-holdout under holdout; a row without 80/20 is left out */
	static const char *const split_spec[3] = {"honesty-oof", "honesty-oof80", "honesty"};
	static const double split_cov[3] = {0.25, 0.28, 0.27};
	for (int i = 0; i < 3; i++) {
		add(&t, split_spec[i], "banking77:gold", 1000, i == 2 ? "cp-holdout" : "ltt-plan-oof", 0.90, split_cov[i],
		    0.93, 40, 0, 0);
		snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
		t.v[t.n - 1].violations = i;
	}
	add(&t, "honesty-oof", "clinc150:gold", 2000, "ltt-plan-oof", 0.95, 0.5, 0.96, 40, 0, 0);
	snprintf(t.v[t.n - 1].protocol, sizeof t.v[t.n - 1].protocol, "pooled");
	struct tr_err e;
	write_paper(NULL);
	CHECK(tr_paper_update(&t, paper, &e) == 0, "update: %s", e.msg);
	char *text = read_paper();
	/* rows each generated table must hold */
	static const struct {
		const char *row, *what;
	} want[] = {
		{"| clinc150:gold | point | — | — | — | 0.0% (—) **✗1/3** |", "coverage: nothing handled, a violation"},
		{"| clinc150:gold | point | 0.95 | 0.0%, —, 1/3 | 90.0%, 0.960, 0/3 |", "shift row"},
		{"| banking77:gold | knn | 80.0% | 95.0% | 60.0% | 97.0% | 4.2 |", "backends row"},
		{"| clinc150:gold | 4000 | ltt-plan-oof | — | — | — | 3/40 (−0.002) · 55% | — |",
		 "honesty row at 4,000 traces from honesty-4k"},
		{"| banking77:gpt-4o | 1000 | cp-holdout-oof | — | — | 0/10 · 25% | — |",
		 "the teacher sets' oof rows from honesty-oof-teachers"},
		{"| banking77:gold | ltt-plan-oof | — | — | 90.0% (0.930) | 80.0% (0.960) **✗1/3** | — |",
		 "coverage table: the oof rule's row from coverage-oof"},
		{"| banking77:gold | 90.0% / 80.0% / —, 1/6 | — / — / —, 0/0 | — / — / —, 0/0 |",
		 "the default's coverage per set at α = 0.90 / 0.95 / 0.97 with its violating seeds"},
		{"| C1 | Banking77: 83–100% coverage across α | 83%–100% | — | — | — | 80.0%–90.0% | not run |",
		 "claims: the default's column from coverage-oof"},
		{"| 84% / 90% / 92% | — | — | — | 50.0% / 60.0% / 70.0% | not run |", "claims: C5's default column from flywheel-oof"},
		{"| banking77:gold | 1000 | ltt-plan-oof | — | — | — | 1/20 (−0.004) · 30% | — |",
		 "honesty-iid row: the subsample-iid spec's cells in the honesty format"},
		{"| banking77:gold | 1000 | 0.90 | 25.0% (0/40) | 28.0% (1/40) | 27.0% (2/40) |",
		 "oofsplit row: 70/30 and 80/20 from their specs, cp-holdout from honesty"},
	};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++)
		CHECK(text && strstr(text, want[i].row), "%s", want[i].what);
	CHECK(text && strstr(text, "| clinc150:gold | 2000 | ltt | — | — | 2/20 (−") && strstr(text, " · 70% |"),
	      "honesty row: set, traces, rule, violations with their depth, coverage");
	CHECK(text && !strstr(text, "| clinc150:gold | 4000 | ltt |"), "a honesty row at 4,000 traces is honesty-4k's only");
	CHECK(text && !strstr(text, "| clinc150:gold | 2000 | 0.95 |"), "oofsplit: no row without both splits");
	free(text);
	tr_table_free(&t);
}

static void test_splice(void)
{
	struct tr_table t = {0};
	add(&t, "coverage", "banking77:gold", -1, "ltt", 0.90, 0.5, 0.95, 2, 0, 0);
	struct tr_err e;
	write_paper(NULL);
	CHECK(tr_paper_update(&t, paper, &e) == 0, "update: %s", e.msg);
	char *text = read_paper();
	CHECK(text && strstr(text, "hand-written prose\n") && strstr(text, "prose after cost\n"), "prose kept");
	int old = 0;
	for (size_t i = 0; text && i < N_SECTIONS; i++) {
		char body[64];
		snprintf(body, sizeof body, "old %s body", sections[i]);
		old += strstr(text, body) != NULL;
	}
	CHECK(old == 0, "every generated section replaced (%d left)", old);
	CHECK(text && strstr(text, "| banking77:gold | ltt | — | — | 50.0% (0.950) |"), "coverage row");
	CHECK(text && strstr(text, "<!-- BEGIN coverage -->\nTest traffic routed as `tracer route` routes it, OOD guard"),
	      "the coverage section says the guard is included");
	CHECK(text && strstr(text, "<!-- END ood -->") && strstr(text, "| banking77:gold | ltt | 0.90 | 50.0% / 50.0% |"),
	      "ood row with and without the guard");
	/* a second update gives the same bytes */
	CHECK(tr_paper_update(&t, paper, &e) == 0, "second update");
	char *again = read_paper();
	CHECK(text && again && strcmp(text, again) == 0, "rewriting is idempotent");
	free(text), free(again);
	/* a missing marker: an error naming the section, the file untouched */
	write_paper("honesty");
	char *before = read_paper();
	CHECK(tr_paper_update(&t, paper, &e) == -1, "missing markers refused");
	CHECK_ERR(e, "\"honesty\"");
	char *after = read_paper();
	CHECK(before && after && strcmp(before, after) == 0, "file untouched");
	free(before), free(after);
	tr_table_free(&t);
}

static void test_tsv(void)
{
	struct tr_table t = {0};
	struct tr_agg *a = add(&t, "coverage", "banking77:gold", -1, "ltt", 0.90, 0.5, 0.95, 2, 1, 1);
	a->violations = 1, a->cal_cov_sum = 1.0, a->e2e_sum = 1.8, a->n_traces_sum = 200;
	a->cov_noood_sum = 1.2, a->violations_noood = 2, a->gap_sum = 0.02;
	add(&t, "other", "banking77:gold", -1, "ltt", 0.90, 0.5, 0.95, 2, 1, 1);
	struct tr_buf b = {0};
	CHECK(tr_table_write_tsv(&t, "coverage", &b) == 0, "tsv");
	char *nl = b.data ? strchr(b.data, '\n') : NULL;
	CHECK(nl && strncmp(b.data, "set\tprotocol\tbackend\ttraces\trule\ttarget\t", 40) == 0, "header");
	CHECK(nl && strstr(nl + 1, "banking77:gold\tofficial\tliblinear\tall\tltt\t0.90\t2\t0.5000\t") == nl + 1,
	      "row: %s", nl ? nl + 1 : "");
	CHECK(nl && strstr(nl + 1, "\t0.6000\t0.9500\t2\t0.0200\tdefault\t1\t1\t0\t0\n"),
	      "without-guard, violation depth, split and family columns: %s", nl + 1);
	CHECK(nl && !strchr(strchr(nl + 1, '\n') + 1, '\n'), "only the rows of the named spec");
	tr_buf_free(&b);
	tr_table_free(&t);
}

/* Thresholds in the policy's JSON: numbers, or null with a companion naming the infinity; read back exactly. */
static void test_threshold_json(void)
{
	json_t *o = json_object();
	const double t[4] = {0.5, -INFINITY, INFINITY, -0.25};
	const char *key[4] = {"a", "b", "stage2_threshold", "d"};
	for (int i = 0; i < 4; i++)
		CHECK(tr_threshold_set(o, key[i], t[i]) == 0, "set %s", key[i]);
	char *s = tr_json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	CHECK(s && strcmp(s, "{\"a\":0.5,\"b\":null,\"b_inf\":\"-inf\",\"stage2_threshold\":null,"
			     "\"stage2_threshold_inf\":\"+inf\",\"d\":-0.25}") == 0, "%s", s ? s : "(null)");
	json_t *back = s ? json_loads(s, 0, NULL) : NULL;
	for (int i = 0; i < 4; i++)
		CHECK(tr_threshold_get(back, key[i]) == t[i], "%s read back as %g", key[i], tr_threshold_get(back, key[i]));
	CHECK(isnan(tr_threshold_get(back, "absent")), "an absent threshold is NAN");
	json_object_set_new(back, "old", json_string("+inf")); /* format 2's string is not a threshold */
	CHECK(isnan(tr_threshold_get(back, "old")), "a string threshold is NAN");
	free(s);
	json_decref(back);
	json_decref(o);
}

int main(void)
{
	tr_gsl_init();
	test_threshold_json();
	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp");
		return unit_done();
	}
	snprintf(paper, sizeof paper, "%s/PAPER.md", dir);
	test_c1();
	test_c2();
	test_c3();
	test_c4();
	test_c5();
	test_splice();
	test_tables();
	test_tsv();
	tr_remove_tree(dir);
	return unit_done();
}
