/* Unit tests of src/data: CSV, JSONL traces, label spaces, manifest, group-aware splits. */
#include <stdlib.h>

#include "../../src/data/data.h"
#include "unit.h"

static void test_csv(void)
{
	const char *text = "\xEF\xBB\xBFh1,h2\r\n"
			   "plain,\"quoted, with comma\"\r\n"
			   "\"multi\nline\nfield\",\"say \"\"hi\"\"\"\n"
			   "last,row";
	struct tr_csv c;
	struct tr_err e;
	CHECK(tr_csv_parse("t.csv", text, strlen(text), &c, &e) == 0, "%s", e.msg);
	CHECK(c.n == 4, "rows %zu", c.n);
	if (c.n == 4) {
		CHECK(strcmp(c.rows[0].f[0], "h1") == 0, "BOM stripped: %s", c.rows[0].f[0]);
		CHECK(strcmp(c.rows[1].f[1], "quoted, with comma") == 0, "%s", c.rows[1].f[1]);
		CHECK(strcmp(c.rows[2].f[0], "multi\nline\nfield") == 0, "embedded newlines");
		CHECK(strcmp(c.rows[2].f[1], "say \"hi\"") == 0, "doubled quotes: %s", c.rows[2].f[1]);
		CHECK(c.rows[2].line == 3 && c.rows[3].line == 6, "record lines %zu %zu", c.rows[2].line,
		      c.rows[3].line);
		CHECK(c.rows[3].nf == 2 && strcmp(c.rows[3].f[1], "row") == 0, "last row without newline");
	}
	tr_csv_free(&c);
	const char *bad = "a,b\nok,1\nbad\"quote,2\n";
	CHECK(tr_csv_parse("bad.csv", bad, strlen(bad), &c, &e) == -1, "stray quote rejected");
	CHECK_ERR(e, "bad.csv:3: malformed CSV");
	const char *latin1 = "a,b\ncaf\xe9,1\n";
	CHECK(tr_csv_parse("l1.csv", latin1, strlen(latin1), &c, &e) == -1, "invalid UTF-8 rejected");
	CHECK_ERR(e, "l1.csv:2: invalid UTF-8");
	const char *open = "a,b\n\"never closed,1\n";
	CHECK(tr_csv_parse("open.csv", open, strlen(open), &c, &e) == -1, "unterminated quote rejected");
	CHECK_ERR(e, "open.csv:");
}

static void test_labels(void)
{
	const char *names[] = {"b", "a", "c", "a"};
	struct tr_labels l;
	struct tr_err e;
	CHECK(tr_labels_build(&l, names, 4, &e) == 0 && l.n == 3, "dedup");
	CHECK(tr_labels_find(&l, "a") == 0 && tr_labels_find(&l, "c") == 2 && tr_labels_find(&l, "z") == -1,
	      "find");
	tr_labels_free(&l);
}

static int load(const char *text, struct tr_traceset *ts, struct tr_err *e)
{
	return tr_traces_read_jsonl("t.jsonl", text, strlen(text), ts, e);
}

