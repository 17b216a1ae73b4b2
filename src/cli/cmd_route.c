/*
 * cmd_route.c - `tracer route DIR < inputs.jsonl > decisions.jsonl`: one decision per input line, on a
 * stream (inputs are read and answered in batches of ROUTE_BATCH lines; memory grows only with the ids
 * seen, kept to refuse a duplicate as trace files do).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../drift/drift.h"
#include "cli.h"

#define ROUTE_BATCH 256

const char cmd_route_usage[] =
	"usage: tracer route DIR [--fallback-field NAME] [--audit-rate R] [--audit-seed S]\n"
	"           < inputs.jsonl > decisions.jsonl\n"
	"  Each input line is a JSON object with the text under \"input\" (or query, text, prompt, question),\n"
	"  \"input_b\" for pairs, an optional \"id\", and \"embedding\" (a list of numbers) for policies fitted on\n"
	"  embeddings. Each output line: {\"id\", \"label\" (null when deferred), \"decision\": handled|deferred,\n"
	"  \"score\", \"stage\", \"ood\"}. With --fallback-field NAME a deferred row takes its label from that input\n"
	"  field (the teacher's answer, for offline replay) and \"source\" says which answered. Lines follow the\n"
	"  rules of trace files (a byte order mark, CRLF and blank lines are fine; a duplicated key or id is an\n"
	"  error naming stdin:LINE).\n"
	"  Drift guard: when the policy's monitor (DIR.monitor, see `tracer monitor`) has closed the gate, every\n"
	"  input is deferred and lines carry \"gate\": \"closed\". With a monitor, or --audit-rate R, handled lines\n"
	"  carry \"audit\": true for the inputs to send to the teacher as well (a hash of the id under the\n"
	"  monitor's audit seed, or --audit-seed S); feed the teacher's answers to `tracer monitor DIR`.\n";

struct batch {
	struct tr_trace rows[ROUTE_BATCH];
	size_t idx[ROUTE_BATCH];
	json_t *fallback[ROUTE_BATCH];
	double *emb;
	size_t n;
	int dim;
};

static void batch_clear(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		tr_free(b->rows[i].id), tr_free(b->rows[i].input), tr_free(b->rows[i].input_b);
		tr_free(b->rows[i].group);
		json_decref(b->fallback[i]);
	}
	memset(b->rows, 0, sizeof b->rows);
	b->n = 0;
}

/*
 * Reads one line of stdin into the batch through the trace reader every command uses (same BOM,
 * duplicate-key and duplicate-id rules, errors naming stdin:LINE); then the route-only fields.
 */
static int parse(struct tr_trace_reader *rd, const struct tr_policy *p, const char *field, const char *s,
		 size_t len, struct batch *b, struct tr_err *e)
{
	struct tr_trace_line l;
	int got;
	if (tr_trace_reader_line(rd, s, len, &l, &got, e))
		return -1;
	if (!got)
		return 0;
	size_t lineno = tr_trace_reader_lines(rd);
	const char *bad = p->fz && tr_featurizer_kind(p->fz) == TR_FEAT_NPY
				  ? tr_trace_line_embedding(&l, b->dim, b->emb + b->n * (size_t)b->dim)
				  : NULL;
	if (bad) {
		tr_trace_line_free(&l);
		return tr_fail(e, "stdin:%zu: %s", lineno, bad);
	}
	b->rows[b->n] = l.t;
	b->fallback[b->n] = field ? json_incref(json_object_get(l.json, field)) : NULL;
	b->idx[b->n] = b->n;
	b->n++;
	memset(&l.t, 0, sizeof l.t);
	tr_trace_line_free(&l);
	return 0;
}

/* The drift guard's view of routing: a closed gate, and which handled inputs are audited. */
struct guard {
	int closed, audits;
	double rate;
	uint64_t seed;
};

