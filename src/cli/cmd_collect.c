/*
 * cmd_collect.c - `tracer collect`: finished cells -> RESULTS/tables/NAME.tsv (and PAPER.md).
 */
#include <stdio.h>
#include <string.h>

#include "../report/report.h"
#include "cli.h"

const char cmd_collect_usage[] =
	"usage: tracer collect [SPEC...] [--results DIR] [--paper PAPER.md] [--partial]\n"
	"  Sums each spec's finished cells over seeds into DIR/tables/NAME.tsv (one row per set, protocol,\n"
	"  backend, trace count, rule and target) and, with --paper, rewrites PAPER.md's generated sections.\n"
	"  The drift study's replays (DIR/drift, from scripts/drift-study.sh) go to DIR/tables/drift*.tsv and\n"
	"  PAPER.md's \"drift\" section; with no SPEC only those are written.\n"
	"  Missing cells are listed on stderr and make the command fail unless --partial is given.\n";

int cmd_collect(int argc, char **argv)
{
	char results[4096], dir[4200], path[4300];
	tr_root_path("results", results, sizeof results);
	const char *paper = NULL, *specs[32];
	int n = 0, partial = 0;
	struct tr_args a = {.verb = "collect", .spec = "--results= --paper= --partial"};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) > 0) {
		if (k == TR_ARG_POS) {
			if (n == 32)
				return tr_cli_usage_error("collect", "at most 32 spec files, got \"%s\" too", a.val);
			specs[n++] = a.val;
		} else if (tr_args_is(&a, "--results"))
			snprintf(results, sizeof results, "%s", a.val);
		else if (tr_args_is(&a, "--paper"))
			paper = a.val;
		else if (tr_args_is(&a, "--partial"))
			partial = 1;
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!n && !paper)
		return tr_cli_usage_error("collect", "expected spec files (or, for the drift study alone, --paper)");
	struct tr_table t = {0};
	struct tr_err e;
	int rc = 0;
	snprintf(dir, sizeof dir, "%s/tables", results);
	if (tr_mkdirs(dir, &e))
		return tr_cli_data_error(&e);
	for (int i = 0; i < n && !rc; i++) {
		struct tr_spec s;
		if (tr_spec_load(specs[i], &s, &e) || tr_table_add_spec(&t, &s, results, stderr, &e)) {
			rc = tr_cli_data_error(&e);
			tr_spec_free(&s);
			break;
		}
		struct tr_buf b = {0};
		snprintf(path, sizeof path, "%s/%s.tsv", dir, s.name);
		if (tr_table_write_tsv(&t, s.name, &b) || tr_write_atomic(path, b.data, b.len, &e))
			rc = tr_cli_data_error(&e);
		tr_buf_free(&b);
		tr_spec_free(&s);
	}
	if (!rc && t.missing) {
		fprintf(stderr, "collect: %zu of %zu cells missing%s\n", t.missing, t.cells,
			partial ? " (tables are partial)" : "; rerun the sweep, or pass --partial");
		if (!partial)
			rc = TR_EXIT_DATA;
	}
	if (!rc && paper && n && tr_paper_update(&t, paper, &e))
		rc = tr_cli_data_error(&e);
	if (!rc && tr_drift_collect(results, paper, &e))
		rc = tr_cli_data_error(&e);
	if (!rc)
		fprintf(stderr, "collect: %zu cells into %s\n", t.cells - t.missing, dir);
	tr_table_free(&t);
	return rc;
}
