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
	"                    [--quiet]\n"
	"       tracer audit NEW TRAFFIC --compare OLD [--top N]\n"
	"       tracer audit --results RESULTS --set SET [--spec experiments/flywheel.spec] [--rule ltt]\n"
	"                    [--target 0.95] [--out OUT]\n"
	"  --force: replace OUT even if tracer did not write it (it is moved aside intact, to OUT.replaced.N).\n"
	"  The first form routes TRAFFIC (DATASET:TEACHER: its test part; or a trace JSONL) with the policy in\n"
	"  DIR and writes OUT (default DIR/audit): report.md, report.html (self-contained: the gate's walk and\n"
	"  the handled share per label as charts), report.json, decisions.jsonl (with \"ood\": deferred by the\n"
	"  OOD guard), per_label.tsv and gate_walk.tsv; the terminal gets the Markdown with the top and bottom\n"
	"  N labels.\n"
	"  It re-derives the gate decision from gate_audit.json (for a refusal: the nearest miss), shows per\n"
	"  label and per input length where the surrogate handles and defers, the confusions behind deferrals,\n"
	"  boundary pairs, representative inputs, and the LLM calls and cost for Q queries a day at $C a call\n"
	"  (defaults 10000 and 0.002). The second form reads a sweep's cells: per label, the handled share at\n"
	"  each trace count, the deltas between counts, and the labels that stopped improving.\n"
	"  --compare OLD prints what changed from the policy OLD to NEW (after `tracer update`): lineage, gate\n"
	"  decision and thresholds, and on TRAFFIC the coverage, agreement, changed decisions and coverage per\n"
	"  label (the N largest changes); it writes nothing. The first form reports its phases and elapsed\n"
	"  time on stderr (redrawn in place on a terminal); --quiet silences them.\n";

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

/* A chart of the report: NAME.tsv (kept in the report) and NAME.png drawn from it into chart; 1 when drawn,
 * 0 when not (no gnuplot), -1 when NAME.tsv cannot be written. */
static int chart_files(const char *tmp, const char *name, const char *head, const char *plot, const struct tr_buf *tsv,
		       char *chart, size_t size, struct tr_err *e)
{
	char file[64];
	snprintf(chart, size, "%s/%s.png", tmp, name);
	snprintf(file, sizeof file, "%s.tsv", name);
	if (put(tmp, file, tsv->data ? tsv->data : "", tsv->len, e))
		return -1;
	return draw(head, plot, tsv, chart) == 0;
}

/* A label as one TSV field: tabs and line breaks become spaces, double quotes (gnuplot's) single ones. */
static void tsv_label(struct tr_buf *b, const char *s)
{
	for (; *s; s++)
		tr_buf_add(b, *s == '\t' || *s == '\n' || *s == '\r' ? " " : *s == '"' ? "'" : s, 1);
}

/*
 * per_label.tsv (every label, with a header) and the per-label chart: horizontal bars named by label, all
 * of them up to 40 labels, else the 20 most and the 20 least handled. No chart for a refused policy (every
 * share is 0: the report says why instead). 1 when the chart was drawn into chart, 0 when not, -1 when
 * per_label.tsv cannot be written.
 */
