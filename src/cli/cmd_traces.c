/*
 * cmd_traces.c - `tracer traces export`: a trace set as reference trace JSONL; `tracer traces split`: a
 * trace set's traces held out in part, grouped and stratified, as an artifact directory.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../exp/exp.h"
#include "cli.h"

const char cmd_traces_usage[] =
	"usage: tracer traces export DATASET:TEACHER|traces.jsonl [--part traces|test|extra] [--pooled SEED]\n"
	"           [--out FILE]\n"
	"       tracer traces split DATASET:TEACHER|traces.jsonl --out DIR [--test F] [--seed S] [--force]\n"
	"  export writes {\"id\",\"input\",\"teacher\",\"ground_truth\"} lines (plus \"input_b\" for pairs);\n"
	"  FILE is written atomically (default: stdout). The extra part holds CLINC150's oos items. A trace\n"
	"  file has only a traces part: asking it for another part is an error (split it instead).\n"
	"  --pooled SEED: the traces and test parts pooled and split 70/30 as the sweeps' pooled protocol does\n"
	"  with that seed (--part traces or test).\n"
	"  split holds out a share F (default 0.3) of the traces for testing: rows sharing a group key (\"group\",\n"
	"  else the premise of a pair, else the input text) stay on one side, and each teacher label is split in\n"
	"  that proportion (the split fit uses, seeded by S, default 0). DIR gets traces.jsonl (fit on it),\n"
	"  test.jsonl (eval and audit on it) and manifest.json (the source's SHA-256, F, S, the counts); it is\n"
	"  written atomically and replaces only a directory tracer wrote (--force moves any other aside).\n";

static int put_part(const char *tmp, const char *name, const struct tr_traceset *view, int part, struct tr_err *e)
{
	char path[PATH_MAX + 32];
	struct tr_buf b = {0};
	snprintf(path, sizeof path, "%s/%s", tmp, name);
	int rc = tr_traces_write_jsonl(view, part, &b, e) || tr_write_atomic(path, b.data ? b.data : "", b.len, e);
	tr_buf_free(&b);
	return rc ? -1 : 0;
}

static int split(const char *set, const char *dir, double test, uint64_t seed, int force, struct tr_err *e)
{
	struct tr_traceset ts, view = {0};
	char tmp[PATH_MAX], aside[PATH_MAX + 32] = "";
	tmp[0] = 0;
	if (tr_cli_out_check(dir, force, e) || tr_traceset_open(set, &ts, e))
		return -1;
	/* the view borrows ts's rows: the split of the sweeps (tr_split_rows), held-out share last */
	view = ts;
	memset(view.part, 0, sizeof view.part);
	const struct tr_rows *r = &ts.part[TR_PART_TRACES];
	int rc = tr_split_rows(r->v, r->n, (const double[2]){1 - test, test}, seed, &view.part[TR_PART_TRACES],
			       &view.part[TR_PART_TEST], e);
	size_t n = ts.part[TR_PART_TRACES].n, na = view.part[TR_PART_TRACES].n, nb = view.part[TR_PART_TEST].n;
	if (!rc && (!na || !nb))
		rc = tr_fail(e, "%s: %zu traces cannot be split %g/%g with both sides non-empty (too few rows or "
				"groups)", set, n, 1 - test, test);
	json_t *files = json_array(), *m = NULL;
	for (int k = 0; !rc && k < ts.n_inputs; k++)
		json_array_append_new(files, json_pack("{s:s,s:s}", "path", ts.inputs[k].path, "sha256", ts.inputs[k].sha256));
	if (!rc)
		m = json_pack("{s:s,s:i,s:s,s:{s:s,s:o},s:f,s:I,s:s,s:s,s:{s:I,s:I}}", "format", "tracer-split", "version",
			      1, "tracer", TR_VERSION, "inputs", "traces", set, "files", files, "test", test, "seed", (json_int_t)seed,
			      "grouped", "rows sharing a group key (group, else a pair's premise, else the input) stay on one side",
			      "stratified", "by teacher label", "rows", "traces", (json_int_t)na, "test", (json_int_t)nb);
	else
		json_decref(files);
	if (!rc && !m)
		rc = tr_fail(e, "out of memory");
	if (!rc)
		rc = tr_dir_begin(dir, tmp, e) || put_part(tmp, "traces.jsonl", &view, TR_PART_TRACES, e) ||
		     put_part(tmp, "test.jsonl", &view, TR_PART_TEST, e) || tr_dir_write_manifest(tmp, m, e) ||
		     tr_dir_commit(tmp, dir, force, aside, sizeof aside, e);
	if (rc && tmp[0])
		tr_remove_tree(tmp);
	if (!rc && aside[0])
		fprintf(stderr, "traces: %s was not written by tracer: moved aside, intact, to %s\n", dir, aside);
	if (!rc)
		printf("%s: %zu traces -> %s/traces.jsonl %zu, %s/test.jsonl %zu (test share %g, seed %llu, grouped, "
		       "stratified by teacher label)\n",
		       set, n, dir, na, dir, nb, test, (unsigned long long)seed);
	json_decref(m);
	tr_free(view.part[TR_PART_TRACES].v), tr_free(view.part[TR_PART_TEST].v);
	tr_traceset_free(&ts);
	return rc ? -1 : 0;
}

