/*
 * cmd_scan.c - `tracer scan TRACES`: a first read of a trace file before a full fit: rows, labels, duplicates,
 * input lengths, the surrogate's held-out (and, with --cv, cross-validated) agreement with the teacher, and the calibration coverage each gate
 * rule gives at the default targets. The coverage comes from the fit's own steps (tr_fit_new, tr_fit_gate)
 * on a reduced problem (one grid point, capped rows, no OOD guard), so it is the gate `fit` runs, cheaper.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../gate/gate.h"
#include "cli.h"

const char cmd_scan_usage[] =
	"usage: tracer scan TRACES|DATASET:TEACHER [--cap N] [--grid SPEC] [--backend {backends}] [--seed N]\n"
	"           [--calibration oof|holdout|crossfit] [--cv K] [--quiet]\n"
	"  A first read of a trace set in seconds: rows, labels and their counts, duplicated inputs (and those\n"
	"  whose teacher answers differ), input lengths, the surrogate's agreement with the teacher on the\n"
	"  held-out calibration rows (with --cv K also K-fold cross-validated, tf-idf and surrogate refitted\n"
	"  per fold: K more trainings), and for every gate rule ({rules}) the calibration coverage and\n"
	"  statistic it would deploy at the default targets. Cheaper than `fit`: one grid point (default C=10\n"
	"  for liblinear, else the family's defaults), at most --cap traces (default 4000), no OOD guard; the\n"
	"  estimates are the gate's own on that reduced fit (calibration rows only, no test traffic).\n"
	"  --calibration as in `fit`, with its default (oof: the fit part's out-of-fold probabilities, the\n"
	"  deployed policy tested on the calibration part; 6 trainings instead of holdout's one).\n"
	"  Progress on stderr (phase, counts, elapsed time; redrawn in place on a terminal); --quiet silences it.\n";

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

static const struct tr_trace *g_rows;
static int cmp_text(const void *a, const void *b)
{
	const struct tr_trace *x = &g_rows[*(const size_t *)a], *y = &g_rows[*(const size_t *)b];
	int c = strcmp(x->input, y->input);
	if (c)
		return c;
	c = strcmp(x->input_b ? x->input_b : "", y->input_b ? y->input_b : "");
	return c ? c : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

static int same_text(const struct tr_trace *x, const struct tr_trace *y)
{
	return strcmp(x->input, y->input) == 0 && strcmp(x->input_b ? x->input_b : "", y->input_b ? y->input_b : "") == 0;
}

struct lab {
	size_t n;
	int i;
};
static int cmp_lab(const void *a, const void *b)
{
	const struct lab *x = a, *y = b;
	return x->n != y->n ? (x->n < y->n) - (x->n > y->n) : x->i - y->i;
}

/* Rows, labels, duplicates, lengths: what needs no model. */
static int describe(const struct tr_traceset *ts, struct tr_err *e)
{
	const struct tr_rows *r = &ts->part[TR_PART_TRACES];
	size_t n = r->n;
	int K = ts->labels.n;
	struct lab *lab = tr_calloc((size_t)K, sizeof *lab);
	size_t *len = tr_calloc(n, sizeof *len), *ord = tr_calloc(n, sizeof *ord);
	if (!lab || !len || !ord) {
		tr_free(lab), tr_free(len), tr_free(ord);
		return tr_fail(e, "out of memory");
	}
	for (int k = 0; k < K; k++)
		lab[k].i = k;
	for (size_t i = 0; i < n; i++) {
		if (r->v[i].teacher >= 0)
			lab[r->v[i].teacher].n++;
		len[i] = strlen(r->v[i].input) + (r->v[i].input_b ? strlen(r->v[i].input_b) : 0);
		ord[i] = i;
	}
	printf("traces             %zu rows%s (%s)\n", n, ts->pairs ? " of input pairs" : "", ts->name);
	if (ts->part[TR_PART_TEST].n)
		printf("test part          %zu rows (not scanned)\n", ts->part[TR_PART_TEST].n);
	if (ts->n_invalid)
		printf("invalid answers    %zu teacher answers that are not a label (not counted as traces)\n", ts->n_invalid);
	qsort(lab, (size_t)K, sizeof *lab, cmp_lab);
	/* the teacher's labels only: a label seen only in ground_truth is never an answer */
	int all = K;
	while (K > 0 && lab[K - 1].n == 0)
		K--;
	size_t single = 0;
	for (int k = 0; k < K; k++)
		single += lab[k].n == 1;
	printf("labels             %d teacher labels (largest %zu rows, smallest %zu; %zu with a single row)", K,
	       K ? lab[0].n : 0, K ? lab[K - 1].n : 0, single);
	if (all > K)
		printf("; %d more seen only in ground_truth", all - K);
	putchar('\n');
	for (int k = 0; k < K && k < 5; k++)
		printf("  %-30s %6zu  %5.1f%%\n", ts->labels.names[lab[k].i], lab[k].n, 100.0 * (double)lab[k].n / (double)n);
	if (K > 10)
		printf("  ...\n");
	for (int k = K > 10 ? K - 5 : 5; k < K; k++)
		printf("  %-30s %6zu  %5.1f%%\n", ts->labels.names[lab[k].i], lab[k].n, 100.0 * (double)lab[k].n / (double)n);
	g_rows = r->v;
	qsort(ord, n, sizeof *ord, cmp_text);
	size_t dup = 0, groups = 0, conflict = 0;
	for (size_t i = 1, start = 0; i <= n; i++) {
		if (i < n && same_text(&r->v[ord[i]], &r->v[ord[start]]))
			continue;
		if (i - start > 1) {
			groups++, dup += i - start - 1;
			for (size_t j = start + 1; j < i; j++)
				if (r->v[ord[j]].teacher != r->v[ord[start]].teacher) {
					conflict++;
					break;
				}
		}
		start = i;
	}
	printf("duplicates         %zu rows repeat an earlier input (%zu distinct inputs; %zu of them with differing "
	       "teacher answers)\n",
	       dup, groups, conflict);
	qsort(len, n, sizeof *len, cmp_size);
	if (n)
		printf("input length       characters: min %zu, median %zu, 90%% %zu, 99%% %zu, max %zu\n", len[0], len[n / 2],
		       len[(size_t)(0.9 * (double)(n - 1))], len[(size_t)(0.99 * (double)(n - 1))], len[n - 1]);
	tr_free(lab), tr_free(len), tr_free(ord);
	return 0;
}

