/*
 * audit_render.c - an audit report as Markdown (file and terminal) and as one self-contained HTML page.
 *
 * Both come from the same list of sections (a title, prose lines, a table of text cells), built once
 * from the report JSON. Inputs are user data: every cell is escaped for its format.
 */
#include "report.h"

#include <jansson.h>
#include <math.h>
#include <nettle/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXCOL 6

struct section {
	char title[128];
	struct tr_buf prose;
	const char *head[MAXCOL];
	int ncol;
	char **cells; /* rows × ncol */
	size_t nrows, cap;
	size_t elided_after; /* terminal view: rows [top, nrows - top) are elided when set */
	int file_only;	     /* not in the terminal view (its text is on stderr already) */
	enum { NO_CHART, WALK_CHART, LABEL_CHART } chart; /* the HTML chart drawn under the prose */
};

static char *fmt_num(double v, const char *fmt)
{
	char buf[64];
	if (isnan(v))
		snprintf(buf, sizeof buf, "—");
	else
		snprintf(buf, sizeof buf, fmt, v);
	return tr_strdup(buf);
}

static double num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "—";
}

static void add_row(struct section *s, char **cells)
{
	if (tr_grow(&s->cells, &s->cap, (s->nrows + 1) * (size_t)s->ncol, sizeof *s->cells))
		return;
	memcpy(s->cells + s->nrows * (size_t)s->ncol, cells, (size_t)s->ncol * sizeof *cells);
	s->nrows++;
}

static void free_sections(struct section *s, int n)
{
	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < s[i].nrows * (size_t)s[i].ncol; k++)
			tr_free(s[i].cells[k]);
		tr_free(s[i].cells);
		tr_buf_free(&s[i].prose);
	}
}

static char *threshold_text(json_t *o, const char *key)
{
	double t = tr_threshold_get(o, key);
	if (isnan(t) || t == -INFINITY)
		return tr_strdup("accept all");
	if (t == INFINITY)
		return tr_strdup("stage 1 only");
	return fmt_num(t, "%.4f");
}