static int flush(const struct tr_policy *p, const char *field, const struct guard *g, struct batch *b,
		 struct tr_err *e)
{
	struct tr_decision d[ROUTE_BATCH];
	if (tr_policy_route(p, b->rows, b->idx, b->n, b->emb, b->n, b->dim, d, e))
		return -1;
	for (size_t i = 0; g->closed && i < b->n; i++)
		d[i].handled = 0, d[i].label = -1, d[i].stage = 0;
	for (size_t i = 0; i < b->n; i++) {
		json_t *o = json_pack("{s:s}", "id", b->rows[i].id);
		json_t *label = d[i].handled ? json_string(p->labels.names[d[i].label]) : json_null();
		if (field && !d[i].handled && b->fallback[i])
			label = json_incref(b->fallback[i]);
		json_object_set_new(o, "label", label);
		json_object_set_new(o, "decision", json_string(d[i].handled ? "handled" : "deferred"));
		json_object_set_new(o, "score", isfinite(d[i].score) ? json_real(d[i].score) : json_null());
		json_object_set_new(o, "stage", d[i].handled ? json_integer(d[i].stage) : json_null());
		json_object_set_new(o, "ood", json_boolean(d[i].ood));
		if (g->closed)
			json_object_set_new(o, "gate", json_string("closed"));
		if (g->audits)
			json_object_set_new(o, "audit", json_boolean(d[i].handled && tr_audit_pick(b->rows[i].id, g->seed, g->rate)));
		if (field)
			json_object_set_new(o, "source", json_string(d[i].handled ? "surrogate" : "teacher"));
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
		json_decref(o);
		if (!s)
			return tr_fail(e, "out of memory");
		puts(s);
		free(s);
	}
	batch_clear(b);
	return ferror(stdout) ? tr_fail(e, "stdout: write failed") : 0;
}

int cmd_route(int argc, char **argv)
{
	const char *dir = NULL, *field = NULL;
	struct guard g = {0};
	unsigned long long seed = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fallback-field") == 0 && i + 1 < argc)
			field = argv[++i];
		else if (strcmp(argv[i], "--audit-rate") == 0 && i + 1 < argc) {
			if (tr_cli_number(argv[++i], 0, 1.0000001, &g.rate))
				return tr_cli_usage_error("route", "bad audit rate \"%s\"", argv[i]);
			g.audits = 1;
		} else if (strcmp(argv[i], "--audit-seed") == 0 && i + 1 < argc) {
			if (tr_cli_count(argv[++i], &seed))
				return tr_cli_usage_error("route", "bad audit seed \"%s\"", argv[i]);
		}
		else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
		else
			return tr_cli_usage_error("route", "unexpected argument \"%s\"", argv[i]);
	}
	if (!dir)
		return tr_cli_usage_error("route", "expected a policy directory");
	struct tr_err e;
	struct tr_policy *p;
	if (tr_policy_load(dir, &p, &e))
		return tr_cli_data_error(&e);
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
	struct batch *b = tr_calloc(1, sizeof *b);
	int dense = p->fz && tr_featurizer_kind(p->fz) == TR_FEAT_NPY;
	if (b && dense) {
		b->dim = tr_featurizer_dim(p->fz);
		b->emb = tr_malloc(ROUTE_BATCH * (size_t)b->dim * sizeof *b->emb);
	}
	struct tr_trace_reader *rd = tr_trace_reader_new("stdin", TR_LINE_KEEP_JSON);
	int rc = !b || (dense && !b->emb) || !rd ? tr_fail(&e, "out of memory") : 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	while (!rc && (len = getline(&line, &cap, stdin)) >= 0) {
		rc = parse(rd, p, field, line, (size_t)len, b, &e);
		if (!rc && b->n == ROUTE_BATCH)
			rc = flush(p, field, &g, b, &e);
	}
	if (!rc && b->n)
		rc = flush(p, field, &g, b, &e);
	free(line);
	tr_trace_reader_free(rd);
	if (b) {
		batch_clear(b);
		tr_free(b->emb);
		tr_free(b);
	}
	tr_policy_free(p);
	return rc ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