/*
 * K-fold cross-validated agreement of the surrogate with the teacher: folds from tr_split_traces (per
 * teacher label, group keys together) over at most `cap` traces (every n/cap-th); on each fold tf-idf and
 * the surrogate (one grid point) are fitted on the other folds only. *agree and *n count the held-out rows.
 */
#define SCAN_MAX_FOLDS 10
static int cv_agreement(const struct tr_traceset *ts, const struct tr_fit_options *o, int folds, size_t *agree,
			size_t *n, struct tr_err *e)
{
	const struct tr_rows *r = &ts->part[TR_PART_TRACES];
	size_t m = o->cap && r->n > o->cap ? o->cap : r->n;
	size_t *idx = tr_calloc(m, sizeof *idx), *tr = tr_calloc(m, sizeof *tr), *te = tr_calloc(m, sizeof *te);
	int *part = tr_calloc(m, sizeof *part), *y = tr_calloc(m, sizeof *y), *pred = tr_calloc(m, sizeof *pred);
	int K = ts->labels.n, rc = 0;
	*agree = *n = 0;
	if (!idx || !tr || !te || !part || !y || !pred)
		rc = tr_fail(e, "out of memory");
	for (size_t i = 0; !rc && i < m; i++)
		idx[i] = (size_t)((double)i * (double)r->n / (double)m);
	double frac[SCAN_MAX_FOLDS];
	for (int f = 0; f < folds; f++)
		frac[f] = 1.0 / folds;
	if (!rc)
		rc = tr_split_traces(r->v, idx, m, frac, folds, o->seed, 0, part, e);
	const struct tr_family *fam = tr_family_find(o->backend);
	struct tr_grid g;
	if (!rc)
		rc = tr_grid_parse(fam, o->grid, &g, e);
	for (int f = 0; !rc && f < folds; f++) {
		tr_progress_step(o->progress, (size_t)f, (size_t)folds);
		size_t ntr = 0, nte = 0;
		for (size_t i = 0; i < m; i++) {
			if (part[i] == f)
				te[nte++] = idx[i];
			else
				y[ntr] = r->v[idx[i]].teacher, tr[ntr++] = idx[i];
		}
		if (!ntr || !nte)
			continue;
		struct tr_tfidf_params tp = TR_TFIDF_DEFAULTS;
		struct tr_featurizer *fz = NULL;
		struct tr_feats Xt = {0}, Xe = {0}, none = {0};
		struct tr_surrogate *s = NULL;
		double *proba = NULL;
		rc = tr_feat_fit_tfidf(r->v, tr, ntr, &tp, &fz, e) || tr_feat_transform_text(fz, r->v, tr, ntr, &Xt, e) ||
		     tr_feat_transform_text(fz, r->v, te, nte, &Xe, e) ||
		     tr_surrogate_fit(fam, &g, &Xt, y, &none, NULL, K, o->seed, 0, &s, NULL, NULL, e);
		if (!rc && !(proba = tr_malloc(nte * (size_t)K * sizeof *proba)))
			rc = tr_fail(e, "out of memory");
		if (!rc)
			rc = tr_surrogate_predict(s, &Xe, proba, e);
		if (!rc) {
			tr_argmax_rows(proba, nte, K, pred);
			for (size_t i = 0; i < nte; i++)
				*agree += pred[i] == r->v[te[i]].teacher;
			*n += nte;
		}
		tr_free(proba);
		tr_surrogate_free(s);
		tr_feats_free(&Xt), tr_feats_free(&Xe);
		tr_featurizer_free(fz);
	}
	tr_free(idx), tr_free(tr), tr_free(te), tr_free(part), tr_free(y), tr_free(pred);
	return rc;
}