/* Builds the sections of a report; returns how many. */
static int build(json_t *rep, struct section *S)
{
	int n = 0;
	json_t *g = json_object_get(rep, "gate"), *dep = json_object_get(g, "deployed");
	const char *rule = str(g, "rule"), *family = str(dep, "family");
	struct section *s;
	size_t i;
	json_t *f, *warn = json_object_get(rep, "warnings");
	if (json_array_size(warn)) { /* misuse first: it changes what every figure below means */
		s = &S[n++];
		snprintf(s->title, sizeof s->title, "Warnings");
		tr_buf_puts(&s->prose, "This traffic may not be what an audit assumes (fresh inputs of the kind the policy "
				       "was fitted on): read every figure below with these in mind.\n");
		s->ncol = 1, s->head[0] = "warning", s->file_only = 1;
		json_array_foreach(warn, i, f)
		{
			char *c[1] = {tr_strdup(json_string_value(f) ? json_string_value(f) : "")};
			add_row(s, c);
		}
	}
	s = &S[n++];
	snprintf(s->title, sizeof s->title, "Gate decision");
	s->chart = WALK_CHART;
	tr_buf_printf(&s->prose, "Target α = %.2f, rule `%s`", num(g, "target"), rule);
	if (json_is_string(json_object_get(g, "rule_detail")))
		tr_buf_puts(&s->prose, str(g, "rule_detail"));
	tr_buf_printf(&s->prose, "; %.0f calibration rows.\n", num(g, "calibration_rows"));
	/* our own texts only (never the file's): crossfit's caveat, or the rule's proven statement */
	const struct tr_rule *rr = tr_rule_find(rule);
	if (json_is_string(json_object_get(g, "calibration")) && strcmp(str(g, "calibration"), "crossfit") == 0)
		tr_buf_printf(&s->prose, "**No formal guarantee** (crossfit calibration): %s.\n", tr_crossfit_caveat);
	else if (rr && rr->guarantee && json_is_string(json_object_get(g, "calibration")) &&
		 strcmp(str(g, "calibration"), "oof") == 0)
		tr_buf_printf(&s->prose, "Proven (oof calibration): %s.\n", tr_oof_guarantee);
	else if (rr && rr->guarantee)
		tr_buf_printf(&s->prose, "Proven: %s.\n", rr->guarantee);
	else
		tr_buf_puts(&s->prose, "No formal guarantee: this rule is only measured (PAPER.md, honesty study).\n");
	if (strcmp(family, "refused") == 0) {
		tr_buf_puts(&s->prose, "**Refused**: no family clears the gate; every input goes to the teacher.\n");
		json_t *m = json_object_get(g, "nearest_miss");
		if (json_is_object(m)) {
			char *t = threshold_text(m, "threshold");
			tr_buf_printf(&s->prose,
				      "Nearest miss: %s at threshold %s accepted %.0f calibration rows, %.0f agreeing "
				      "(agreement %.4f); %.0f more agreeing rows would have passed the rule.\n",
				      str(m, "family"), t, num(m, "n"), num(m, "k"), num(m, "agreement"),
				      num(m, "extra_agreeing_needed"));
			tr_free(t);
		} else {
			double examined = 0;
			size_t k;
			json_t *x;
			json_array_foreach(json_object_get(g, "families"), k, x)
				examined += isnan(num(x, "thresholds_examined")) ? 0 : num(x, "thresholds_examined");
			tr_buf_puts(&s->prose, examined > 0 ? "Nearest miss: no examined threshold could pass even if all its rows agreed.\n"
							    : "No threshold was tested on calibration rows: each family's reason below "
							      "says why.\n");
		}
	} else {
		char *t1 = threshold_text(dep, "stage1_threshold");
		tr_buf_printf(&s->prose,
			      "**Deployed: %s** at stage-1 threshold %s: %.0f of the calibration rows accepted, %.0f "
			      "agreeing (agreement %.4f, coverage %.4f).\n",
			      family, t1, num(dep, "n"), num(dep, "k"), num(dep, "calibration_agreement"),
			      num(dep, "calibration_coverage"));
		tr_free(t1);
	}
	s->ncol = 4;
	s->head[0] = "family", s->head[1] = "status", s->head[2] = "reason", s->head[3] = "thresholds examined";
	json_array_foreach(json_object_get(g, "families"), i, f)
	{
		char *c[4] = {tr_strdup(str(f, "family")), tr_strdup(str(f, "status")), tr_strdup(str(f, "reason")),
			      fmt_num(num(f, "thresholds_examined"), "%.0f")};
		add_row(s, c);
	}

	json_t *sum = json_object_get(rep, "traffic_summary");
	s = &S[n++];
	snprintf(s->title, sizeof s->title, "Traffic");
	/* the traffic's name is user data: it appears in the header, escaped per format, never in prose */
	tr_buf_printf(&s->prose, "The audited traffic: %.0f rows, coverage %.4f, agreement with the teacher on handled %s, "
				 "%.0f deferred by the OOD guard.\n", num(sum, "n"), num(sum, "coverage"),
		      isnan(num(sum, "agreement_handled")) ? "—" : "", num(sum, "ood_deferred"));
	if (!isnan(num(sum, "agreement_handled"))) {
		tr_buf_free(&s->prose);
		tr_buf_printf(&s->prose, "The audited traffic: %.0f rows, coverage %.4f, agreement with the teacher on "
					 "handled %.4f, %.0f deferred by the OOD guard.\n", num(sum, "n"),
			      num(sum, "coverage"), num(sum, "agreement_handled"), num(sum, "ood_deferred"));
	}

	s = &S[n++];
	snprintf(s->title, sizeof s->title, "Per teacher label (most handled first)");
	s->chart = LABEL_CHART;
	if (strcmp(family, "refused") == 0)
		tr_buf_puts(&s->prose, "The policy is refused, so nothing is handled and every label's handled share is 0 (no "
				       "chart): *Gate decision* above says why no threshold passed.\n");
	s->ncol = 5;
	s->head[0] = "label", s->head[1] = "traces", s->head[2] = "handled share", s->head[3] = "agreement on handled",
	s->head[4] = "deferred share";
	json_array_foreach(json_object_get(rep, "per_label"), i, f)
	{
		char *c[5] = {tr_strdup(str(f, "label")), fmt_num(num(f, "traces"), "%.0f"),
			      fmt_num(num(f, "handled_share"), "%.3f"), fmt_num(num(f, "agreement_handled"), "%.3f"),
			      fmt_num(num(f, "deferred_share"), "%.3f")};
		add_row(s, c);
	}
	s->elided_after = 1;

	s = &S[n++];
	snprintf(s->title, sizeof s->title, "By input length (characters)");
	s->ncol = 5;
	s->head[0] = "tercile", s->head[1] = "up to", s->head[2] = "rows", s->head[3] = "handled share",
	s->head[4] = "agreement on handled";
	json_array_foreach(json_object_get(rep, "length_terciles"), i, f)
	{
		char *c[5] = {tr_strdup(str(f, "name")), fmt_num(num(f, "max_chars"), "%.0f"), fmt_num(num(f, "n"), "%.0f"),
			      fmt_num(num(f, "handled_share"), "%.3f"), fmt_num(num(f, "agreement_handled"), "%.3f")};
		add_row(s, c);
	}

	s = &S[n++];
	snprintf(s->title, sizeof s->title, "Why it defers: confusions among deferred rows");
	tr_buf_puts(&s->prose, "Teacher label against the surrogate's most probable label, over deferred rows where they differ.\n");
	s->ncol = 3;
	s->head[0] = "teacher label", s->head[1] = "surrogate's top-1", s->head[2] = "deferred rows";
	json_array_foreach(json_object_get(rep, "confusions_deferred"), i, f)
	{
		char *c[3] = {tr_strdup(str(f, "teacher")), tr_strdup(str(f, "top1")), fmt_num(num(f, "count"), "%.0f")};
		add_row(s, c);
	}

	s = &S[n++];
	snprintf(s->title, sizeof s->title, "Boundary pairs (most deferred labels)");
	tr_buf_puts(&s->prose, "The handled row with the lowest acceptor score and the deferred row with the highest.\n");
	s->ncol = 4;
	s->head[0] = "label", s->head[1] = "deferred share", s->head[2] = "handled (score)", s->head[3] = "deferred (score)";
	json_array_foreach(json_object_get(rep, "boundary"), i, f)
	{
		char *c[4] = {tr_strdup(str(f, "label")), fmt_num(num(f, "deferred_share"), "%.3f"), NULL, NULL};
		for (int k = 0; k < 2; k++) {
			json_t *x = json_object_get(f, k ? "deferred" : "handled");
			struct tr_buf b = {0};
			if (json_is_object(x))
				tr_buf_printf(&b, "%s (%.3f)", str(x, "input"), num(x, "score"));
			else
				tr_buf_puts(&b, "—");
			c[2 + k] = b.data;
		}
		add_row(s, c);
	}

	s = &S[n++];
	snprintf(s->title, sizeof s->title, "Representative inputs");
	tr_buf_puts(&s->prose, json_string_value(json_object_get(rep, "representatives_note"))
				       ? json_string_value(json_object_get(rep, "representatives_note"))
				       : "Nearest to the centroid (tf-idf) of the label's handled rows and of its deferred rows.");
	tr_buf_puts(&s->prose, "\n");
	s->ncol = 3;
	s->head[0] = "label", s->head[1] = "handled", s->head[2] = "deferred";
	json_array_foreach(json_object_get(rep, "representatives"), i, f)
	{
		char *c[3] = {tr_strdup(str(f, "label")), tr_strdup(str(f, "handled")), tr_strdup(str(f, "deferred"))};
		add_row(s, c);
	}

	json_t *cost = json_object_get(rep, "cost");
	s = &S[n++];
	snprintf(s->title, sizeof s->title, "Cost projection");
	tr_buf_printf(&s->prose,
		      "At %.0f queries a day and $%.4f per LLM call (coverage measured on the audited traffic): %.0f "
		      "calls and $%.2f a day without the policy, %.0f calls and $%.2f with it.\n",
		      num(cost, "queries_per_day"), num(cost, "cost_per_call"), num(cost, "calls_without"),
		      num(cost, "cost_without"), num(cost, "calls_with"), num(cost, "cost_with"));
	json_t *mon = json_object_get(rep, "monitor");
	if (json_is_object(mon)) {
		s = &S[n++];
		snprintf(s->title, sizeof s->title, "Drift monitor");
		tr_buf_printf(&s->prose, "Monitor `%s` of agreement on handled ≥ %.2f at level δ_m = %.2f, audit rate %.3f: "
					 "%.0f audits, %.0f agreeing; ln W = %.4f (the gate closes at %.4f); anytime-valid upper "
					 "bound on agreement %.3f.\n",
			      str(mon, "method"), num(mon, "alpha"), num(mon, "delta"), num(mon, "audit_rate"),
			      num(mon, "audits"), num(mon, "agree"), num(mon, "stat"), num(mon, "threshold"), num(mon, "upper"));
		json_t *c = json_object_get(mon, "closing");
		if (json_is_true(json_object_get(mon, "closed")))
			tr_buf_printf(&s->prose, "**Gate closed** after %.0f audits (%.0f agreeing, ln W = %.4f): every input goes "
						 "to the teacher until the policy is refitted.\n",
				      num(c, "audits"), num(c, "agree"), num(c, "stat"));
		else
			tr_buf_puts(&s->prose, "Gate open.\n");
		s->ncol = 4;
		s->head[0] = "audits", s->head[1] = "agreeing", s->head[2] = "ln W", s->head[3] = "upper bound";
		json_t *p;
		json_array_foreach(json_object_get(mon, "history"), i, p)
		{
			char *cc[4] = {fmt_num(num(p, "audits"), "%.0f"), fmt_num(num(p, "agree"), "%.0f"),
				       fmt_num(num(p, "stat"), "%.4f"), fmt_num(num(p, "upper"), "%.3f")};
			add_row(s, cc);
		}
	}
	return n;
}