static int label_chart(const char *tmp, json_t *rep, int refused, char *chart, size_t size, struct tr_err *e)
{
	struct tr_buf tsv = {0}, data = {0}, head = {0};
	json_t *per = json_object_get(rep, "per_label"), *l;
	size_t n = json_array_size(per), i, shown = n <= 40 ? n : 41, row = shown;
	tr_buf_puts(&tsv, "rank\tlabel\ttraces\thandled\thandled_share\tagreement_handled\n");
	json_array_foreach(per, i, l)
	{
		json_t *agr = json_object_get(l, "agreement_handled");
		tr_buf_printf(&tsv, "%zu\t", i + 1);
		tsv_label(&tsv, json_string_value(json_object_get(l, "label")));
		tr_buf_printf(&tsv, "\t%lld\t%lld\t%.6f\t", (long long)json_integer_value(json_object_get(l, "traces")),
			      (long long)json_integer_value(json_object_get(l, "handled")),
			      json_number_value(json_object_get(l, "handled_share")));
		if (json_is_number(agr))
			tr_buf_printf(&tsv, "%.6f\n", json_number_value(agr));
		else
			tr_buf_puts(&tsv, "NA\n");
		if (n > 40 && i == 20)
			tr_buf_printf(&data, "%zu\t(%zu labels not shown)\t0\n", row--, n - 40);
		if (n <= 40 || i < 20 || i >= n - 20) {
			tr_buf_printf(&data, "%zu\t", row--);
			tsv_label(&data, json_string_value(json_object_get(l, "label")));
			tr_buf_printf(&data, "\t%.6f\n", json_number_value(json_object_get(l, "handled_share")));
		}
	}
	int drawn = 0;
	char file[PATH_MAX];
	snprintf(file, sizeof file, "%s/per_label.tsv", tmp);
	snprintf(chart, size, "%s/per_label.png", tmp);
	if (tr_write_atomic(file, tsv.data ? tsv.data : "", tsv.len, e))
		drawn = -1;
	else if (!refused && shown &&
	    tr_buf_printf(&head,
			  "set terminal pngcairo size 900,%zu font ',9' noenhanced\n"
			  "set xlabel 'handled share of the label''s audited inputs'\nset xrange [0:1]\nset yrange [0.4:%zu.6]\n"
			  "set ytics scale 0\nset grid xtics\nset style fill solid 0.8\nset key off\n"
			  "set title '%s' noenhanced\n",
			  90 + 15 * shown, shown,
			  n > 40 ? "teacher labels: the 20 most and the 20 least handled" : "teacher labels, most handled first") == 0)
		drawn = draw(head.data, "using ($3/2):1:($3/2):(0.38):ytic(2) with boxxyerror lc rgb '#2ca02c'", &data,
			     chart) == 0;
	tr_buf_free(&tsv), tr_buf_free(&data), tr_buf_free(&head);
	return drawn;
}

/*
 * gate_walk.tsv and its chart: every threshold each family's gate examined (report.json's gate.families[].walk),
 * calibration coverage on x and the rule's statistic on y, with the bound it had to meet (dashed), the deployed
 * step and the step where each walk stopped. Family and rule names in the script are our table's, never the
 * file's. 1 when drawn, 0 when not, -1 when gate_walk.tsv cannot be written.
 */
