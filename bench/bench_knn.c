/*
 * bench_knn.c - kNN prediction throughput on a trace set (tf-idf, k=10): trains on every trace, predicts
 * the test part REPS times and prints the median test inputs per second of this thread's CPU time (one
 * core; other work on the machine does not count against it). Prints: set, training rows, test rows,
 * inputs/s.
 */
#include <gsl/gsl_sort.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/surrogate/surrogate.h"

#define REPS 5

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *set = argc > 1 ? argv[1] : "banking77:gold";
	tr_gsl_init();
	struct tr_traceset ts;
	struct tr_err e;
	if (tr_traceset_open(set, &ts, &e)) {
		fprintf(stderr, "bench_knn: %s\n", e.msg);
		return 1;
	}
	const struct tr_rows *tr = &ts.part[TR_PART_TRACES], *te = &ts.part[TR_PART_TEST];
	size_t *idx = malloc((tr->n > te->n ? tr->n : te->n) * sizeof *idx);
	int *y = malloc(tr->n * sizeof *y);
	for (size_t i = 0; i < tr->n; i++)
		idx[i] = i, y[i] = tr->v[i].teacher < 0 ? 0 : tr->v[i].teacher;
	struct tr_tfidf_params p = TR_TFIDF_DEFAULTS;
	struct tr_featurizer *f;
	struct tr_feats X, T;
	void *model;
	double hp[TR_MAX_HP] = {10};
	int K = ts.labels.n;
	if (tr_feat_fit_tfidf(tr->v, idx, tr->n, &p, &f, &e) || tr_feat_transform_text(f, tr->v, idx, tr->n, &X, &e) ||
	    tr_family_knn.train(&X, y, K, hp, 0, &model, &e)) {
		fprintf(stderr, "bench_knn: %s\n", e.msg);
		return 1;
	}
	for (size_t i = 0; i < te->n; i++)
		idx[i] = i;
	if (tr_feat_transform_text(f, te->v, idx, te->n, &T, &e)) {
		fprintf(stderr, "bench_knn: %s\n", e.msg);
		return 1;
	}
	double *proba = malloc((te->n ? te->n : 1) * (size_t)K * sizeof *proba), rate[REPS];
	for (int k = 0; k < REPS; k++) {
		double t0 = cpu_now();
		if (tr_family_knn.predict(model, &T, proba, &e)) {
			fprintf(stderr, "bench_knn: %s\n", e.msg);
			return 1;
		}
		rate[k] = (double)te->n / (cpu_now() - t0);
	}
	gsl_sort(rate, 1, REPS);
	printf("%s\t%zu\t%zu\t%.0f\n", set, tr->n, te->n, rate[REPS / 2]);
	tr_family_knn.free(model);
	tr_feats_free(&X), tr_feats_free(&T);
	tr_featurizer_free(f);
	free(proba), free(idx), free(y);
	tr_traceset_free(&ts);
	return 0;
}
