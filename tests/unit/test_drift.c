/*
 * test_drift.c - the drift guard: audit sampling, the monitor's validity and power on synthetic Bernoulli
 * streams, its state file, and the replay engine.
 */
#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/drift/drift.h"
#include "../../src/report/report.h"
#include "unit.h"

/* Fraction of `streams` streams of `len` audits with agreement p that close the gate. */
static double reject_rate(enum tr_mon_method method, double alpha, double p, int streams, int len, uint64_t seed)
{
	gsl_rng *r = tr_rng_new(seed);
	int rej = 0;
	struct tr_monitor *m = malloc(sizeof *m);
	for (int s = 0; s < streams; s++) {
		tr_monitor_init(m, method, alpha, 0.05, 1, 0);
		for (int i = 0; i < len && !m->closed; i++)
			tr_monitor_observe(m, gsl_rng_uniform(r) < p);
		rej += m->closed;
	}
	free(m);
	gsl_rng_free(r);
	return (double)rej / streams;
}

static void test_validity_and_power(void)
{
	/* at agreement = α exactly the gate may close in at most δ of the streams (Ville); allow 3 standard
	 * errors of sampling noise */
	struct {
		enum tr_mon_method m;
		int streams, len;
	} c[2] = {{TR_MON_BETTING, 2000, 400}, {TR_MON_MIXTURE, 600, 300}};
	for (int k = 0; k < 2; k++) {
		double alphas[2] = {0.90, 0.95};
		for (int a = 0; a < 2; a++) {
			double rate = reject_rate(c[k].m, alphas[a], alphas[a], c[k].streams, c[k].len, 11 + (uint64_t)a);
			double slack = 3 * sqrt(0.05 * 0.95 / c[k].streams);
			CHECK(rate <= 0.05 + slack, "%s at α=%.2f: null rejection rate %.4f > δ + %.4f",
			      tr_mon_method_names[c[k].m], alphas[a], rate, slack);
			/* a clear drift (agreement 10 points below α) is caught within the same budget */
			double power = reject_rate(c[k].m, alphas[a], alphas[a] - 0.10, c[k].streams / 4, c[k].len, 21 + (uint64_t)a);
			CHECK(power >= 0.90, "%s at α=%.2f: power at α-0.10 is only %.3f", tr_mon_method_names[c[k].m],
			      alphas[a], power);
		}
	}
	/* agreement above α: even fewer closings */
	CHECK(reject_rate(TR_MON_BETTING, 0.9, 0.93, 1000, 400, 5) <= 0.02, "closings above α");
}

static void test_audit_pick(void)
{
	char id[32];
	int n = 0, same = 1, other = 0;
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof id, "row-%d", i);
		int a = tr_audit_pick(id, 7, 0.05);
		n += a;
		same &= a == tr_audit_pick(id, 7, 0.05);
		other += a != tr_audit_pick(id, 8, 0.05);
	}
	CHECK(fabs(n / 20000.0 - 0.05) < 0.006, "audit rate %.4f", n / 20000.0);
	CHECK(same, "audit pick not deterministic");
	CHECK(other > 500, "another seed audits other inputs (%d differ)", other);
	CHECK(!tr_audit_pick("x", 1, 0) && tr_audit_pick("x", 1, 1), "rates 0 and 1");
}

static void test_state_file(void)
{
	struct tr_monitor m, back;
	struct tr_err e;
	tr_monitor_init(&m, TR_MON_BETTING, 0.95, 0.05, 0.02, 42);
	memset(m.policy_sha, 'a', 64);
	gsl_rng *r = tr_rng_new(3);
	for (int i = 0; i < 2000 && !m.closed; i++) {
		tr_monitor_count(&m, 1);
		if (i % 4 == 0)
			tr_monitor_observe(&m, gsl_rng_uniform(r) < (i < 800 ? 0.97 : 0.75));
	}
	gsl_rng_free(r);
	CHECK(m.closed && m.closing.audits > 0 && m.n_hist > 0, "drift closes the gate and is recorded");
	struct tr_buf a = {0}, b = {0};
	tr_monitor_format(&m, &a);
	CHECK(tr_monitor_parse("s", a.data, &back, &e) == 0, "parse: %s", e.msg);
	tr_monitor_format(&back, &b);
	CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "state round trip is byte-identical");
	CHECK(back.closed && back.closing.inputs == m.closing.inputs && back.stat == m.stat, "fields kept");
	/* every truncation is rejected, never half-read */
	int torn_ok = 1;
	for (size_t cut = 0; cut < a.len; cut += 7) {
		char *t = malloc(cut + 1);
		memcpy(t, a.data, cut);
		t[cut] = 0;
		torn_ok &= tr_monitor_parse("s", t, &back, &e) == -1 && strstr(e.msg, "s:") == e.msg;
		free(t);
	}
	CHECK(torn_ok, "a truncated state file is an error naming the file");
	char *t = strdup(a.data);
	char *p = strstr(t, "\nalpha ");
	p[7] = '7';
	CHECK(tr_monitor_parse("s", t, &back, &e) == -1, "alpha 7... rejected");
	CHECK_ERR(e, "s:4: bad value");
	free(t);
	tr_buf_free(&a), tr_buf_free(&b);
	char path[64];
	tr_monitor_path("dir/policy//", path, sizeof path);
	CHECK(strcmp(path, "dir/policy.monitor") == 0, "state path %s", path);
}

