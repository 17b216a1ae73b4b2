/*
 * bench_route.c - where `tracer route`'s CPU goes, phase by phase, on a policy and an input file:
 * parsing the lines (the trace reader's line parser), tf-idf featurisation, each stage's surrogate
 * prediction and acceptor, and the OOD guard, in batches of 256 as `route --batch 256` runs them.
 * Each phase is timed on this thread's CPU clock over the whole file, REPS times; the median per phase
 * is printed as microseconds per input (the decision lines' JSON and stdio are `tracer route`'s own and
 * are not here: perf shows them). Usage: bench_route POLICY_DIR INPUTS.jsonl [REPS].
 */
#include <gsl/gsl_sort.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/gate/gate.h"

#define BATCH 256
#define MAX_REPS 15

enum { P_PARSE, P_FEAT, P_PREDICT, P_ACCEPT, P_OOD, P_N };
static const char *const phase_name[P_N] = {"parse lines (jansson)", "tf-idf featurisation",
					    "surrogate predict (all stages)", "acceptor + decide", "OOD guard"};

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_route: %s\n", what);
	exit(1);
}

/* Reads every line of path as a route input (the trace reader's line rules). */
static struct tr_trace *read_inputs(const char *path, size_t *n, double *secs)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot open the input file");
	struct tr_trace *t = NULL;
	size_t cap = 0, lineno = 0;
	char *line = NULL;
	size_t lcap = 0;
	ssize_t len;
	double t0 = cpu_now();
	*n = 0;
	while ((len = getline(&line, &lcap, f)) >= 0) {
		struct tr_trace_line l;
		struct tr_err e;
		if (tr_trace_parse_line(path, ++lineno, line, (size_t)len, TR_LINE_KEEP_JSON, &l, &e))
			die(e.msg);
		if (tr_grow(&t, &cap, *n + 1, sizeof *t))
			die("out of memory");
		t[(*n)++] = l.t;
		memset(&l.t, 0, sizeof l.t);
		tr_trace_line_free(&l);
	}
	*secs = cpu_now() - t0;
	free(line);
	fclose(f);
	return t;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		die("usage: bench_route POLICY_DIR INPUTS.jsonl [REPS]");
	int reps = argc > 3 ? atoi(argv[3]) : 5;
	if (reps < 1 || reps > MAX_REPS)
		die("REPS must be 1 to 15");
	tr_gsl_init();
	struct tr_err e;
	struct tr_policy *p;
	if (tr_policy_load(argv[1], &p, &e))
		die(e.msg);
	if (!p->family || tr_featurizer_kind(p->fz) != TR_FEAT_TFIDF)
		die("a deployed tf-idf policy is needed");
	size_t n;
	double parse_secs;
	struct tr_trace *rows = read_inputs(argv[2], &n, &parse_secs);
	int K = p->labels.n, S = p->n_stages;
	size_t *idx = malloc(BATCH * sizeof *idx);
	double *proba = malloc((size_t)S * BATCH * (size_t)K * sizeof *proba);
	double *score = malloc((size_t)S * BATCH * sizeof *score), *dist = malloc(BATCH * sizeof *dist);
	int *pred = malloc((size_t)S * BATCH * sizeof *pred), *need = malloc(2 * BATCH * sizeof *need);
	struct tr_decision *d = malloc(BATCH * sizeof *d);
	double t[P_N][MAX_REPS];
	size_t handled = 0, ood = 0;
	if (!idx || !proba || !score || !dist || !pred || !need || !d)
		die("out of memory");
	for (int r = 0; r < reps; r++) {
		double acc[P_N] = {parse_secs};
		handled = ood = 0;
		for (size_t i0 = 0; i0 < n; i0 += BATCH) {
			size_t b = n - i0 < BATCH ? n - i0 : BATCH;
			for (size_t i = 0; i < b; i++)
				idx[i] = i0 + i;
			struct tr_feats X;
			struct tr_stage_scores st[TR_MAX_STAGES];
			double t0 = cpu_now();
			if (tr_feat_transform_text(p->fz, rows, idx, b, &X, &e))
				die(e.msg);
			double t1 = cpu_now();
			for (int s = 0; s < S; s++)
				if (tr_surrogate_predict(p->st[s].s, &X, proba + (size_t)s * BATCH * K, &e))
					die(e.msg);
			double t2 = cpu_now();
			for (int s = 0; s < S; s++) {
				const double *ps = proba + (size_t)s * BATCH * K;
				st[s] = (struct tr_stage_scores){score + (size_t)s * BATCH, pred + (size_t)s * BATCH,
								 p->st[s].threshold};
				if (tr_acceptor_score(&p->st[s].acc, ps, b, K, score + (size_t)s * BATCH, &e))
					die(e.msg);
				tr_argmax_rows(ps, b, K, pred + (size_t)s * BATCH);
			}
			tr_route_decide(st, S, NULL, NULL, b, d);
			double t3 = cpu_now();
			if (p->ood) {
				for (size_t i = 0; i < b; i++)
					need[i] = d[i].handled, need[BATCH + i] = d[i].label;
				if (tr_ood_check(p->ood, &X, need, need + BATCH, dist, &e))
					die(e.msg);
				tr_route_decide(st, S, p->ood, dist, b, d);
			}
			double t4 = cpu_now();
			for (size_t i = 0; i < b; i++)
				handled += (size_t)d[i].handled, ood += (size_t)d[i].ood;
			acc[P_FEAT] += t1 - t0, acc[P_PREDICT] += t2 - t1, acc[P_ACCEPT] += t3 - t2, acc[P_OOD] += t4 - t3;
			tr_feats_free(&X);
		}
		for (int k = 0; k < P_N; k++)
			t[k][r] = acc[k];
	}
	printf("inputs %zu, handled %zu, ood %zu, stages %d, labels %d, guard %s\n", n, handled, ood, S, K,
	       p->ood ? "on" : "off");
	double total = 0;
	for (int k = 0; k < P_N; k++) {
		gsl_sort(t[k], 1, (size_t)reps);
		double med = t[k][(reps - 1) / 2];
		total += med;
		printf("%-32s %8.2f us/input\n", phase_name[k], 1e6 * med / (double)n);
	}
	printf("%-32s %8.2f us/input (%.0f inputs per CPU second)\n", "total", 1e6 * total / (double)n,
	       (double)n / total);
	return 0;
}
