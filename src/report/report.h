/*
 * report.h - summaries of finished experiment cells: tables for the figures and PAPER.md.
 */
#ifndef TR_REPORT_H
#define TR_REPORT_H

#include "../exp/exp.h"

/* One table row: a (set, protocol, backend, trace count, rule, target) summed over the seeds. */
struct tr_agg {
	char spec[64], set[64], protocol[16], backend[16], rule[16];
	long traces;  /* -1 = all */
	double target;
	int seeds;
	double cov_sum, cov_min, cov_max;
	double agr_sum;
	int agr_n; /* seeds that handled something */
	int violations;
	double cal_cov_sum, e2e_sum, gold_sum;
	int gold_n;
	int fam[TR_REGISTRY_MAX + 1]; /* seeds that deployed: [0] refused, [1 + i] family i of the table */
	double cov_noood_sum, agr_noood_sum; /* the same routing without the OOD guard */
	int agr_noood_n, violations_noood;
	double fit_sum;
	int fit_n;
	double n_traces_sum; /* traces actually used */
	double gap_sum;	     /* over violating seeds: α minus the test agreement */
	char split[16];	     /* "default", or TRAIN/VAL/CAL percents (specs with a splits line) */
};

struct tr_table {
	struct tr_agg *v;
	size_t n, cap;
	size_t cells, missing;
};

/*
 * Reads the finished cells of a spec from RESULTS and adds them to t. Missing cells are counted in
 * t->missing and named on `missing_log` (may be NULL), one line each.
 */
int tr_table_add_spec(struct tr_table *t, const struct tr_spec *s, const char *results, FILE *missing_log,
		      struct tr_err *e);
/* Adds one cell file (path) of spec s, with its fit seconds from time_path when that file exists. */
int tr_table_add_cell(struct tr_table *t, const struct tr_spec *s, const struct tr_cell *c, const char *path,
		      const char *time_path, struct tr_err *e);
/* Writes the rows of spec `name` as TSV (header line first). */
int tr_table_write_tsv(const struct tr_table *t, const char *name, struct tr_buf *out);
/* The row for these keys, or NULL. spec may be NULL (any spec). */
const struct tr_agg *tr_table_find(const struct tr_table *t, const char *spec, const char *set, const char *protocol,
				   const char *backend, long traces, const char *rule, double target);
void tr_table_free(struct tr_table *t);

/* Rewrites the generated sections of PAPER.md (between <!-- BEGIN name --> and <!-- END name -->). */
int tr_paper_update(const struct tr_table *t, const char *paper_path, struct tr_err *e);

/* Replaces one generated section of PAPER.md (between its markers) with body, atomically. */
int tr_paper_splice_file(const char *paper_path, const char *name, const char *body, struct tr_err *e);

/*
 * The drift study (drift_report.c): reads RESULTS/drift/scenarios.tsv and the replay summaries it names,
 * writes RESULTS/tables/drift.tsv and drift-timeline.tsv and, with a paper path, PAPER.md's "drift"
 * section (which says the study was not run when RESULTS/drift holds nothing).
 */
int tr_drift_collect(const char *results, const char *paper, struct tr_err *e);

/* ---- the reviewer's audit (audit.c, audit_render.c) ---- */

struct tr_audit_opts {
	double queries; /* per day, for the cost projection */
	double cost;	/* dollars per LLM call */
	int top;	/* rows of each ranking shown */
};

/*
 * Audits a fitted policy on traffic `rows` (labels named by ts): the gate decision re-derived from
 * gate_audit.json (with the nearest miss of a refusal), where the surrogate handles and defers, and the
 * cost projection. Returns the report as JSON (owned by the caller); `decisions` receives the
 * routed decisions as JSONL ({"id","teacher","label","decision","score","top1","chars"}).
 */
int tr_audit_policy(const char *dir, const char *traffic, const struct tr_traceset *ts, const struct tr_rows *rows,
		    const double *emb, size_t emb_rows, int emb_dim, const struct tr_audit_opts *o, struct json_t **out,
		    struct tr_buf *decisions, struct tr_err *e);
/*
 * Plateaus over trace count from a sweep's cells: per label, the handled share at each trace count for
 * one set, rule and target (0.90 or 0.95), the deltas between consecutive counts, and the labels that
 * stopped improving. JSON out.
 */
int tr_audit_plateaus(const struct tr_spec *s, const char *results, const char *set, const char *rule,
		      double target, struct json_t **out, struct tr_err *e);
/* Markdown of an audit report (terminal: only the top and bottom `top` labels). */
int tr_audit_markdown(const struct json_t *report, int terminal, int top, struct tr_buf *out);
/*
 * A self-contained HTML page (all text escaped). walk_png (the gate's walk, under the gate decision) and
 * label_png (handled share per label) are PNG files embedded as data URIs; either may be NULL (not drawn).
 */
int tr_audit_html(const struct json_t *report, const char *walk_png, const char *label_png, struct tr_buf *out,
		  struct tr_err *e);

/* The plateau report as Markdown / HTML (escaped, self-contained; charts embedded like the audit's). */
int tr_plateau_markdown(const struct json_t *report, struct tr_buf *out);
int tr_plateau_html(const struct json_t *report, const char *chart, struct tr_buf *out, struct tr_err *e);

#endif
