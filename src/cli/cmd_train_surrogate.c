/*
 * cmd_train_surrogate.c - `tracer train-surrogate`: fit one surrogate family on a trace set's traces and
 * report its agreement with the teacher on the test part.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../gate/gate.h"
#include "../common/progress.h"
#include "cli.h"

const char cmd_train_surrogate_usage[] =
	"usage: tracer train-surrogate DATASET:TEACHER|traces.jsonl --backend {backends}\n"
	"           [--features tfidf|npy] [--embeddings FILE.npy[.zst]] [--grid 'NAME=v1,v2;...'] [--seed N]\n"
	"           [--quiet]\n"
	"  Hyperparameters are chosen on a group-aware 20% validation slice of the traces (macro-F1 against\n"
	"  the teacher); the chosen point is refitted on all traces and scored on the test part. A trace file\n"
	"  without a test part is split 70/30 (grouped, stratified, seeded). With --features npy, row i of\n"
	"  the embeddings is row i of the set in export order: traces, then test. Progress (the grid search's\n"
	"  points with an estimate of the time left, refit, prediction) goes to stderr: in place on a\n"
	"  terminal, a line per phase otherwise; --quiet silences it.\n";


static double peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024.0;
}

/* Splits rows idx[0..n) into two lists by a grouped, stratified split with fraction `first`. */
static int split_two(const struct tr_trace *rows, const size_t *idx, size_t n, double first, uint64_t seed,
		     size_t *a, size_t *na, size_t *b, size_t *nb, struct tr_err *e)
{
	int *part = tr_malloc((n ? n : 1) * sizeof *part);
	int rc = -1;
	double frac[2] = {first, 1 - first};
	if (!part) {
		tr_fail(e, "out of memory");
		goto out;
	}
	if (tr_split_traces(rows, idx, n, frac, 2, seed, 0, part, e))
		goto out;
	*na = *nb = 0;
	for (size_t i = 0; i < n; i++) {
		if (part[i] == 0)
			a[(*na)++] = idx[i];
		else
			b[(*nb)++] = idx[i];
	}
	rc = 0;
out:
	tr_free(part);
	return rc;
}

struct job {
	const char *set, *backend, *features, *embeddings, *grid;
	uint64_t seed;
	int quiet;
};