static void test_jsonl(void)
{
	struct tr_traceset ts;
	struct tr_err e;
	const char *ok = "\xEF\xBB\xBF{\"input\":\"hi\",\"teacher\":\"greet\"}\r\n"
			 "\n"
			 "{\"query\":\"bye\",\"label\":\"leave\",\"id\":7,\"ground_truth\":\"leave\"}\r\n"
			 "  {\"text\":\"yo\",\"intent\":\"greet\",\"metadata\":{\"k\":1}}\n"
			 "{\"prompt\":\"p\",\"output\":3}\n"
			 "{\"question\":\"q\",\"answer\":\"x\",\"input_b\":\"h\",\"group\":\"g1\"}\n"
			 "{\"input\":\"t\",\"teacher_output\":\"greet\",\"ground_truth\":null}";
	CHECK(load(ok, &ts, &e) == 0, "%s", e.msg);
	CHECK(ts.part[TR_PART_TRACES].n == 6, "rows %zu", ts.part[TR_PART_TRACES].n);
	CHECK(ts.labels.n == 4, "labels greet, leave, 3, x: %d", ts.labels.n);
	if (ts.part[TR_PART_TRACES].n == 6) {
		struct tr_trace *v = ts.part[TR_PART_TRACES].v;
		CHECK(strcmp(v[0].id, "line:1") == 0 && strcmp(v[1].id, "7") == 0, "ids %s %s", v[0].id, v[1].id);
		CHECK(v[1].gold == v[1].teacher && v[0].gold == -1, "ground truth");
		CHECK(strcmp(ts.labels.names[v[3].teacher], "3") == 0, "integer label");
		CHECK(v[4].input_b && strcmp(tr_trace_group(&v[4]), "g1") == 0 && ts.pairs, "pair and group");
		CHECK(strcmp(tr_trace_group(&v[0]), "hi") == 0, "default group is the input");
	}
	/* export -> re-read gives the same traces */
	struct tr_buf b = {0};
	CHECK(tr_traces_write_jsonl(&ts, TR_PART_TRACES, &b, &e) == 0, "%s", e.msg);
	struct tr_traceset back;
	CHECK(load(b.data, &back, &e) == 0, "%s", e.msg);
	int same = back.part[TR_PART_TRACES].n == ts.part[TR_PART_TRACES].n && back.labels.n == ts.labels.n;
	for (size_t i = 0; same && i < ts.part[TR_PART_TRACES].n; i++) {
		struct tr_trace *x = &ts.part[TR_PART_TRACES].v[i], *y = &back.part[TR_PART_TRACES].v[i];
		same = strcmp(x->id, y->id) == 0 && strcmp(x->input, y->input) == 0 && x->teacher == y->teacher &&
		       x->gold == y->gold && !x->input_b == !y->input_b &&
		       strcmp(tr_trace_group(x), tr_trace_group(y)) == 0;
	}
	CHECK(same, "round trip");
	tr_traceset_free(&back);
	tr_buf_free(&b);
	tr_traceset_free(&ts);

	static const struct {
		const char *text, *err;
	} bad[] = {
		{"{\"input\":\"a\",\"teacher\":\"x\"}\n{\"input\":\"b\",", "t.jsonl:2: malformed JSON"},
		{"{\"teacher\":\"x\"}", "t.jsonl:1: missing input"},
		{"{\"input\":\"a\"}", "t.jsonl:1: missing teacher label"},
		{"\n\n{\"input\":\"a\",\"teacher\":null}", "t.jsonl:3: \"teacher\" is null"},
		{"{\"input\":\"a\",\"label\":\"\"}", "t.jsonl:1: \"label\" is empty"},
		{"{\"input\":5,\"teacher\":\"x\"}", "t.jsonl:1: \"input\" is not a string"},
		{"{\"input\":\"a\",\"teacher\":[1]}", "t.jsonl:1: \"teacher\" is not a string or an integer"},
		{"[1,2]", "t.jsonl:1: expected a JSON object"},
		{"", "t.jsonl:1: no traces"},
		{"\n  \n", "t.jsonl:2: no traces"},
		{"{\"input\":\"a\",\"teacher\":\"x\",\"teacher\":\"y\"}", "t.jsonl:1: malformed JSON"},
		{"{\"input\":\"\xff\",\"teacher\":\"x\"}", "t.jsonl:1: malformed JSON"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(load(bad[i].text, &ts, &e) == -1, "case %zu accepted", i);
		CHECK_ERR(e, bad[i].err);
	}
}

static void test_manifest(void)
{
	struct tr_manifest m;
	struct tr_err e;
	char ok[512];
	snprintf(ok, sizeof ok, "# comment\n\na/b.csv\t%064d\t12\tCC BY 4.0\thttps://x/y\n", 0);
	CHECK(tr_manifest_parse("m.tsv", ok, &m, &e) == 0 && m.n == 1 && m.v[0].rows == 12, "%s", e.msg);
	CHECK(tr_manifest_find(&m, "a/b.csv") && !tr_manifest_find(&m, "nope"), "find");
	tr_manifest_free(&m);
	CHECK(tr_manifest_parse("m.tsv", "# x\na\tb\n", &m, &e) == -1, "short line");
	CHECK_ERR(e, "m.tsv:2: expected 5 tab-separated fields");
	CHECK(tr_manifest_parse("m.tsv", "a\tnothex\t1\tl\tu\n", &m, &e) == -1, "bad sum");
	CHECK_ERR(e, "m.tsv:1: bad sha256");
}

static void test_split(void)
{
	enum { N = 3000 };
	static int strat[N], part[N], part2[N], part3[N];
	static char keys[N][16];
	static const char *group[N];
	for (int i = 0; i < N; i++) {
		strat[i] = i % 5;
		snprintf(keys[i], sizeof keys[i], "g%d", i / 3); /* groups of 3 rows, across strata */
		group[i] = keys[i];
	}
	static const double frac[3] = {0.6, 0.2, 0.2};
	struct tr_err e;
	CHECK(tr_split_grouped(N, strat, group, frac, 3, 7, 0, part, &e) == 0, "%s", e.msg);
	int cnt[3] = {0}, straddle = 0;
	for (int i = 0; i < N; i++) {
		cnt[part[i]]++;
		if (i % 3 && part[i] != part[i - 1])
			straddle++;
	}
	CHECK(straddle == 0, "%d groups straddle the split", straddle);
	CHECK(abs(cnt[0] - 1800) < 60 && abs(cnt[1] - 600) < 60 && abs(cnt[2] - 600) < 60, "sizes %d %d %d",
	      cnt[0], cnt[1], cnt[2]);
	tr_split_grouped(N, strat, group, frac, 3, 7, 0, part2, &e);
	tr_split_grouped(N, strat, group, frac, 3, 8, 0, part3, &e);
	CHECK(memcmp(part, part2, sizeof part) == 0, "same seed, same split");
	CHECK(memcmp(part, part3, sizeof part) != 0, "another seed, another split");
	/* a single-row stratum goes to the first part */
	int s1[1] = {0}, p1[1] = {-1};
	const char *g1[1] = {"only"};
	CHECK(tr_split_grouped(1, s1, g1, frac, 3, 1, 0, p1, &e) == 0 && p1[0] == 0, "one row -> first part");
	/* the tiny-class rule of the gate's train / validation / calibration split */
	int s6[6] = {0, 1, 1, 2, 2, 2}, p6[6];
	const char *g6[6] = {"a", "b", "c", "d", "e", "f"};
	CHECK(tr_split_grouped(6, s6, g6, frac, 3, 9, 1, p6, &e) == 0, "%s", e.msg);
	CHECK(p6[0] == 0, "1 row -> train");
	CHECK((p6[1] == 0 && p6[2] == 2) || (p6[1] == 2 && p6[2] == 0), "2 rows -> train + calibration");
	CHECK(p6[3] + p6[4] + p6[5] == 3 && p6[3] != p6[4] && p6[4] != p6[5] && p6[3] != p6[5],
	      "3 rows -> one each");
	/* two rows sharing a group key count as one group */
	const char *g2[3] = {"same", "same", "other"};
	int s2[3] = {0, 0, 0}, p2[3];
	CHECK(tr_split_grouped(3, s2, g2, frac, 3, 9, 1, p2, &e) == 0 && p2[0] == p2[1], "group kept whole");
}

/* tr_split_rows: tr_split_traces's parts, dealt in row order; b NULL drops part 1; failures leave arrays
 * the caller frees. */
static void test_split_rows(void)
{
	enum { N = 600 };
	static struct tr_trace rows[N];
	static char text[N][16];
	static int part[N];
	for (int i = 0; i < N; i++) {
		snprintf(text[i], sizeof text[i], "q%d", i / 2); /* pairs of rows share an input: one group */
		rows[i] = (struct tr_trace){.input = text[i], .teacher = i % 4, .gold = -1};
	}
	const double frac[2] = {0.75, 0.25};
	struct tr_err e;
	struct tr_rows a = {0}, b = {0}, c = {0};
	CHECK(tr_split_traces(rows, NULL, N, frac, 2, 11, 0, part, &e) == 0, "%s", e.msg);
	CHECK(tr_split_rows(rows, N, frac, 11, &a, &b, &e) == 0, "%s", e.msg);
	size_t ia = 0, ib = 0, bad = 0;
	for (int i = 0; i < N; i++) {
		struct tr_rows *to = part[i] ? &b : &a;
		size_t *k = part[i] ? &ib : &ia;
		bad += *k >= to->n || to->v[*k].input != rows[i].input; /* the same row, in order, shallow */
		++*k;
	}
	CHECK(bad == 0 && ia == a.n && ib == b.n, "%zu rows misplaced (a %zu of %zu, b %zu of %zu)", bad, ia, a.n, ib,
	      b.n);
	CHECK(a.n > 400 && a.n < 500 && a.n + b.n == N, "shares %zu / %zu", a.n, b.n);
	CHECK(tr_split_rows(rows, N, frac, 11, &c, NULL, &e) == 0 && c.n == a.n &&
		      memcmp(c.v, a.v, a.n * sizeof *a.v) == 0,
	      "b NULL: the same part 0, part 1 dropped");
	tr_free(a.v), tr_free(b.v), tr_free(c.v);
	const double neg[2] = {-1, 1};
	CHECK(tr_split_rows(rows, N, neg, 11, &a, &b, &e) == -1, "a bad fraction fails");
	CHECK_ERR(e, "split: bad fraction -1");
	tr_free(a.v), tr_free(b.v);
}

/* Every allocation failure while reading traces ends in a clean error. */
static void test_alloc_failures(void)
{
	const char *text = "{\"input\":\"a\",\"teacher\":\"x\",\"ground_truth\":\"y\"}\n"
			   "{\"input\":\"b\",\"input_b\":\"c\",\"teacher\":\"y\",\"id\":\"k\"}\n";
	int clean = 1;
	unsigned long n;
	for (n = 1; n < 500; n++) {
		struct tr_traceset ts;
		struct tr_err e = {{0}};
		tr_alloc_fail_at(n);
		int rc = load(text, &ts, &e);
		unsigned long made = tr_alloc_count();
		tr_alloc_fail_at(0);
		if (rc == 0) {
			tr_traceset_free(&ts);
			if (made < n)
				break; /* the Nth allocation never happened: every failure point was tried */
			clean = 0;
		} else if (!strstr(e.msg, "out of memory")) {
			clean = 0;
		}
	}
	CHECK(clean && n > 5 && n < 500, "allocation failure %lu gave no clean error", n);
}

int main(void)
{
	test_csv();
	test_labels();
	test_jsonl();
	test_manifest();
	test_split();
	test_split_rows();
	test_alloc_failures();
	return unit_done();
}
