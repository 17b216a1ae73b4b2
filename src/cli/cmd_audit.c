/*
 * cmd_audit.c - `tracer audit`: a reviewer's report on a fitted policy, or on a sweep's plateaus.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../drift/drift.h"
#include "../report/report.h"
#include "cli.h"

const char cmd_audit_usage[] =
	"usage: tracer audit DIR TRAFFIC [--out OUT] [--queries Q] [--cost C] [--top N] [--embeddings X.npy]\n"
	"       tracer audit NEW TRAFFIC --compare OLD [--top N]\n"
	"       tracer audit --results RESULTS --set SET [--spec experiments/flywheel.spec] [--rule ltt]\n"
	"                    [--target 0.95] [--out OUT]\n"
	"  --force: replace OUT even if tracer did not write it (it is moved aside intact, to OUT.replaced.N).\n"
	"  The first form routes TRAFFIC (DATASET:TEACHER: its test part; or a trace JSONL) with the policy in\n"
	"  DIR and writes OUT (default DIR/audit): report.md, report.html (self-contained), report.json,\n"
	"  decisions.jsonl and its chart; the terminal gets the Markdown with the top and bottom N labels.\n"
	"  It re-derives the gate decision from gate_audit.json (for a refusal: the nearest miss), shows per\n"
	"  label and per input length where the surrogate handles and defers, the confusions behind deferrals,\n"
	"  boundary pairs, representative inputs, and the LLM calls and cost for Q queries a day at $C a call\n"
	"  (defaults 10000 and 0.002). The second form reads a sweep's cells: per label, the handled share at\n"
	"  each trace count, the deltas between counts, and the labels that stopped improving.\n"
	"  --compare OLD prints what changed from the policy OLD to NEW (after `tracer update`): lineage, gate\n"
	"  decision and thresholds, and on TRAFFIC the coverage, agreement, changed decisions and coverage per\n"
	"  label (the N largest changes); it writes nothing.\n";

/*
 * Draws a chart with gnuplot, which never sees anything of the user's: the script (fixed text: `head`,
 * then the output and plot lines) and the data go into a private directory (mkdtemp) as plot.gp and
 * data.tsv, gnuplot runs there and writes chart.png, which is then copied to dst. 0 on success; -1 when
 * gnuplot is missing or fails (the report then has no chart).
 */
static int draw(const char *head, const char *plot, const struct tr_buf *tsv, const char *dst)
{
	const char *tmpdir = getenv("TMPDIR");
	char priv[PATH_MAX], p[PATH_MAX + 16];
	if ((size_t)snprintf(priv, sizeof priv, "%s/tracer-plot.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp") >=
		    sizeof priv ||
	    !mkdtemp(priv))
		return -1;
	struct tr_buf script = {0};
	char *png = NULL;
	size_t n;
	int rc = -1, status;
	snprintf(p, sizeof p, "%s/data.tsv", priv);
	if (!tsv->data || tr_write_atomic(p, tsv->data, tsv->len, NULL) ||
	    tr_buf_printf(&script, "%sset output 'chart.png'\nset datafile separator '\\t'\nplot 'data.tsv' %s\n", head,
			  plot))
		goto out;
	snprintf(p, sizeof p, "%s/plot.gp", priv);
	if (tr_write_atomic(p, script.data, script.len, NULL))
		goto out;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);
		if (chdir(priv) != 0 || fd < 0)
			_exit(127);
		dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
		execlp("gnuplot", "gnuplot", "plot.gp", (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		goto out;
	snprintf(p, sizeof p, "%s/chart.png", priv);
	if (tr_read_file(p, &png, &n, NULL) == 0 && n > 0 && tr_write_atomic(dst, png, n, NULL) == 0)
		rc = 0;
out:
	tr_free(png);
	tr_buf_free(&script);
	tr_remove_tree(priv);
	return rc;
}

static int put(const char *dir, const char *name, const char *data, size_t len, struct tr_err *e)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return tr_write_atomic(path, data, len, e);
}

static int put_json(const char *dir, const char *name, json_t *j, struct tr_err *e)
{
	char *s = tr_json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (!s)
		return tr_fail(e, "out of memory");
	int rc = put(dir, name, s, strlen(s), e);
	free(s);
	return rc;
}

/* A chart of the report: NAME.tsv (kept in the report) and NAME.png drawn from it into chart; 1 when drawn. */
static int chart_files(const char *tmp, const char *name, const char *head, const char *plot, const struct tr_buf *tsv,
		       char *chart, size_t size, struct tr_err *e)
{
	char file[64];
	snprintf(chart, size, "%s/%s.png", tmp, name);
	snprintf(file, sizeof file, "%s.tsv", name);
	return put(tmp, file, tsv->data ? tsv->data : "", tsv->len, e) == 0 && draw(head, plot, tsv, chart) == 0;
}