static int run(const struct job *j, struct tr_err *e)
{
	struct tr_traceset ts;
	const struct tr_family *fam = tr_family_find(j->backend);
	struct tr_grid grid;
	if (tr_grid_parse(fam, j->grid, &grid, e) || tr_traceset_open(j->set, &ts, e))
		return -1;
	/* All rows in export order (traces, then test), so embeddings can be aligned by position. */
	size_t nt = ts.part[TR_PART_TRACES].n, nx = ts.part[TR_PART_TEST].n, n = nt + nx;
	struct tr_trace *rows = tr_malloc(n * sizeof *rows);
	size_t *train = tr_malloc(n * sizeof *train), *test = tr_malloc(n * sizeof *test),
	       *fit = tr_malloc(n * sizeof *fit), *val = tr_malloc(n * sizeof *val), *all = tr_malloc(n * sizeof *all);
	int *ytrain = tr_malloc(n * sizeof *ytrain), *yfit = tr_malloc(n * sizeof *yfit),
	    *yval = tr_malloc(n * sizeof *yval), *pred = tr_malloc(n * sizeof *pred);
	double *emb = NULL, *proba = NULL;
	int *gold = NULL;
	struct tr_decision *d = NULL;
	struct tr_featurizer *fz = NULL;
	struct tr_feats F = {0}, Xtr = {0}, Xfit = {0}, Xval = {0}, Xte = {0};
	struct tr_surrogate *sel = NULL, *s = NULL;
	struct tr_buf log = {0};
	struct tr_progress *pg = NULL;
	int rc = -1;
	if (!rows || !train || !test || !fit || !val || !all || !ytrain || !yfit || !yval || !pred) {
		tr_fail(e, "out of memory");
		goto out;
	}
	memcpy(rows, ts.part[TR_PART_TRACES].v, nt * sizeof *rows);
	if (nx) /* a user's trace file has no test part (and no array) */
		memcpy(rows + nt, ts.part[TR_PART_TEST].v, nx * sizeof *rows);
	size_t ntrain = nt, ntest = nx, nfit, nval;
	for (size_t i = 0; i < n; i++)
		all[i] = i;
	if (nx) {
		memcpy(train, all, nt * sizeof *train);
		memcpy(test, all + nt, nx * sizeof *test);
	} else if (split_two(rows, all, n, 0.7, j->seed, train, &ntrain, test, &ntest, e)) {
		goto out;
	}
	if (ntrain == 0 || ntest == 0) {
		tr_fail(e, "%s: too few traces to hold out a test part (%zu)", j->set, n);
		goto out;
	}
	double t0 = tr_now();
	if (strcmp(j->features, "npy") == 0) {
		size_t er;
		int dim;
		if (tr_npy_read(j->embeddings, &emb, &er, &dim, e))
			goto out;
		if (er != n) {
			tr_fail(e, "%s: %zu rows, but %s has %zu traces", j->embeddings, er, j->set, n);
			goto out;
		}
		if (tr_feat_fit_dense(dim, &fz, e) || tr_feat_transform_dense(fz, emb, er, dim, all, n, &F, e))
			goto out;
	} else {
		struct tr_tfidf_params p = TR_TFIDF_DEFAULTS;
		if (tr_feat_fit_tfidf(rows, train, ntrain, &p, &fz, e) ||
		    tr_feat_transform_text(fz, rows, all, n, &F, e))
			goto out;
	}
	double t_feat = tr_now() - t0;
	if (split_two(rows, train, ntrain, 0.8, j->seed + 1, fit, &nfit, val, &nval, e))
		goto out;
	for (size_t i = 0; i < ntrain; i++)
		ytrain[i] = rows[train[i]].teacher;
	for (size_t i = 0; i < nfit; i++)
		yfit[i] = rows[fit[i]].teacher;
	for (size_t i = 0; i < nval; i++)
		yval[i] = rows[val[i]].teacher;
	if (tr_feats_view(&F, train, ntrain, &Xtr) || tr_feats_view(&F, fit, nfit, &Xfit) ||
	    tr_feats_view(&F, val, nval, &Xval) || tr_feats_view(&F, test, ntest, &Xte)) {
		tr_fail(e, "out of memory");
		goto out;
	}
	int K = ts.labels.n;
	t0 = tr_now();
	/* started after the inputs were read and checked, so that their error is the one line on stderr */
	pg = tr_cli_progress("train-surrogate", j->quiet);
	tr_progress_phase(pg, "surrogate %s selection on %zu rows (features: %.1f s)", fam->name, nfit, t_feat);
	if (tr_surrogate_fit(fam, &grid, &Xfit, yfit, &Xval, yval, K, j->seed, 0, &sel, &log, pg, e))
		goto out;
	double t_select = tr_now() - t0;
	/* refit the chosen point on every trace */
	struct tr_grid one = {.n_hp = grid.n_hp};
	for (int k = 0; k < grid.n_hp; k++)
		one.n_vals[k] = 1, one.vals[k][0] = sel->hp[k];
	struct tr_feats none = {0};
	tr_progress_phase(pg, "refit on %zu traces", ntrain);
	t0 = tr_now();
	if (tr_surrogate_fit(fam, &one, &Xtr, ytrain, &none, NULL, K, j->seed, 0, &s, NULL, NULL, e))
		goto out;
	double t_fit = tr_now() - t0;
	if (!(proba = tr_malloc(ntest * (size_t)K * sizeof *proba))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	tr_progress_phase(pg, "predicting %zu test rows", ntest);
	t0 = tr_now();
	if (tr_surrogate_predict(s, &Xte, proba, e))
		goto out;
	double t_pred = tr_now() - t0;
	tr_cli_progress_end(pg, 1);
	pg = NULL;
	tr_argmax_rows(proba, ntest, K, pred);
	/* the surrogate alone answers every test row: the routing metrics of a policy that handles all */
	if (!(d = tr_malloc((ntest ? ntest : 1) * sizeof *d)) || !(gold = tr_malloc((ntest ? ntest : 1) * sizeof *gold))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	int *yte = yfit; /* reuse: teacher labels of the test rows */
	for (size_t i = 0; i < ntest; i++) {
		const struct tr_trace *t = &rows[test[i]];
		yte[i] = t->teacher;
		gold[i] = t->gold >= 0 ? t->gold : TR_NO_GOLD;
		d[i] = (struct tr_decision){.label = pred[i], .handled = 1, .stage = 1, .top1 = pred[i]};
	}
	struct tr_metrics m;
	tr_metrics_compute(d, yte, gold, ntest, 0, &m);
	printf("set %s  backend %s  features %s (%d dims)  seed %llu\n", j->set, fam->name, j->features,
	       tr_featurizer_dim(fz), (unsigned long long)j->seed);
	printf("traces %zu (selection: fit %zu, validation %zu)  test %zu  labels %d\n", ntrain, nfit, nval, ntest,
	       K);
	fputs(log.data ? log.data : "", stdout);
	printf("chosen:");
	for (int k = 0; k < grid.n_hp; k++)
		printf(" %s=%g", fam->hparams[k].name, sel->hp[k]);
	printf("\ntest agreement with teacher %.4f (%zu/%zu)  macro-F1 %.4f", m.agreement, m.agree, ntest,
	       tr_macro_f1(yte, pred, ntest, K));
	if (m.gold_n)
		printf("  gold accuracy %.4f (%zu/%zu)", m.gold_accuracy, m.gold_ok, m.gold_n);
	printf("\nseconds: features %.2f  selection %.2f  fit %.2f  predict %.3f  peak RSS %.0f MB\n", t_feat,
	       t_select, t_fit, t_pred, peak_rss_mb());
	rc = 0;
out:
	if (pg)
		tr_cli_progress_end(pg, 0);
	tr_surrogate_free(sel);
	tr_surrogate_free(s);
	tr_buf_free(&log);
	tr_feats_view_free(&Xtr), tr_feats_view_free(&Xfit), tr_feats_view_free(&Xval), tr_feats_view_free(&Xte);
	tr_feats_free(&F);
	tr_featurizer_free(fz);
	tr_free(emb), tr_free(proba), tr_free(rows);
	tr_free(train), tr_free(test), tr_free(fit), tr_free(val), tr_free(all);
	tr_free(ytrain), tr_free(yfit), tr_free(yval), tr_free(pred), tr_free(gold), tr_free(d);
	tr_traceset_free(&ts);
	return rc;
}

int cmd_train_surrogate(int argc, char **argv)
{
	struct job j = {.features = "tfidf"};
	struct tr_args a = {.verb = "train-surrogate",
			    .spec = "--backend= --features= --embeddings= --grid= --seed= --quiet",
			    .pos = (const char **[]){&j.set},
			    .n_pos = 1};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		const char *v = a.val;
		if (tr_args_is(&a, "--backend"))
			j.backend = v;
		else if (tr_args_is(&a, "--features"))
			j.features = v;
		else if (tr_args_is(&a, "--embeddings"))
			j.embeddings = v;
		else if (tr_args_is(&a, "--grid"))
			j.grid = v;
		else if (tr_args_is(&a, "--quiet"))
			j.quiet = 1;
		else if (tr_args_is(&a, "--seed")) {
			unsigned long long u;
			if (tr_cli_count(v, &u))
				return tr_cli_usage_error("train-surrogate", "bad seed \"%s\"", v);
			j.seed = u;
		}
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!j.set)
		return tr_cli_usage_error("train-surrogate", "expected a trace set");
	if (!j.backend || !tr_family_find(j.backend))
		return tr_cli_usage_error("train-surrogate", "--backend must be one of %s", tr_family_list(", "));
	if (strcmp(j.features, "tfidf") != 0 && strcmp(j.features, "npy") != 0)
		return tr_cli_usage_error("train-surrogate", "--features must be tfidf or npy");
	if (!strcmp(j.features, "npy") != !!j.embeddings)
		return tr_cli_usage_error("train-surrogate", "--embeddings goes with --features npy");
	struct tr_err e;
	return run(&j, &e) ? tr_cli_data_error(&e) : TR_EXIT_OK;
}