static void test_replay_stream(void)
{
	enum { N = 6000, SW = 2000 };
	struct tr_stream_item *it = calloc(N, sizeof *it);
	char (*ids)[16] = calloc(N, 16);
	gsl_rng *r = tr_rng_new(9);
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], 16, "i%d", i);
		it[i] = (struct tr_stream_item){.id = ids[i], .handled = gsl_rng_uniform(r) < 0.8, .phase = i >= SW};
		it[i].agree = gsl_rng_uniform(r) < (i < SW ? 0.98 : 0.7);
	}
	gsl_rng_free(r);
	struct tr_replay_opts o = {.method = TR_MON_BETTING, .alpha = 0.9, .delta = 0.05, .audit_rate = 0.05,
				   .audit_seed = 1, .every = 500, .window = 100};
	struct tr_monitor m;
	tr_monitor_init(&m, o.method, o.alpha, o.delta, o.audit_rate, o.audit_seed);
	struct tr_buf tl = {0};
	struct tr_replay_summary s;
	struct tr_err e;
	CHECK(tr_replay_stream(it, N, SW, &o, &m, &tl, &s, &e) == 0, "replay: %s", e.msg);
	CHECK(s.detected && s.delay > 0 && s.delay < 2000, "drift 0.98 -> 0.70 detected after the change (delay %ld)", s.delay);
	CHECK(s.teacher_calls == N - s.handled + s.audits, "teacher calls = deferred + audits");
	CHECK(s.handled < (size_t)(0.8 * N), "the closed gate defers everything after detection");
	CHECK(tl.data && strstr(tl.data, "\"closed\":true") && strstr(tl.data, "{\"t\":500,"), "timeline lines");
	tr_buf_free(&tl);
	free(it), free(ids);
}

static void put_text(const char *dir, const char *name, const char *text)
{
	char path[512];
	struct tr_err e;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	tr_write_atomic(path, text, strlen(text), &e);
}