/* The audit directory's manifest (written last) and its commit in place of outdir. */
static int finish(const char *tmp, const char *outdir, int force, json_t *m, struct tr_err *e)
{
	char aside[PATH_MAX + 32];
	if (!m)
		return tr_fail(e, "out of memory");
	int rc = tr_dir_write_manifest(tmp, m, e) || tr_dir_commit(tmp, outdir, force, aside, sizeof aside, e);
	json_decref(m);
	if (!rc && aside[0])
		fprintf(stderr, "audit: %s was not written by tracer: moved aside, intact, to %s\n", outdir, aside);
	return rc ? -1 : 0;
}

static int audit_policy(const char *dir, const char *traffic, const char *outdir, int force, const char *emb_path,
			const struct tr_audit_opts *o, struct tr_err *e)
{
	struct tr_traceset ts;
	double *emb = NULL;
	size_t er = 0;
	int ed = 0, rc = -1;
	json_t *rep = NULL;
	struct tr_buf dec = {0}, md = {0}, term = {0}, html = {0};
	char tmp[PATH_MAX], chart[PATH_MAX + 32];
	tmp[0] = 0;
	if (tr_cli_out_check(outdir, force, e) || tr_traceset_open(traffic, &ts, e))
		return -1;
	const struct tr_rows *rows = ts.part[TR_PART_TEST].n ? &ts.part[TR_PART_TEST] : &ts.part[TR_PART_TRACES];
	if (emb_path && tr_npy_read(emb_path, &emb, &er, &ed, e))
		goto out;
	if (tr_audit_policy(dir, traffic, &ts, rows, emb, er, ed, o, &rep, &dec, e) || tr_dir_begin(outdir, tmp, e))
		goto out;
	struct tr_monitor mon; /* the drift monitor's state and history, when the policy has one */
	int have_mon = tr_monitor_open(dir, &mon, NULL, e);
	if (have_mon < 0)
		goto out;
	if (have_mon)
		json_object_set_new(rep, "monitor", tr_monitor_json(&mon));
	/* chart: handled share per label, most handled first */
	struct tr_buf tsv = {0};
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(rep, "per_label"), i, l)
		tr_buf_printf(&tsv, "%zu\t%.6f\n", i + 1, json_real_value(json_object_get(l, "handled_share")));
	int charts = chart_files(tmp, "per_label",
				 "set terminal pngcairo size 1000,360 font ',9'\n"
				 "set xlabel 'teacher labels, most handled first (rank)'\nset ylabel 'handled share'\n"
				 "set yrange [0:1.02]\nset style fill solid 0.8\nset boxwidth 0.8\nset key off\n",
				 "using 1:2 with boxes lc rgb '#2ca02c'", &tsv, chart, sizeof chart, e);
	tr_buf_free(&tsv);
	const char *ch[1] = {chart}, *cap[1] = {"Handled share per teacher label on the audited traffic"};
	if (tr_audit_markdown(rep, 0, o->top, &md) || tr_audit_markdown(rep, 1, o->top, &term) ||
	    tr_audit_html(rep, ch, cap, charts, &html, e) || put(tmp, "report.md", md.data, md.len, e) ||
	    put(tmp, "report.html", html.data, html.len, e) || put_json(tmp, "report.json", rep, e) ||
	    put(tmp, "decisions.jsonl", dec.data ? dec.data : "", dec.len, e) ||
	    finish(tmp, outdir, force,
		   json_pack("{s:s, s:i, s:s, s:s, s:s}", "format", "tracer-audit", "version", 1, "tracer", TR_VERSION,
			     "policy", dir, "traffic", traffic),
		   e))
		goto out;
	fputs(term.data, stdout);
	fprintf(stderr, "audit: %s/report.md, report.html, report.json, decisions.jsonl%s\n", outdir,
		charts ? "" : " (gnuplot unavailable: no chart)");
	rc = 0;
out:
	if (rc && tmp[0])
		tr_remove_tree(tmp);
	json_decref(rep);
	tr_buf_free(&dec), tr_buf_free(&md), tr_buf_free(&term), tr_buf_free(&html);
	tr_free(emb);
	tr_traceset_free(&ts);
	return rc;
}