/* ---- Markdown ---- */

/* A table cell: pipes and line breaks always escaped; for files also what Markdown would render (HTML). */
static void md_cell(struct tr_buf *b, const char *s, int terminal)
{
	for (; *s; s++) {
		if (*s == '|' || (!terminal && (*s == '\\' || *s == '*' || *s == '`')))
			tr_buf_add(b, "\\", 1), tr_buf_add(b, s, 1);
		else if (terminal && *s != '\n' && *s != '\r' && *s != '\t')
			tr_buf_add(b, s, 1);
		else if (*s == '<')
			tr_buf_puts(b, "&lt;");
		else if (*s == '>')
			tr_buf_puts(b, "&gt;");
		else if (*s == '&')
			tr_buf_puts(b, "&amp;");
		else if (*s == '\n' || *s == '\r' || *s == '\t')
			tr_buf_add(b, " ", 1);
		else
			tr_buf_add(b, s, 1);
	}
}

int tr_audit_markdown(const struct json_t *report, int terminal, int top, struct tr_buf *out)
{
	struct section S[12];
	memset(S, 0, sizeof S);
	int n = build((json_t *)report, S);
	const char *names[2] = {str((json_t *)report, "policy"), str((json_t *)report, "traffic")};
	for (int k = 0; k < 2; k++) {
		tr_buf_puts(out, k ? "Traffic: " : "# Audit of ");
		if (terminal)
			tr_buf_puts(out, names[k]);
		else
			tr_buf_md_escape(out, names[k]);
		tr_buf_puts(out, "\n\n");
	}
	for (int i = 0; i < n; i++) {
		const struct section *s = &S[i];
		if (terminal && s->file_only)
			continue;
		tr_buf_printf(out, "## %s\n\n", s->title);
		if (s->prose.data)
			tr_buf_printf(out, "%s\n", s->prose.data);
		if (!s->ncol)
			continue;
		if (!s->nrows) {
			tr_buf_puts(out, "*(none)*\n\n");
			continue;
		}
		tr_buf_puts(out, "|");
		for (int c = 0; c < s->ncol; c++)
			tr_buf_printf(out, " %s |", s->head[c]);
		tr_buf_puts(out, "\n|");
		for (int c = 0; c < s->ncol; c++)
			tr_buf_puts(out, "---|");
		tr_buf_puts(out, "\n");
		for (size_t r = 0; r < s->nrows; r++) {
			if (terminal && s->elided_after && s->nrows > 2 * (size_t)top && r >= (size_t)top &&
			    r < s->nrows - (size_t)top) {
				if (r == (size_t)top)
					tr_buf_printf(out, "| … %zu more labels … |\n", s->nrows - 2 * (size_t)top);
				continue;
			}
			tr_buf_puts(out, "|");
			for (int c = 0; c < s->ncol; c++) {
				tr_buf_puts(out, " ");
				md_cell(out, s->cells[r * (size_t)s->ncol + (size_t)c], terminal);
				tr_buf_puts(out, " |");
			}
			tr_buf_puts(out, "\n");
		}
		tr_buf_puts(out, "\n");
	}
	free_sections(S, n);
	return out->data ? 0 : -1;
}

