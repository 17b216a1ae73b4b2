/*
 * bench_feat.c - tf-idf featurisation throughput on a trace set: fits once, then transforms every
 * trace REPS times and prints the median texts per second (one core).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/feat/feat.h"

#define REPS 5


static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	const char *set = argc > 1 ? argv[1] : "banking77:gold";
	tr_gsl_init(); /* one OpenBLAS thread, as in tracer */
	struct tr_traceset ts;
	struct tr_err e;
	if (tr_traceset_open(set, &ts, &e)) {
		fprintf(stderr, "bench_feat: %s\n", e.msg);
		return 1;
	}
	const struct tr_rows *r = &ts.part[TR_PART_TRACES];
	size_t *idx = malloc(r->n * sizeof *idx);
	for (size_t i = 0; i < r->n; i++)
		idx[i] = i;
	struct tr_tfidf_params p = TR_TFIDF_DEFAULTS;
	struct tr_featurizer *f;
	double t0 = tr_now();
	if (tr_feat_fit_tfidf(r->v, idx, r->n, &p, &f, &e)) {
		fprintf(stderr, "bench_feat: %s\n", e.msg);
		return 1;
	}
	double fit = tr_now() - t0, rate[REPS];
	for (int k = 0; k < REPS; k++) {
		struct tr_feats X;
		t0 = tr_now();
		tr_feat_transform_text(f, r->v, idx, r->n, &X, &e);
		rate[k] = (double)r->n / (tr_now() - t0);
		tr_feats_free(&X);
	}
	qsort(rate, REPS, sizeof *rate, cmp_d);
	printf("%s\t%zu\t%.3f\t%.0f\n", set, r->n, fit, rate[REPS / 2]);
	tr_featurizer_free(f);
	free(idx);
	tr_traceset_free(&ts);
	return 0;
}
