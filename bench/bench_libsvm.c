/*
 * bench_libsvm.c - a fitted libsvm policy (tf-idf) on a set's test part, predicted twice: by blocks of
 * rows (what tracer runs) and through libsvm's own svm_predict_probability one row at a time. Prints the
 * CPU seconds of each (process CPU time, median of REPS for the blocks, one run of libsvm's), how many
 * most-probable labels and routing decisions (handled or deferred, and the answer) differ, the largest
 * probability difference and an FNV-1a hash of the blocks' probabilities.
 */
#include <math.h>
#include <stdint.h>
#include <gsl/gsl_sort.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/gate/gate.h"

#define REPS 3

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_libsvm POLICY_DIR DATASET:TEACHER\n");
		return 2;
	}
	tr_gsl_init();
	struct tr_err e;
	struct tr_policy *p;
	struct tr_traceset ts;
	if (tr_policy_load(argv[1], &p, &e) || tr_traceset_open(argv[2], &ts, &e)) {
		fprintf(stderr, "bench_libsvm: %s\n", e.msg);
		return 1;
	}
	if (p->n_stages < 1 || strcmp(p->st[0].s->fam->name, "libsvm") != 0) {
		fprintf(stderr, "bench_libsvm: %s: not a deployed libsvm policy\n", argv[1]);
		return 1;
	}
	const struct tr_rows *r = &ts.part[TR_PART_TEST];
	size_t n = r->n, *idx = malloc(n * sizeof *idx);
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	const struct tr_surrogate *s = p->st[0].s;
	int K = s->K;
	struct tr_feats X;
	double *a = malloc(n * (size_t)K * sizeof *a), *b = malloc(n * (size_t)K * sizeof *b), t[REPS], t_kernel;
	int *la = malloc(n * sizeof *la), *lb = malloc(n * sizeof *lb);
	struct tr_decision *da = malloc(n * sizeof *da), *db = malloc(n * sizeof *db);
	if (tr_feat_transform_text(p->fz, r->v, idx, n, &X, &e)) {
		fprintf(stderr, "bench_libsvm: %s\n", e.msg);
		return 1;
	}
	for (int k = 0; k < REPS; k++) {
		double t0 = cpu_now();
		if (tr_surrogate_predict(s, &X, a, &e))
			return fprintf(stderr, "bench_libsvm: %s\n", e.msg), 1;
		t[k] = cpu_now() - t0;
	}
	gsl_sort(t, 1, REPS);
	tr_libsvm_kernel_predict = 1;
	double t0 = cpu_now();
	if (tr_surrogate_predict(s, &X, b, &e))
		return fprintf(stderr, "bench_libsvm: %s\n", e.msg), 1;
	t_kernel = cpu_now() - t0;
	if (tr_policy_route(p, r->v, idx, n, NULL, 0, 0, db, &e))
		return fprintf(stderr, "bench_libsvm: %s\n", e.msg), 1;
	tr_libsvm_kernel_predict = 0;
	if (tr_policy_route(p, r->v, idx, n, NULL, 0, 0, da, &e))
		return fprintf(stderr, "bench_libsvm: %s\n", e.msg), 1;
	double worst = 0;
	uint64_t hash = 1469598103934665603ull; /* FNV-1a of the probabilities' bytes */
	for (size_t i = 0; i < n * (size_t)K * sizeof *a; i++)
		hash = (hash ^ ((const unsigned char *)a)[i]) * 1099511628211ull;
	for (size_t i = 0; i < n * (size_t)K; i++)
		worst = fmax(worst, fabs(a[i] - b[i]));
	tr_argmax_rows(a, n, K, la), tr_argmax_rows(b, n, K, lb);
	size_t labels = 0, decisions = 0, handled_a = 0, handled_b = 0;
	for (size_t i = 0; i < n; i++) {
		labels += la[i] != lb[i];
		decisions += da[i].handled != db[i].handled || da[i].label != db[i].label;
		handled_a += (size_t)da[i].handled, handled_b += (size_t)db[i].handled;
	}
	printf("set\tinputs\tblocks_cpu_s\tblocks_inputs_per_s\tlibsvm_cpu_s\tlibsvm_inputs_per_s\t"
	       "labels_differ\tdecisions_differ\thandled_blocks\thandled_libsvm\tmax_proba_diff\tproba_fnv\n");
	printf("%s\t%zu\t%.3f\t%.0f\t%.3f\t%.0f\t%zu\t%zu\t%zu\t%zu\t%.3g\t%016llx\n", argv[2], n, t[REPS / 2],
	       (double)n / t[REPS / 2], t_kernel, (double)n / t_kernel, labels, decisions, handled_a, handled_b, worst, (unsigned long long)hash);
	tr_feats_free(&X);
	free(a), free(b), free(la), free(lb), free(da), free(db), free(idx);
	tr_policy_free(p);
	tr_traceset_free(&ts);
	return 0;
}