int cmd_traces(int argc, char **argv)
{
	int is_split = argc >= 2 && strcmp(argv[1], "split") == 0;
	if (argc < 2 || (!is_split && strcmp(argv[1], "export") != 0))
		return tr_cli_usage_error("traces", "expected `traces export SET` or `traces split SET --out DIR`");
	const char *set = NULL, *out = NULL;
	int part = -1, pooled = 0, force = 0;
	unsigned long long seed = 0;
	double test = 0.3;
	struct tr_args a = {.verb = "traces",
			    .spec = is_split ? "--out= --test= --seed= --force" : "--part= --pooled= --out=",
			    .pos = (const char **[]){&set},
			    .n_pos = 1};
	int k;
	while ((k = tr_args_next(&a, argc - 1, argv + 1)) == TR_ARG_OPT) {
		if (tr_args_is(&a, "--part")) {
			if ((part = tr_part_parse(a.val)) < 0)
				return tr_cli_usage_error("traces", "unknown part \"%s\"", a.val);
		} else if (tr_args_is(&a, "--pooled") || tr_args_is(&a, "--seed")) {
			if (tr_cli_count(a.val, &seed))
				return tr_cli_usage_error("traces", "bad seed \"%s\"", a.val);
			pooled = 1;
		} else if (tr_args_is(&a, "--test")) {
			if (tr_cli_number(a.val, 0, 1, &test))
				return tr_cli_usage_error("traces", "--test must be in (0, 1), got \"%s\"", a.val);
		} else if (tr_args_is(&a, "--out"))
			out = a.val;
		else if (tr_args_is(&a, "--force"))
			force = 1;
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!set)
		return tr_cli_usage_error("traces", is_split ? "expected `traces split SET --out DIR`" : "expected `traces export SET`");
	struct tr_err e;
	if (is_split) {
		if (!out)
			return tr_cli_usage_error("traces", "split needs --out DIR");
		return split(set, out, test, seed, force, &e) ? tr_cli_data_error(&e) : TR_EXIT_OK;
	}
	struct tr_traceset ts;
	if (tr_traceset_open(set, &ts, &e))
		return tr_cli_data_error(&e);
	struct tr_buf b = {0};
	struct tr_traceset view = ts;
	struct tr_rows tr = {0}, te = {0};
	int rc = pooled && part == TR_PART_EXTRA ? tr_fail(&e, "--pooled: the extra part is not pooled") : 0;
	/* a part the set does not have is refused rather than written as an empty file */
	if (!rc && !pooled && part >= 0 && part != TR_PART_TRACES && !ts.part[part].n)
		rc = tr_fail(&e, "%s has no %s part%s", set, tr_part_names[part],
			     ts.n_inputs == 1 && !ts.part[TR_PART_TEST].n
				     ? " (a trace file is all traces: `tracer traces split` holds part of it out)"
				     : "");
	if (part < 0)
		part = TR_PART_TRACES;
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
