/*
 * cmd_traces.c - `tracer traces export`: a trace set as reference trace JSONL.
 */
#include <string.h>

#include "../exp/exp.h"
#include "cli.h"

const char cmd_traces_usage[] =
	"usage: tracer traces export DATASET:TEACHER|traces.jsonl [--part traces|test|extra] [--pooled SEED]\n"
	"           [--out FILE]\n"
	"  writes {\"id\",\"input\",\"teacher\",\"ground_truth\"} lines (plus \"input_b\" for pairs);\n"
	"  FILE is written atomically (default: stdout). The extra part holds CLINC150's oos items.\n"
	"  --pooled SEED: the traces and test parts pooled and split 70/30 as the sweeps' pooled protocol does\n"
	"  with that seed (--part traces or test).\n";

int cmd_traces(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "export") != 0)
		return tr_cli_usage_error("traces", "expected `traces export SET`");
	const char *set = NULL, *out = NULL;
	int part = TR_PART_TRACES, pooled = 0;
	unsigned long long seed = 0;
	struct tr_args a = {.verb = "traces", .spec = "--part= --pooled= --out=", .pos = (const char **[]){&set}, .n_pos = 1};
	int k;
	while ((k = tr_args_next(&a, argc - 1, argv + 1)) == TR_ARG_OPT) {
		if (tr_args_is(&a, "--part")) {
			if ((part = tr_part_parse(a.val)) < 0)
				return tr_cli_usage_error("traces", "unknown part \"%s\"", a.val);
		} else if (tr_args_is(&a, "--pooled")) {
			if (tr_cli_count(a.val, &seed))
				return tr_cli_usage_error("traces", "bad seed \"%s\"", a.val);
			pooled = 1;
		} else if (tr_args_is(&a, "--out"))
			out = a.val;
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!set)
		return tr_cli_usage_error("traces", "expected `traces export SET`");
	struct tr_traceset ts;
	struct tr_err e;
	if (tr_traceset_open(set, &ts, &e))
		return tr_cli_data_error(&e);
	struct tr_buf b = {0};
	struct tr_traceset view = ts;
	struct tr_rows tr = {0}, te = {0};
	int rc = pooled && part == TR_PART_EXTRA ? tr_fail(&e, "--pooled: the extra part is not pooled") : 0;
	if (!rc && pooled && !(rc = tr_pool_split(&ts, seed, &tr, &te, &e))) {
		memset(view.part, 0, sizeof view.part);
		view.part[TR_PART_TRACES] = tr, view.part[TR_PART_TEST] = te;
	}
	rc = rc || tr_traces_write_jsonl(&view, part, &b, &e) || tr_cli_output(out, b.data ? b.data : "", b.len, &e);
	tr_free(tr.v), tr_free(te.v);
	tr_buf_free(&b);
	tr_traceset_free(&ts);
	return rc ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
