/*
 * cmd_route.c - `tracer route DIR < inputs.jsonl > decisions.jsonl`: one decision line out per input line
 * in, streamed: each line (or each batch of --batch N lines) is answered and flushed before the next is
 * read, so a caller can hold a pipe open and wait for each answer. A bad line yields an error record in
 * its place and routing goes on (--on-error stop: the first bad line ends the run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "route_io.h"

#define ROUTE_BATCH_MAX 65536

const char cmd_route_usage[] =
	"usage: tracer route DIR [--batch N] [--on-error continue|stop] [--fallback-field NAME] [--audit-rate R]\n"
	"           [--audit-seed S] < inputs.jsonl > decisions.jsonl\n"
	"  Each input line is a JSON object with the text under \"input\" (or query, text, prompt, question),\n"
	"  \"input_b\" for pairs, an optional \"id\", and \"embedding\" (a list of numbers) for policies fitted on\n"
	"  embeddings. Each output line: {\"id\", \"label\" (null when deferred), \"decision\": handled|deferred,\n"
	"  \"score\", \"stage\", \"ood\"}, in input order. Output is flushed after every line (with --batch N,\n"
	"  after every N lines and at the end: fewer writes, same lines). A bad line gets the record\n"
	"  {\"line\": N, \"error\": \"...\"} in its place and routing goes on; the exit status is then 1 and stderr\n"
	"  counts the failures. --on-error stop ends the run at the first bad line (the decisions before it are\n"
	"  already written). With --fallback-field NAME a deferred row takes its label from that input field (the\n"
	"  teacher's answer, for offline replay) and \"source\" says which answered. Lines follow the rules of\n"
	"  trace files (a byte order mark, CRLF and blank lines are fine; a duplicated key or id is an error).\n"
	"  A line with input_b for a single-text policy (routed on input alone), or without it for a pair\n"
	"  policy, is warned about on stderr (the first line, then a count).\n"
	"  Drift guard: when the policy's monitor (DIR.monitor, see `tracer monitor`) has closed the gate, every\n"
	"  input is deferred and lines carry \"gate\": \"closed\". With a monitor, or --audit-rate R, handled lines\n"
	"  carry \"audit\": true for the inputs to send to the teacher as well (a hash of the id under the\n"
	"  monitor's audit seed, or --audit-seed S); feed the teacher's answers to `tracer monitor DIR`.\n";

struct batch {
	struct tr_route_in *in;
	size_t *idx;
	struct tr_trace *rows;
	struct tr_decision *d;
	double *emb;
	size_t n, cap;
	int dim;
};

static void batch_clear(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		tr_route_in_free(&b->in[i]);
	b->n = 0;
}

static void batch_free(struct batch *b)
{
	batch_clear(b);
	tr_free(b->in), tr_free(b->idx), tr_free(b->rows), tr_free(b->d), tr_free(b->emb);
}

static int batch_init(struct batch *b, const struct tr_policy *p, size_t cap)
{
	memset(b, 0, sizeof *b);
	b->cap = cap;
	b->dim = p->fz && tr_featurizer_kind(p->fz) == TR_FEAT_NPY ? tr_featurizer_dim(p->fz) : 0;
	b->in = tr_calloc(cap, sizeof *b->in);
	b->idx = tr_calloc(cap, sizeof *b->idx);
	b->rows = tr_calloc(cap, sizeof *b->rows);
	b->d = tr_calloc(cap, sizeof *b->d);
	b->emb = b->dim ? tr_malloc(cap * (size_t)b->dim * sizeof *b->emb) : NULL;
	return b->in && b->idx && b->rows && b->d && (!b->dim || b->emb) ? 0 : -1;
}

static int put_line(json_t *o, struct tr_err *e)
{
	char *s = tr_route_dumps(o);
	json_decref(o);
	if (!s)
		return tr_fail(e, "out of memory");
	int bad = puts(s) < 0;
	free(s);
	return bad ? tr_fail(e, "stdout: write failed") : 0;
}

/* Routes the pending lines, writes their decisions in order and flushes stdout. */
static int flush(const struct tr_policy *p, const char *field, const struct tr_guard *g, struct batch *b,
		 struct tr_err *e)
{
	for (size_t i = 0; i < b->n; i++)
		b->rows[i] = b->in[i].t, b->idx[i] = i;
	int rc = b->n ? tr_policy_route(p, b->rows, b->idx, b->n, b->emb, b->n, b->dim, b->d, e) : 0;
	if (!rc)
		tr_guard_apply(g, b->d, b->n);
	for (size_t i = 0; !rc && i < b->n; i++) {
		json_t *o = tr_route_decision_json(p, &b->in[i], &b->d[i], g, field);
		rc = o ? put_line(o, e) : tr_fail(e, "out of memory");
	}
	batch_clear(b);
	if (!rc && fflush(stdout) != 0)
		rc = tr_fail(e, "stdout: write failed");
	return rc;
}

