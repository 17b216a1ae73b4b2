/*
 * cmd_traces.c - `tracer traces export`: a trace set as reference trace JSONL.
 */
#include <string.h>

#include "../data/data.h"
#include "cli.h"

const char cmd_traces_usage[] =
	"usage: tracer traces export DATASET:TEACHER|traces.jsonl [--part traces|test|extra] [--out FILE]\n"
	"  writes {\"id\",\"input\",\"teacher\",\"ground_truth\"} lines (plus \"input_b\" for pairs);\n"
	"  FILE is written atomically (default: stdout). The extra part holds CLINC150's oos items.\n";

int cmd_traces(int argc, char **argv)
{
	if (argc < 3 || strcmp(argv[1], "export") != 0)
		return tr_cli_usage_error("traces", "expected `traces export SET`");
	const char *set = argv[2], *out = NULL;
	int part = TR_PART_TRACES;
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--part") == 0 && i + 1 < argc) {
			if ((part = tr_part_parse(argv[++i])) < 0)
				return tr_cli_usage_error("traces", "unknown part \"%s\"", argv[i]);
		} else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			out = argv[++i];
		} else {
			return tr_cli_usage_error("traces", "unexpected argument \"%s\"", argv[i]);
		}
	}
	struct tr_traceset ts;
	struct tr_err e;
	if (tr_traceset_open(set, &ts, &e))
		return tr_cli_data_error(&e);
	struct tr_buf b = {0};
	int rc = tr_traces_write_jsonl(&ts, part, &b, &e) || tr_cli_output(out, b.data ? b.data : "", b.len, &e);
	tr_buf_free(&b);
	tr_traceset_free(&ts);
	return rc ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