static int audit_plateaus(const char *results, const char *spec, const char *set, const char *rule, double target,
			  const char *outdir, int force, struct tr_err *e)
{
	struct tr_spec s;
	json_t *rep = NULL;
	int rc = -1;
	struct tr_buf md = {0}, html = {0}, tsv = {0};
	char tmp[PATH_MAX], chart[PATH_MAX + 32];
	tmp[0] = 0;
	if (tr_cli_out_check(outdir, force, e) || tr_spec_load(spec, &s, e))
		return -1;
	if (tr_audit_plateaus(&s, results, set, rule, target, &rep, e) || tr_dir_begin(outdir, tmp, e))
		goto out;
	json_t *counts = json_object_get(rep, "trace_counts"), *cov = json_object_get(rep, "coverage");
	for (size_t i = 0; i < json_array_size(counts); i++)
		tr_buf_printf(&tsv, "%lld\t%.6f\n", (long long)json_integer_value(json_array_get(counts, i)),
			      json_number_value(json_array_get(cov, i)));
	int charts = chart_files(tmp, "coverage",
				 "set terminal pngcairo size 800,400 font ',9'\nset logscale x 2\n"
				 "set xlabel 'traces used for fitting (count, log scale)'\n"
				 "set ylabel 'coverage (share of test traffic handled)'\nset yrange [0:1.02]\nset key off\n",
				 "using 1:2 with linespoints lw 2 pt 7", &tsv, chart, sizeof chart, e);
	if (tr_plateau_markdown(rep, &md) || tr_plateau_html(rep, charts ? chart : NULL, &html, e) ||
	    put(tmp, "report.md", md.data, md.len, e) || put(tmp, "report.html", html.data, html.len, e) ||
	    put_json(tmp, "report.json", rep, e) ||
	    finish(tmp, outdir, force,
		   json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "format", "tracer-audit", "version", 1, "tracer",
			     TR_VERSION, "results", results, "set", set, "spec", spec),
		   e))
		goto out;
	fputs(md.data, stdout);
	rc = 0;
out:
	if (rc && tmp[0])
		tr_remove_tree(tmp);
	json_decref(rep);
	tr_buf_free(&md), tr_buf_free(&html), tr_buf_free(&tsv);
	tr_spec_free(&s);
	return rc;
}

int cmd_audit(int argc, char **argv)
{
	const char *dir = NULL, *traffic = NULL, *out = NULL, *results = NULL, *set = NULL, *emb = NULL;
	const char *rule = "ltt", *spec = NULL, *compare = NULL;
	char specbuf[PATH_MAX], outbuf[PATH_MAX];
	double target = 0.95;
	struct tr_audit_opts o = {.queries = 10000, .cost = 0.002, .top = 15};
	int force = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--force") == 0) {
			force = 1;
			continue;
		}
		if (a[0] != '-') {
			if (!dir)
				dir = a;
			else if (!traffic)
				traffic = a;
			else
				return tr_cli_usage_error("audit", "unexpected argument \"%s\"", a);
			continue;
		}
		if (!v)
			return tr_cli_usage_error("audit", "%s needs a value", a);
		i++;
		unsigned long long u;
		if (strcmp(a, "--out") == 0)
			out = v;
		else if (strcmp(a, "--results") == 0)
			results = v;
		else if (strcmp(a, "--set") == 0)
			set = v;
		else if (strcmp(a, "--spec") == 0)
			spec = v;
		else if (strcmp(a, "--rule") == 0)
			rule = v;
		else if (strcmp(a, "--embeddings") == 0)
			emb = v;
		else if (strcmp(a, "--compare") == 0)
			compare = v;
		else if (strcmp(a, "--target") == 0) {
			if (tr_cli_number(v, 0, 1, &target))
				return tr_cli_usage_error("audit", "--target must be in (0, 1)");
		} else if (strcmp(a, "--queries") == 0) {
			if (tr_cli_number(v, 0, 1e15, &o.queries))
				return tr_cli_usage_error("audit", "--queries must be positive");
		} else if (strcmp(a, "--cost") == 0) {
			if (tr_cli_number(v, 0, 1e6, &o.cost))
				return tr_cli_usage_error("audit", "--cost must be positive");
		} else if (strcmp(a, "--top") == 0) {
			if (tr_cli_count(v, &u) || u < 1 || u > 1000)
				return tr_cli_usage_error("audit", "--top must be 1..1000");
			o.top = (int)u;
		} else
			return tr_cli_usage_error("audit", "unknown option \"%s\"", a);
	}
	struct tr_err e;
	if (results) {
		if (dir || !set)
			return tr_cli_usage_error("audit", "--results takes --set SET and no policy directory");
		if (!tr_rule_find(rule))
			return tr_cli_usage_error("audit", "--rule must be one of %s", tr_rule_list(", "));
		if (!spec) {
			tr_root_path("experiments/flywheel.spec", specbuf, sizeof specbuf);
			spec = specbuf;
		}
		if (!out) {
			snprintf(outbuf, sizeof outbuf, "%s/audit-plateaus", results);
			out = outbuf;
		}
		return audit_plateaus(results, spec, set, rule, target, out, force, &e) ? tr_cli_data_error(&e) : TR_EXIT_OK;
	}
	if (!dir || !traffic)
		return tr_cli_usage_error("audit", "expected DIR and TRAFFIC (or --results)");
	if (compare)
		return tr_cli_audit_compare(dir, compare, traffic, o.top, &e) ? tr_cli_data_error(&e) : TR_EXIT_OK;
	if (!out) {
		snprintf(outbuf, sizeof outbuf, "%s/audit", dir);
		out = outbuf;
	}
	return audit_policy(dir, traffic, out, force, emb, &o, &e) ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