/* ---- HTML ---- */

static void html_text(struct tr_buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': tr_buf_puts(b, "&lt;"); break;
		case '>': tr_buf_puts(b, "&gt;"); break;
		case '&': tr_buf_puts(b, "&amp;"); break;
		case '"': tr_buf_puts(b, "&quot;"); break;
		case '\'': tr_buf_puts(b, "&#39;"); break;
		default: tr_buf_add(b, s, 1);
		}
	}
}

/* Prose is our own Markdown-ish text: escape it, then turn **x** into <strong>x</strong>, *x* into <em>x</em>
 * and `x` into <code>x</code> (nothing is interpreted inside code). */
static void html_prose(struct tr_buf *b, const char *s)
{
	struct tr_buf esc = {0};
	html_text(&esc, s);
	int open = 0, em = 0, code = 0;
	for (const char *p = esc.data ? esc.data : ""; *p; p++) {
		if (*p == '`') {
			tr_buf_puts(b, code ? "</code>" : "<code>");
			code = !code;
		} else if (code) {
			tr_buf_add(b, p, 1);
		} else if (p[0] == '*' && p[1] == '*') {
			tr_buf_puts(b, open ? "</strong>" : "<strong>");
			open = !open;
			p++;
		} else if (*p == '*') {
			tr_buf_puts(b, em ? "</em>" : "<em>");
			em = !em;
		} else if (*p == '\n') {
			tr_buf_puts(b, "<br>\n");
		} else {
			tr_buf_add(b, p, 1);
		}
	}
	if (code)
		tr_buf_puts(b, "</code>");
	if (em)
		tr_buf_puts(b, "</em>");
	if (open)
		tr_buf_puts(b, "</strong>");
	tr_buf_free(&esc);
}