int cmd_scan(int argc, char **argv)
{
	struct tr_fit_options o = {.backend = "liblinear", .rule = &tr_rule_ltt, .target = 0.95, .delta = 0.10,
				   .cap = 4000, .ood = 0, .oof = 1};
	static const double defaults[] = TR_DEFAULT_TARGETS;
	o.n_targets = (int)(sizeof defaults / sizeof *defaults);
	memcpy(o.targets, defaults, sizeof defaults);
	const char *set = NULL;
	unsigned long long u;
	int folds = 0, quiet = 0;
	struct tr_args a = {.verb = "scan", .spec = "--cap= --seed= --cv= --grid= --backend= --calibration= --quiet", .pos = (const char **[]){&set}, .n_pos = 1};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		const char *v = a.val;
		if (tr_args_is(&a, "--cap")) {
			if (tr_cli_count(v, &u))
				return tr_cli_usage_error("scan", "bad cap \"%s\"", v);
			o.cap = (size_t)u;
		} else if (tr_args_is(&a, "--seed")) {
			if (tr_cli_count(v, &u))
				return tr_cli_usage_error("scan", "bad seed \"%s\"", v);
			o.seed = u;
		} else if (tr_args_is(&a, "--cv")) {
			if (tr_cli_count(v, &u) || u < 2 || u > SCAN_MAX_FOLDS)
				return tr_cli_usage_error("scan", "--cv takes 2 to %d folds, got \"%s\"", SCAN_MAX_FOLDS, v);
			folds = (int)u;
		} else if (tr_args_is(&a, "--calibration")) {
			if (tr_cli_calibration("scan", v, &o))
				return TR_EXIT_USAGE;
		} else if (tr_args_is(&a, "--grid"))
			o.grid = v;
		else if (tr_args_is(&a, "--backend"))
			o.backend = v;
		else if (tr_args_is(&a, "--quiet"))
			quiet = 1;
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!set)
		return tr_cli_usage_error("scan", "expected traces");
	if (!tr_family_find(o.backend))
		return tr_cli_usage_error("scan", "--backend must be liblinear, libsvm or knn");
	if (!o.grid && strcmp(o.backend, "liblinear") == 0)
		o.grid = "C=10";
	struct tr_err e;
	struct tr_traceset ts;
	if (tr_traceset_open(set, &ts, &e))
		return tr_cli_data_error(&e);
	o.progress = tr_cli_progress("scan", quiet);
	int rc = describe(&ts, &e);
	fflush(stdout);
	struct tr_fit *f = NULL;
	if (!rc && folds) {
		size_t ka, na;
		tr_progress_phase(o.progress, "%d-fold cross-validation of the surrogate", folds);
		rc = cv_agreement(&ts, &o, folds, &ka, &na, &e);
		if (!rc && na)
			printf("cross-validated    agreement %.4f with the teacher (%d folds over %zu traces, %zu agree)\n",
			       (double)ka / (double)na, folds, na, ka);
		fflush(stdout);
	}
	if (!rc) {
		tr_progress_phase(o.progress, "one fit (%s, %s, at most %zu traces)", o.backend,
				  o.grid ? o.grid : "default grid", o.cap);
		rc = tr_fit_new(&ts, set, &o, &f, &e);
	}
	if (!rc) {
		struct tr_fit_info fi;
		tr_fit_info(f, &fi);
		/* the global family's view at accept-all: the surrogate's answers on the calibration rows */
		rc = tr_fit_gate(f, o.rule, &e);
		const struct tr_fam_result *g = rc ? NULL : tr_fit_result(f, 0, tr_pol_family_index(&tr_pol_global));
		size_t k = 0;
		for (size_t i = 0; g && g->v.agree && i < fi.calibration; i++)
			k += (size_t)g->v.agree[i];
		if (o.oof)
			printf("surrogate          %s, calibration oof: %zu fit-part rows (out of fold, %d folds) / %zu calibration "
			       "rows tested; fold 0's macro-F1 %.4f\n",
			       fi.backend->name, fi.train, o.folds ? o.folds : TR_CROSSFIT_FOLDS, fi.calibration, fi.val_f1);
		else
			printf("surrogate          %s, calibration %s: %zu train / %zu validation / %zu calibration rows; "
			       "validation macro-F1 %.4f\n",
			       fi.backend->name, tr_calibration_name(&o), fi.train, fi.validation, fi.calibration, fi.val_f1);
		if (g && g->v.agree && fi.calibration)
			printf("agreement          %.4f with the teacher on the %zu held-out calibration rows (%zu agree)\n",
			       (double)k / (double)fi.calibration, fi.calibration, k);
	}
	for (int ri = 0; !rc && ri < tr_rule_count(); ri++) {
		const struct tr_rule *rule = tr_rule_at(ri);
		if ((rc = tr_fit_gate(f, rule, &e)))
			break;
		const char *g = tr_fit_guarantee(&o, rule);
		printf("\ngate %s (%s%s)\n", rule->name, o.crossfit ? "no formal guarantee: " : "",
		       g ? g : "measured only, no guarantee");
		printf("  target  coverage  family  %-12s\n", rule->stat);
		for (int t = 0; t < o.n_targets; t++) {
			int best = tr_fit_best(f, t);
			if (best < 0) {
				printf("  %.2f    -         refused\n", o.targets[t]);
				continue;
			}
			const struct tr_fam_result *x = tr_fit_result(f, t, best);
			printf("  %.2f    %.4f    %-6s  %.4g\n", o.targets[t], x->r.coverage, tr_pol_family_at(best)->name,
			       x->r.stat);
		}
	}
	tr_cli_progress_end(o.progress, !rc);
	tr_fit_free(f);
	tr_traceset_free(&ts);
	return rc ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