static int walk_chart(const char *tmp, json_t *rep, char *chart, size_t size, struct tr_err *e)
{
	json_t *g = json_object_get(rep, "gate"), *f, *w;
	const struct tr_rule *rule = tr_rule_find(json_string_value(json_object_get(g, "rule")));
	int pvalue = rule && strcmp(rule->stat, "p_value") == 0, block = 0, rc = 0;
	struct tr_buf data = {0}, plot = {0}, marks[2] = {{0}, {0}}, head = {0};
	size_t i, j;
	json_array_foreach(json_object_get(g, "families"), i, f)
	{
		json_t *walk = json_object_get(f, "walk");
		const struct tr_pol_family *fam = tr_pol_family_find(json_string_value(json_object_get(f, "family")));
		if (!json_array_size(walk))
			continue;
		tr_buf_printf(&data, "%s# %s\ncoverage\tstat\tbound\tpass\n", block ? "\n\n" : "", fam ? fam->name : "?");
		json_array_foreach(walk, j, w)
		{
			double y = json_number_value(json_object_get(w, "stat")), b = json_number_value(json_object_get(w, "bound"));
			char line[160];
			snprintf(line, sizeof line, "%.6f\t%.6g\t%.6g\t%d\n", json_number_value(json_object_get(w, "coverage")),
				 pvalue && y < 1e-12 ? 1e-12 : y, b, json_is_true(json_object_get(w, "pass")));
			tr_buf_puts(&data, line);
			if (json_is_true(json_object_get(w, "deployed")))
				tr_buf_puts(&marks[0], line);
			if (json_is_true(json_object_get(w, "stop")))
				tr_buf_puts(&marks[1], line);
		}
		tr_buf_printf(&plot, "%s index %d using 1:2 every ::1 with linespoints lt %d pt 7 ps 0.5 title '%s', '' index %d "
				     "using 1:3 every ::1 with steps lt %d dt 2 title '%s %s'",
			      block ? ", ''" : "", block, block + 1, fam ? fam->name : "?", block, block + 1,
			      fam ? fam->name : "?", pvalue ? "test level" : "α");
		block++;
	}
	static const char *const mark_style[2] = {"pt 7 ps 2 lc rgb '#000000' title 'deployed'",
						  "pt 6 ps 2.6 lw 2 lc rgb '#d62728' title 'walk stopped'"};
	for (int m = 0; m < 2 && block; m++) {
		if (!marks[m].data)
			continue;
		tr_buf_printf(&data, "\n\n# %s\ncoverage\tstat\tbound\tpass\n%s", m ? "stopped" : "deployed", marks[m].data);
		tr_buf_printf(&plot, ", '' index %d using 1:2 every ::1 with points %s", block++, mark_style[m]);
	}
	snprintf(chart, size, "%s/gate_walk.png", tmp);
	if (block &&
	    tr_buf_printf(&head,
			  "set terminal pngcairo size 900,420 font ',9' noenhanced\nset key outside right top\n"
			  "set xlabel 'calibration coverage (share of calibration rows the threshold accepts)'\n"
			  "set xrange [0:1.02]\nset grid\nset title '%s at α = %.2f: a threshold passes %s'\n%s",
			  rule ? rule->name : "gate", json_number_value(json_object_get(g, "target")),
			  pvalue ? "when its p-value is at or below the dashed test level" : "when its statistic is at or above α (dashed)",
			  pvalue ? "set logscale y\nset format y '%g'\nset ylabel 'p-value of \"agreement < α\" (log scale)'\n"
				 : "set ylabel 'calibration statistic'\n") == 0)
		rc = chart_files(tmp, "gate_walk", head.data, plot.data, &data, chart, size, e);
	tr_buf_free(&data), tr_buf_free(&plot), tr_buf_free(&marks[0]), tr_buf_free(&marks[1]), tr_buf_free(&head);
	return rc;
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
			const struct tr_audit_opts *o, struct tr_progress *pr, struct tr_err *e)
{
	struct tr_traceset ts;
	double *emb = NULL;
	size_t er = 0;
	int ed = 0, rc = -1;
	json_t *rep = NULL;
	struct tr_buf dec = {0}, md = {0}, term = {0}, html = {0};
	char tmp[PATH_MAX], chart[PATH_MAX + 32];
	tmp[0] = 0;
	if (tr_cli_policy_check(dir, e) || tr_cli_out_check(outdir, force, e) || tr_traceset_open(traffic, &ts, e))
		return -1;
	const struct tr_rows *rows = ts.part[TR_PART_TEST].n ? &ts.part[TR_PART_TEST] : &ts.part[TR_PART_TRACES];
	if (emb_path && tr_npy_read(emb_path, &emb, &er, &ed, e))
		goto out;
	struct tr_traffic_warnings w;
	struct tr_policy *pol;
	if (tr_cli_policy_load(dir, &pol, e))
		goto out;
	int bad = tr_traffic_check(dir, pol, &ts, rows, &w, e);
	tr_policy_free(pol);
	if (!bad)
		tr_progress_phase(pr, "routing %zu rows of %s with %s", rows->n, traffic, dir);
	if (bad || tr_audit_policy(dir, traffic, &ts, rows, emb, er, ed, o, &rep, &dec, e) || tr_dir_begin(outdir, tmp, e))
		goto out;
	tr_progress_phase(pr, "writing %s", outdir);
	tr_cli_progress_break();
	tr_traffic_warn("audit", &w);
	json_t *warn = json_array();
	for (int k = 0; k < w.n; k++)
		json_array_append_new(warn, json_string(w.msg[k]));
	json_object_set_new(rep, "warnings", warn); /* report.md and report.html render them first, escaped */
	struct tr_monitor mon; /* the drift monitor's state and history, when the policy has one */
	int have_mon = tr_monitor_open(dir, &mon, NULL, e);
	if (have_mon < 0)
		goto out;
	if (have_mon)
		json_object_set_new(rep, "monitor", tr_monitor_json(&mon));
	const char *family = json_string_value(json_object_get(json_object_get(json_object_get(rep, "gate"), "deployed"), "family"));
	int refused = !family || strcmp(family, "refused") == 0;
	char wchart[PATH_MAX + 32];
	int drawn_label = label_chart(tmp, rep, refused, chart, sizeof chart, e);
	int drawn_walk = drawn_label < 0 ? -1 : walk_chart(tmp, rep, wchart, sizeof wchart, e);
	if (drawn_walk < 0)
		goto out;
	if (tr_audit_markdown(rep, 0, o->top, &md) ||
	    tr_audit_markdown(rep, 1, o->top, &term) ||
	    tr_audit_html(rep, drawn_walk ? wchart : NULL, drawn_label ? chart : NULL, &html, e) || put(tmp, "report.md", md.data, md.len, e) ||
	    put(tmp, "report.html", html.data, html.len, e) || put_json(tmp, "report.json", rep, e) ||
	    put(tmp, "decisions.jsonl", dec.data ? dec.data : "", dec.len, e) ||
	    finish(tmp, outdir, force,
		   json_pack("{s:s, s:i, s:s, s:s, s:s}", "format", "tracer-audit", "version", 1, "tracer", TR_VERSION,
			     "policy", dir, "traffic", traffic),
		   e))
		goto out;
	tr_cli_progress_end(pr, 1);
	fputs(term.data, stdout);
	fprintf(stderr, "audit: %s/report.md, report.html, report.json, decisions.jsonl, per_label.tsv%s\n", outdir,
		drawn_walk || drawn_label ? "" : " (gnuplot unavailable: no chart)");
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
	tr_buf_puts(&tsv, "traces\tcoverage\n");
	for (size_t i = 0; i < json_array_size(counts); i++)
		tr_buf_printf(&tsv, "%lld\t%.6f\n", (long long)json_integer_value(json_array_get(counts, i)),
			      json_number_value(json_array_get(cov, i)));
	int charts = chart_files(tmp, "coverage",
				 "set terminal pngcairo size 800,400 font ',9'\nset logscale x 2\n"
				 "set xlabel 'traces used for fitting (count, log scale)'\n"
				 "set ylabel 'coverage (share of test traffic handled)'\nset yrange [0:1.02]\nset key off\n",
				 "every ::1 using 1:2 with linespoints lw 2 pt 7", &tsv, chart, sizeof chart, e);
	if (charts < 0)
		goto out;
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
	int force = 0, quiet = 0;
	struct tr_args a = {.verb = "audit",
			    .spec = "--out= --results= --set= --spec= --rule= --embeddings= --compare= --target= "
				    "--queries= --cost= --top= --force --quiet",
			    .pos = (const char **[]){&dir, &traffic},
			    .n_pos = 2};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		const char *v = a.val;
		unsigned long long u;
		if (tr_args_is(&a, "--force"))
			force = 1;
		else if (tr_args_is(&a, "--quiet"))
			quiet = 1;
		else if (tr_args_is(&a, "--out"))
			out = v;
		else if (tr_args_is(&a, "--results"))
			results = v;
		else if (tr_args_is(&a, "--set"))
			set = v;
		else if (tr_args_is(&a, "--spec"))
			spec = v;
		else if (tr_args_is(&a, "--rule"))
			rule = v;
		else if (tr_args_is(&a, "--embeddings"))
			emb = v;
		else if (tr_args_is(&a, "--compare"))
			compare = v;
		else if (tr_args_is(&a, "--target")) {
			if (tr_cli_number(v, 0, 1, &target))
				return tr_cli_usage_error("audit", "--target must be in (0, 1)");
		} else if (tr_args_is(&a, "--queries")) {
			if (tr_cli_number(v, 0, 1e15, &o.queries))
				return tr_cli_usage_error("audit", "--queries must be positive");
		} else if (tr_args_is(&a, "--cost")) {
			if (tr_cli_number(v, 0, 1e6, &o.cost))
				return tr_cli_usage_error("audit", "--cost must be positive");
		} else if (tr_args_is(&a, "--top")) {
			if (tr_cli_count(v, &u) || u < 1 || u > 1000)
				return tr_cli_usage_error("audit", "--top must be 1..1000");
			o.top = (int)u;
		}
	}
	if (k < 0)
		return TR_EXIT_USAGE;
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
	return audit_policy(dir, traffic, out, force, emb, &o, tr_cli_progress("audit", quiet), &e) ? tr_cli_data_error(&e)
												      : TR_EXIT_OK;
}