int cmd_route(int argc, char **argv)
{
	const char *dir = NULL, *field = NULL;
	struct tr_guard g = {0};
	unsigned long long seed = 0, batch = 1;
	int stop = 0;
	struct tr_args a = {.verb = "route",
			    .spec = "--fallback-field= --audit-rate= --audit-seed= --batch= --on-error=",
			    .pos = (const char **[]){&dir},
			    .n_pos = 1};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		const char *v = a.val;
		if (tr_args_is(&a, "--fallback-field"))
			field = v;
		else if (tr_args_is(&a, "--audit-rate")) {
			if (tr_cli_number(v, 0, 1.0000001, &g.rate))
				return tr_cli_usage_error("route", "bad audit rate \"%s\"", v);
			g.audits = 1;
		} else if (tr_args_is(&a, "--audit-seed")) {
			if (tr_cli_count(v, &seed))
				return tr_cli_usage_error("route", "bad audit seed \"%s\"", v);
		} else if (tr_args_is(&a, "--batch")) {
			if (tr_cli_count(v, &batch) || batch < 1 || batch > ROUTE_BATCH_MAX)
				return tr_cli_usage_error("route", "bad batch size \"%s\" (1 to %d)", v, ROUTE_BATCH_MAX);
		} else if (tr_args_is(&a, "--on-error")) {
			if (strcmp(v, "stop") != 0 && strcmp(v, "continue") != 0)
				return tr_cli_usage_error("route", "bad --on-error \"%s\" (continue or stop)", v);
			stop = strcmp(v, "stop") == 0;
		}
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!dir)
		return tr_cli_usage_error("route", "expected a policy directory");
	struct tr_err e;
	struct tr_policy *p;
	if (tr_cli_policy_load(dir, &p, &e))
		return tr_cli_data_error(&e);
	int pairs = p->pairs;
	struct tr_monitor mon;
	int have_mon = tr_monitor_open(dir, &mon, NULL, &e);
	if (have_mon < 0) {
		tr_policy_free(p);
		return tr_cli_data_error(&e);
	}
	g.seed = seed;
	if (have_mon) {
		g.closed = mon.closed;
		g.audits = 1;
		if (!(g.rate > 0))
			g.rate = mon.audit_rate;
		g.seed = mon.audit_seed;
	}
	tr_cli_steady_heap();
	struct batch b;
	int rc = batch_init(&b, p, (size_t)batch) ? tr_fail(&e, "out of memory") : 0;
	char *line = NULL, first[sizeof e.msg] = "";
	size_t cap = 0, lineno = 0, failed = 0, mixed = 0, first_mixed = 0;
	ssize_t len;
	/* the trace reader every command uses: BOM, blank lines, duplicate keys and ids, errors naming stdin:LINE */
	struct tr_trace_reader *rd = rc ? NULL : tr_trace_reader_new("stdin", TR_LINE_KEEP_JSON);
	if (!rc && !rd)
		rc = tr_fail(&e, "out of memory");
	while (!rc && (len = getline(&line, &cap, stdin)) >= 0) {
		struct tr_err le;
		struct tr_trace_line l;
		int got;
		double *emb = b.dim ? b.emb + b.n * (size_t)b.dim : NULL;
		int bad = tr_trace_reader_line(rd, line, (size_t)len, &l, &got, &le);
		lineno = tr_trace_reader_lines(rd);
		if (!bad && !got)
			continue;
		if (!bad && tr_route_from_line(p, "stdin", lineno, &l, field, &b.in[b.n], emb, &le) == 0) {
			/* a pair given to a single-text policy is routed on its input alone: say so */
			const char *w = tr_route_pair_warning(p, &b.in[b.n]);
			if (w && !mixed++) {
				first_mixed = lineno;
				fprintf(stderr, "tracer route: warning: stdin:%zu: %s\n", lineno, w);
			}
			if (++b.n == b.cap)
				rc = flush(p, field, &g, &b, &e);
			continue;
		}
		if (stop) {
			rc = flush(p, field, &g, &b, &e);
			if (!rc)
				e = le, rc = -1;
			break;
		}
		/* the lines before keep their order: answer them, then the error record */
		if (!failed++)
			snprintf(first, sizeof first, "%s", le.msg);
		rc = flush(p, field, &g, &b, &e);
		if (!rc)
			rc = put_line(tr_route_error_json(lineno, le.msg), &e);
		if (!rc && fflush(stdout) != 0)
			rc = tr_fail(&e, "stdout: write failed");
	}
	if (!rc)
		rc = flush(p, field, &g, &b, &e);
	free(line);
	tr_trace_reader_free(rd);
	batch_free(&b);
	tr_policy_free(p);
	if (mixed > 1)
		fprintf(stderr, "tracer route: warning: %zu lines from stdin:%zu on %s\n", mixed, first_mixed,
			pairs ? "had no input_b for a pair policy" : "carried an input_b the policy ignores");
	if (rc)
		return tr_cli_data_error(&e);
	if (failed) {
		fprintf(stderr, "tracer: %zu of the input lines failed (error records in the output; first: %s)\n", failed,
			first);
		return TR_EXIT_DATA;
	}
	return TR_EXIT_OK;
}