/* tracer collect's drift part: summaries -> tables/drift.tsv and the PAPER.md section. */
static void test_collect(void)
{
	char dir[] = "/tmp/test-drift-XXXXXX", sub[600], paper[600];
	struct tr_err e;
	if (!mkdtemp(dir))
		return;
	snprintf(sub, sizeof sub, "%s/drift", dir);
	tr_mkdirs(sub, &e);
	snprintf(sub, sizeof sub, "%s/tables", dir);
	tr_mkdirs(sub, &e);
	snprintf(paper, sizeof paper, "%s/PAPER.md", dir);
	put_text(dir, "PAPER.md", "# x\n<!-- BEGIN drift -->\nold\n<!-- END drift -->\nend\n");
	CHECK(tr_drift_collect(dir, paper, &e) == 0, "collect without a study: %s", e.msg);
	char *text;
	size_t len;
	tr_read_file(paper, &text, &len, &e);
	CHECK(strstr(text, "has not been run") && !strstr(text, "old"), "the section says the study was not run");
	tr_free(text);
	put_text(dir, "drift/scenarios.tsv", "scenario\tset\talpha\tpolicy_seed\tfile\nswap\tbanking77:gold\t0.95\t0\ts.jsonl\n");
	const char *line = "{\"method\":\"betting\",\"audit_rate\":0.05,\"alpha\":0.95,\"delta\":0.05,\"n\":100,"
			   "\"switch_at\":50,\"detected\":%s,\"detect_at\":%s,\"delay\":%s,\"handled\":80,\"wrong\":9,"
			   "\"wrong_after_switch\":%d,\"audits\":4,\"audit_agree\":3,\"teacher_calls\":24,\"novel\":0,"
			   "\"novel_ood\":0,\"novel_handled\":0,\"stat\":1,\"upper\":0.95,\"agreement_before\":0.97,"
			   "\"agreement_after\":0.8}\n";
	char buf[2048];
	int n = snprintf(buf, sizeof buf, line, "true", "70", "20", 4);
	n += snprintf(buf + n, sizeof buf - (size_t)n, line, "true", "90", "40", 6);
	snprintf(buf + n, sizeof buf - (size_t)n, line, "false", "null", "null", 8);
	put_text(dir, "drift/s.jsonl", buf);
	CHECK(tr_drift_collect(dir, paper, &e) == 0, "collect: %s", e.msg);
	snprintf(sub, sizeof sub, "%s/tables/drift.tsv", dir);
	tr_read_file(sub, &text, &len, &e);
	CHECK(strstr(text, "swap\tbanking77:gold\t0.95\tbetting\t0.05\t3\t2\t0.6667\t30\t40\t6.0\t"),
	      "table row: detected 2 of 3, median delay 30, max 40, wrong after the switch 6.0: %s", text);
	tr_free(text);
	tr_read_file(paper, &text, &len, &e);
	CHECK(strstr(text, "| betting | 0.05 | 2/3 | 30 | 40 | 6.0 |") != NULL, "PAPER row");
	CHECK(strstr(text, "end\n") != NULL, "prose after the section kept");
	tr_free(text);
	put_text(dir, "drift/scenarios.tsv", "scenario\tset\talpha\tpolicy_seed\tfile\nswap\tb\t0.95\t0\t../x\n");
	CHECK(tr_drift_collect(dir, paper, &e) == -1, "a path outside RESULTS/drift is refused");
	CHECK_ERR(e, "scenarios.tsv:2: bad line");
	tr_remove_tree(dir);
}

/* Failing the Nth allocation of formatting a state, replaying a stream with a timeline and writing its
 * summary: each run ends in an error or in exactly the undisturbed output, never in a partial one. */
static int faulty_run(struct tr_buf *out, struct tr_err *e)
{
	enum { N = 3000 };
	static struct tr_stream_item it[N];
	static char ids[N][16];
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], 16, "f%d", i);
		it[i] = (struct tr_stream_item){.id = ids[i], .handled = i % 5 != 0, .agree = i < 1500 ? i % 31 != 0 : i % 4 != 0};
	}
	struct tr_replay_opts o = {.method = TR_MON_BETTING, .alpha = 0.9, .delta = 0.05, .audit_rate = 0.2, .every = 100,
				   .window = 50};
	struct tr_monitor m;
	tr_monitor_init(&m, o.method, o.alpha, o.delta, o.audit_rate, 0);
	struct tr_replay_summary s;
	if (tr_replay_stream(it, N, 1500, &o, &m, out, &s, e))
		return -1;
	if (tr_replay_summary_json(&s, out) || tr_monitor_format(&m, out))
		return tr_fail(e, "out of memory");
	return 0;
}

static void test_faults(void)
{
	struct tr_buf base = {0}, b = {0};
	struct tr_err e;
	tr_alloc_fail_at(0);
	unsigned long start = tr_alloc_count();
	CHECK(faulty_run(&base, &e) == 0, "undisturbed run: %s", e.msg);
	unsigned long total = tr_alloc_count() - start;
	int clean = 1;
	for (unsigned long n = 1; n <= total && clean; n++) {
		e.msg[0] = 0;
		tr_alloc_fail_at(n);
		int rc = faulty_run(&b, &e);
		tr_alloc_fail_at(0);
		if (rc == 0 ? b.len != base.len || memcmp(b.data, base.data, b.len) != 0 : !e.msg[0])
			clean = 0;
		tr_buf_free(&b);
	}
	CHECK(total > 3 && clean, "%lu allocations each failed once: an error or the same output", total);
	tr_buf_free(&base);
}

int main(void)
{
	tr_gsl_init();
	test_audit_pick();
	test_state_file();
	test_replay_stream();
	test_collect();
	test_faults();
	test_validity_and_power();
	return unit_done();
}