/* A PNG file as an <img> with a data URI (no external assets). */
static int embed_png(struct tr_buf *out, const char *path, const char *caption, struct tr_err *e)
{
	char *png;
	size_t len;
	if (tr_read_file(path, &png, &len, e))
		return -1;
	char *b64 = tr_malloc(BASE64_ENCODE_RAW_LENGTH(len) + 1);
	if (!b64) {
		tr_free(png);
		return tr_fail(e, "out of memory");
	}
	base64_encode_raw(b64, len, (const uint8_t *)png);
	b64[BASE64_ENCODE_RAW_LENGTH(len)] = 0;
	tr_buf_puts(out, "<figure><img alt=\"chart\" src=\"data:image/png;base64,");
	tr_buf_puts(out, b64);
	tr_buf_puts(out, "\"><figcaption>");
	html_text(out, caption);
	tr_buf_puts(out, "</figcaption></figure>\n");
	tr_free(b64), tr_free(png);
	return 0;
}

int tr_audit_html(const struct json_t *report, const char *walk_png, const char *label_png, struct tr_buf *out,
		  struct tr_err *e)
{
	struct section S[12];
	memset(S, 0, sizeof S);
	int n = build((json_t *)report, S);
	const char *policy = json_string_value(json_object_get((json_t *)report, "policy"));
	tr_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>Audit of ");
	html_text(out, policy ? policy : "");
	tr_buf_puts(out, "</title>\n<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
			 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
			 "text-align:left;vertical-align:top}th{background:#f0f0f0}img{max-width:100%}code{background:#f3f3f3;"
			 "padding:0 3px}figure{margin:1em 0}figcaption{color:#555;font-size:90%}</style>\n"
			 "</head><body>\n<h1>Audit of ");
	html_text(out, policy ? policy : "");
	tr_buf_puts(out, "</h1>\n<p>Traffic: ");
	html_text(out, str((json_t *)report, "traffic"));
	tr_buf_puts(out, "</p>\n");
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const struct section *s = &S[i];
		tr_buf_puts(out, "<h2>");
		html_text(out, s->title);
		tr_buf_puts(out, "</h2>\n<p>");
		if (s->prose.data)
			html_prose(out, s->prose.data);
		tr_buf_puts(out, "</p>\n");
		if (s->chart == WALK_CHART && walk_png && !rc)
			rc = embed_png(out, walk_png, "The gate's walk: every threshold examined, its calibration coverage and "
						      "the rule's statistic, the bound it had to meet (dashed), the deployed "
						      "threshold and where each walk stopped", e);
		if (s->chart == LABEL_CHART && label_png && !rc)
			rc = embed_png(out, label_png, "Handled share per teacher label on the audited traffic", e);
		if (!s->ncol)
			continue;
		if (!s->nrows) {
			tr_buf_puts(out, "<p><em>(none)</em></p>\n");
			continue;
		}
		tr_buf_puts(out, "<table>\n<tr>");
		for (int c = 0; c < s->ncol; c++) {
			tr_buf_puts(out, "<th>");
			html_text(out, s->head[c]);
			tr_buf_puts(out, "</th>");
		}
		tr_buf_puts(out, "</tr>\n");
		for (size_t r = 0; r < s->nrows; r++) {
			tr_buf_puts(out, "<tr>");
			for (int c = 0; c < s->ncol; c++) {
				tr_buf_puts(out, "<td>");
				html_text(out, s->cells[r * (size_t)s->ncol + (size_t)c]);
				tr_buf_puts(out, "</td>");
			}
			tr_buf_puts(out, "</tr>\n");
		}
		tr_buf_puts(out, "</table>\n");
	}
	tr_buf_puts(out, "</body></html>\n");
	free_sections(S, n);
	return rc;
}

