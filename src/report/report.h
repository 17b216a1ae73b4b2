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
	int fam[4]; /* refused, global, l2d, rsb */
	double fit_sum;
	int fit_n;
	double n_traces_sum; /* traces actually used */
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
/* Writes the rows of spec `name` as TSV (header line first). */
int tr_table_write_tsv(const struct tr_table *t, const char *name, struct tr_buf *out);
/* The row for these keys, or NULL. spec may be NULL (any spec). */
const struct tr_agg *tr_table_find(const struct tr_table *t, const char *spec, const char *set, const char *protocol,
				   const char *backend, long traces, const char *rule, double target);
void tr_table_free(struct tr_table *t);

/* Rewrites the generated sections of PAPER.md (between <!-- BEGIN name --> and <!-- END name -->). */
int tr_paper_update(const struct tr_table *t, const char *paper_path, struct tr_err *e);

#endif