/* ---- plateaus ---- */

/* The plateau table as sections: label, share at each count, last delta, plateau flag. */
static int plateau_table(json_t *rep, struct tr_buf *md, struct tr_buf *html)
{
	json_t *counts = json_object_get(rep, "trace_counts");
	size_t nc = json_array_size(counts), i, k;
	json_t *l, *c;
	if (md) {
		tr_buf_puts(md, "# Plateaus over trace count: ");
		tr_buf_md_escape(md, str(rep, "set"));
		tr_buf_printf(md, " (%s, target %.2f)\n\n", str(rep, "rule"), num(rep, "target"));
		tr_buf_puts(md, "Handled share of each teacher label on the same test traffic, as the policy is fitted on more "
				"traces; a label has *stopped improving* when the last step gained under 1 pp while it is "
				"still under 95% handled.\n\n| label |");
		json_array_foreach(counts, k, c)
			tr_buf_printf(md, " %lld |", (long long)json_integer_value(c));
		tr_buf_puts(md, " last gain | stopped improving |\n|---|");
		for (k = 0; k < nc + 2; k++)
			tr_buf_puts(md, "---|");
		tr_buf_puts(md, "\n| *all labels (coverage)* |");
		json_array_foreach(json_object_get(rep, "coverage"), k, c)
			tr_buf_printf(md, " %.3f |", json_number_value(c));
		tr_buf_puts(md, " | |\n");
	} else {
		tr_buf_puts(html, "<table>\n<tr><th>label</th>");
		json_array_foreach(counts, k, c)
			tr_buf_printf(html, "<th>%lld</th>", (long long)json_integer_value(c));
		tr_buf_puts(html, "<th>last gain</th><th>stopped improving</th></tr>\n");
	}
	json_array_foreach(json_object_get(rep, "labels"), i, l)
	{
		struct tr_buf *b = md ? md : html;
		json_t *sh = json_object_get(l, "handled_share"), *d = json_object_get(l, "deltas");
		double last = json_array_size(d) ? json_number_value(json_array_get(d, json_array_size(d) - 1)) : NAN;
		tr_buf_puts(b, md ? "| " : "<tr><td>");
		if (md)
			md_cell(b, str(l, "label"), 0);
		else
			html_text(b, str(l, "label"));
		tr_buf_puts(b, md ? " |" : "</td>");
		json_array_foreach(sh, k, c)
		{
			if (json_is_number(c))
				tr_buf_printf(b, md ? " %.3f |" : "<td>%.3f</td>", json_number_value(c));
			else
				tr_buf_puts(b, md ? " — |" : "<td>—</td>");
		}
		if (isnan(last))
			tr_buf_puts(b, md ? " — |" : "<td>—</td>");
		else
			tr_buf_printf(b, md ? " %+.3f |" : "<td>%+.3f</td>", last);
		tr_buf_puts(b, json_is_true(json_object_get(l, "plateau")) ? (md ? " yes |\n" : "<td>yes</td></tr>\n")
									 : (md ? " |\n" : "<td></td></tr>\n"));
	}
	if (html)
		tr_buf_puts(html, "</table>\n");
	return 0;
}

int tr_plateau_markdown(const struct json_t *report, struct tr_buf *out)
{
	json_t *rep = (json_t *)report;
	plateau_table(rep, out, NULL);
	tr_buf_printf(out, "\n%zu labels stopped improving.\n", json_array_size(json_object_get(rep, "plateaued")));
	return out->data ? 0 : -1;
}

int tr_plateau_html(const struct json_t *report, const char *chart, struct tr_buf *out, struct tr_err *e)
{
	json_t *rep = (json_t *)report;
	tr_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Plateaus</title>\n"
			 "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:"
			 "collapse}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>\n<h1>");
	tr_buf_puts(out, "Plateaus over trace count: ");
	html_text(out, str(rep, "set"));
	tr_buf_puts(out, "</h1>\n");
	if (chart && embed_png(out, chart, "coverage vs traces used for fitting", e))
		return -1;
	plateau_table(rep, NULL, out);
	tr_buf_puts(out, "</body></html>\n");
	return 0;
}
