/*
 * fit.c - one fit, step by step: the split, the features, stage 1 (surrogate and acceptor), then every
 * policy family of the table under a gate rule at every target. tr_policy_fit (policy.c) deploys from
 * it; experiment cells (src/exp/cell.c) evaluate it on test traffic.
 *
 * Splits: the traces (after the optional cap) are split per teacher label into train / validation /
 * calibration, 60/20/20 by default (--split), keeping group keys on one side. The surrogate learns on
 * train and picks its hyperparameter on validation; the acceptor learns on validation; only the gate
 * looks at calibration.
 *
 * Calibration by cross-fitting (--calibration crossfit) instead cuts the used rows into K folds; fold k's
 * probabilities come from a surrogate trained on the other folds, so every row has out-of-fold
 * probabilities. The rows are also split in halves: the acceptor learns on one half (the "validation"
 * rows below, which also give ltt's candidate thresholds and ltt-plan's plan), the gate tests on the other
 * (the "calibration" rows). The deployed surrogate is refitted on every used row, so the gate's
 * certificate is about the fold models, not the deployed one: no formal guarantee (tr_crossfit_caveat).
 * rsb is not tried under crossfit: its second stage would be trained and checked on the same rows.
 *
 * Calibration out of fold (--calibration oof) keeps crossfit's use of the traces but restores the
 * promise. The used rows are split, grouped but not stratified (the split must not look at the labels),
 * into a fit part F (70% by default) and a calibration part C. F is cut into K folds: every row of F
 * gets out-of-fold probabilities, the acceptor learns on all of them, ltt-plan plans on them (F rows are
 * the "validation" rows below) and the deployed surrogate is refitted on all of F (the "train" rows; the
 * tf-idf vocabulary too). Surrogate, acceptor, thresholds, plan and family are then functions of F alone,
 * and C is only ever scored by the deployed policy, so the gate's test on C is a test about the deployed
 * policy. Of C only one row of each group key is tested, drawn by a seeded hash of its position: rows sharing a
 * group are correlated, one row per group makes the tested rows independent when groups are. rsb is
 * not tried (its second stage would need out-of-fold rows of its own).
 */
#include "fit.h"
#include "../common/progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char tr_crossfit_caveat[] =
	"the gate tests the out-of-fold models, but the deployed surrogate is refitted on all traces, so the "
	"promise of ltt and ltt-plan does not carry over to it";

const char tr_oof_guarantee[] =
	"P(agreement on handled traffic < α) <= δ for the deployed policy, on the handled set before the OOD guard, "
	"when the calibration part's groups and future traffic are independent draws from one distribution; "
	"surrogate, acceptor and every family's threshold order (ltt-plan: its plan and the one family it tests) "
	"are functions of the fit part alone (out-of-fold; ltt tests every family at its share of δ), the gate "
	"tests one row of each group key of the calibration part, drawn at random, and rsb is not tried";

const char *tr_calibration_name(const struct tr_fit_options *o)
{
	return o->oof ? "oof" : o->crossfit ? "crossfit" : "holdout";
}

const char *tr_fit_guarantee(const struct tr_fit_options *o, const struct tr_rule *rule)
{
	if (o->crossfit)
		return tr_crossfit_caveat;
	return rule->guarantee && o->oof ? tr_oof_guarantee : rule->guarantee;
}

int tr_oof_split_parse(const char *text, int *cal)
{
	int a, b, used = 0;
	if (sscanf(text, "%d/%d%n", &a, &b, &used) != 2 || text[used] || a < 1 || b < 1 || a + b != 100)
		return -1;
	*cal = b;
	return 0;
}

int tr_split_parse(const char *text, int split[3])
{
	int a, b, c, used = 0;
	if (sscanf(text, "%d/%d/%d%n", &a, &b, &c, &used) != 3 || text[used] || a < 1 || b < 1 || c < 1 ||
	    a + b + c != 100)
		return -1;
	split[0] = a, split[1] = b, split[2] = c;
	return 0;
}

static const struct tr_trace *row(const struct tr_fit *f, size_t j)
{
	return &f->ts->part[TR_PART_TRACES].v[f->use[j]];
}

void tr_fit_agree(const struct tr_fit *f, const double *proba, const size_t *pos, size_t m, int *agree)
{
	for (size_t i = 0; i < m; i++) {
		int pred;
		tr_argmax_rows(proba + i * (size_t)f->K, 1, f->K, &pred);
		agree[i] = pred == f->y[pos[i]];
	}
}

int tr_fit_predict(const struct tr_fit *f, const struct tr_surrogate *s, const size_t *pos, size_t m, double *out,
		   struct tr_err *e)
{
	size_t same = 0; /* every row in order: the features themselves, not a copy (dense: one more matrix) */
	while (same < m && m == f->F.n && pos[same] == same)
		same++;
	if (same == f->F.n && m == f->F.n)
		return tr_surrogate_predict(s, &f->F, out, e);
	struct tr_feats X;
	if (tr_feats_view(&f->F, pos, m, &X))
		return tr_fail(e, "out of memory");
	int rc = tr_surrogate_predict(s, &X, out, e);
	tr_feats_view_free(&X);
	return rc;
}

/* Features and labels of rows pos[0..m): a view of the fit's features (free with tr_feats_view_free). */
static int rows_view(const struct tr_fit *f, const size_t *pos, size_t m, struct tr_feats *X, int **y)
{
	if (!(*y = tr_malloc((m ? m : 1) * sizeof **y)))
		return -1;
	if (tr_feats_view(&f->F, pos, m, X)) {
		tr_free(*y);
		return -1;
	}
	for (size_t i = 0; i < m; i++)
		(*y)[i] = f->y[pos[i]];
	return 0;
}

/* tr_fit_train with the log, thread count and progress given (jobs of several threads keep their own log). */
static int train_rows(const struct tr_fit *f, const struct tr_grid *grid, const size_t *tr, size_t ntr, const size_t *va,
		      size_t nva, int threads, struct tr_buf *log, struct tr_progress *progress, struct tr_surrogate **out,
		      struct tr_err *e)
{
	struct tr_feats Xt, Xv;
	int *yt, *yv;
	if (rows_view(f, tr, ntr, &Xt, &yt))
		return tr_fail(e, "out of memory");
	if (rows_view(f, va, nva, &Xv, &yv)) {
		tr_feats_view_free(&Xt);
		tr_free(yt);
		return tr_fail(e, "out of memory");
	}
	int rc = tr_surrogate_fit(f->fam, grid, &Xt, yt, &Xv, yv, f->K, f->o->seed, threads, out, log, progress, e);
	tr_feats_view_free(&Xt), tr_feats_view_free(&Xv);
	tr_free(yt), tr_free(yv);
	return rc;
}

int tr_fit_train(struct tr_fit *f, const struct tr_grid *grid, const size_t *tr, size_t ntr, const size_t *va,
		 size_t nva, struct tr_surrogate **out, struct tr_err *e)
{
	return train_rows(f, grid, tr, ntr, va, nva, f->o->threads, &f->log, f->o->progress, out, e);
}

/*
 * oof's split: part[j] = 0 for F, 2 for the calibration rows tested, 3 for calibration rows left out
 * (a group's other rows); f->fold[j] = the fold of an F row, -1 for C. F and C are split by group with
 * one stratum (labels unseen); the folds inside F are stratified by teacher label (F only).
 */
static int oof_split(struct tr_fit *f, int *part, struct tr_err *e)
{
	const struct tr_rows *r = &f->ts->part[TR_PART_TRACES];
	int K = f->o->folds ? f->o->folds : TR_CROSSFIT_FOLDS, cal = f->o->oof_cal ? f->o->oof_cal : TR_OOF_CAL;
	int *fold = tr_malloc((f->n ? f->n : 1) * sizeof *fold), rc = -1;
	const char **group = tr_malloc((f->n ? f->n : 1) * sizeof *group);
	size_t *fi = tr_malloc((f->n ? f->n : 1) * sizeof *fi), *ci = tr_malloc((f->n ? f->n : 1) * sizeof *ci);
	size_t nf = 0, nc = 0;
	const char **cg = tr_malloc((f->n ? f->n : 1) * sizeof *cg);
	unsigned char *pick = tr_malloc(f->n ? f->n : 1);
	double fc[2] = {1 - cal / 100.0, cal / 100.0}, ff[16];
	f->fold = tr_malloc((f->n ? f->n : 1) * sizeof *f->fold);
	if (!fold || !group || !fi || !ci || !cg || !pick || !f->fold) {
		tr_fail(e, "out of memory");
		goto out;
	}
	if (K < 2 || K > 16 || cal < 1 || cal > 99) {
		tr_fail(e, "oof: %d folds (2 to 16), calibration %d%% (1 to 99)", K, cal);
		goto out;
	}
	for (int k = 0; k < K; k++)
		ff[k] = 1.0 / K;
	for (size_t j = 0; j < f->n; j++)
		group[j] = tr_trace_group(row(f, j));
	if (tr_split_traces_blind(r->v, f->use, f->n, fc, 2, f->o->seed ^ 0x27d4eb2f165667c5ull, part, e))
		goto out;
	for (size_t j = 0; j < f->n; j++) {
		if (part[j] == 0)
			fi[nf++] = f->use[j];
		else
			cg[nc] = group[j], ci[nc++] = j;
	}
	if (tr_split_traces(r->v, fi, nf, ff, K, f->o->seed ^ 0x5bd1e995ull, 0, fold, e))
		goto out;
	for (size_t j = 0, i = 0; j < f->n; j++)
		f->fold[j] = part[j] == 0 ? fold[i++] : -1;
	if (tr_group_pick(nc, cg, f->o->seed ^ 0x165667b19e3779f9ull, pick, e))
		goto out;
	for (size_t i = 0; i < nc; i++)
		part[ci[i]] = pick[i] ? 2 : 3;
	rc = 0;
out:
	tr_free(fold), tr_free(group), tr_free(fi), tr_free(ci), tr_free(cg), tr_free(pick);
	return rc;
}

static int split_rows(struct tr_fit *f, struct tr_err *e)
{
	const struct tr_rows *r = &f->ts->part[TR_PART_TRACES];
	size_t N = r->n;
	int *part = tr_malloc(N * sizeof *part), rc = -1;
	f->use = tr_malloc(N * sizeof *f->use);
	if (!part || !f->use) {
		tr_fail(e, "out of memory");
		goto out;
	}
	f->n = 0;
	if (f->o->cap && N > f->o->cap) {
		/* holdout keeps each label's share (its split is stratified anyway); oof draws blind to labels,
		 * so that the kept traces, and C among them, remain draws from the traffic */
		double frac[2] = {(double)f->o->cap / (double)N, 1 - (double)f->o->cap / (double)N};
		uint64_t seed = f->o->seed ^ 0x9e3779b97f4a7c15ull;
		if (f->o->oof ? tr_split_traces_blind(r->v, NULL, N, frac, 2, seed, part, e)
			      : tr_split_traces(r->v, NULL, N, frac, 2, seed, 0, part, e))
			goto out;
		for (size_t i = 0; i < N; i++)
			if (part[i] == 0)
				f->use[f->n++] = i;
	} else {
		for (size_t i = 0; i < N; i++)
			f->use[f->n++] = i;
	}
	static const int dflt[3] = TR_DEFAULT_SPLIT;
	const int *pc = f->o->split[0] ? f->o->split : dflt;
	double frac3[3] = {pc[0] / 100.0, pc[1] / 100.0, pc[2] / 100.0};
	if (f->o->crossfit) { /* folds, then halves: part 1 = acceptor rows, part 2 = gate rows */
		int K = f->o->folds ? f->o->folds : TR_CROSSFIT_FOLDS;
		double ff[16], half[2] = {0.5, 0.5};
		if (K < 2 || K > 16) {
			tr_fail(e, "crossfit: %d folds (2 to 16)", K);
			goto out;
		}
		for (int k = 0; k < K; k++)
			ff[k] = 1.0 / K;
		if (!(f->fold = tr_malloc(f->n * sizeof *f->fold))) {
			tr_fail(e, "out of memory");
			goto out;
		}
		if (tr_split_traces(r->v, f->use, f->n, ff, K, f->o->seed ^ 0x5bd1e995ull, 0, f->fold, e) ||
		    tr_split_traces(r->v, f->use, f->n, half, 2, f->o->seed, 0, part, e))
			goto out;
		for (size_t j = 0; j < f->n; j++)
			part[j] += 1;
	} else if (f->o->oof) {
		if (oof_split(f, part, e))
			goto out;
	} else if (tr_split_traces(r->v, f->use, f->n, frac3, 3, f->o->seed, 1, part, e))
		goto out;
	f->tr = tr_malloc(f->n * sizeof *f->tr);
	f->va = tr_malloc(f->n * sizeof *f->va);
	f->ca = tr_malloc(f->n * sizeof *f->ca);
	f->y = tr_malloc(f->n * sizeof *f->y);
	if (!f->tr || !f->va || !f->ca || !f->y) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < f->n; j++) {
		f->y[j] = r->v[f->use[j]].teacher;
		if (f->o->crossfit) /* every row trains the refitted surrogate */
			f->tr[f->ntr++] = j;
		if (f->o->oof && part[j] == 0) /* F: the refit's rows and the out-of-fold rows */
			f->tr[f->ntr++] = j, f->va[f->nva++] = j;
		else if (f->o->oof && part[j] == 3)
			f->ca_dropped++;
		else if (part[j] == 0)
			f->tr[f->ntr++] = j;
		else if (part[j] == 1)
			f->va[f->nva++] = j;
		else
			f->ca[f->nca++] = j;
	}
	rc = 0;
out:
	tr_free(part);
	return rc;
}

/*
 * Dense features built in the caller's writable embeddings (o->emb_scratch): the used rows, transformed
 * by blocks with the featurizer's own function, copied down to rows 0..n-1. use[] ascends, so use[i] >= i:
 * a block's rows are read before they are written, and a later block reads only rows past the ones
 * written. The same values as tr_feat_transform_dense of all of them, without a second matrix.
 */
#define FEAT_BLOCK 64 /* rows per block (the fixtures of the tests have more than one block) */
static int featurize_in_place(struct tr_fit *f, struct tr_err *e)
{
	size_t d = (size_t)f->o->emb_dim;
	double *x = f->o->emb_scratch;
	for (size_t i0 = 0; i0 < f->n; i0 += FEAT_BLOCK) {
		size_t b = f->n - i0 < FEAT_BLOCK ? f->n - i0 : FEAT_BLOCK;
		struct tr_feats X;
		if (tr_feat_transform_dense(f->fz, x, f->o->emb_rows, f->o->emb_dim, f->use + i0, b, &X, e))
			return -1;
		memcpy(x + i0 * d, X.dense, b * d * sizeof *x);
		tr_feats_free(&X);
	}
	f->F = (struct tr_feats){.n = f->n, .dim = f->o->emb_dim, .dense = x};
	f->F_borrowed = 1;
	return 0;
}

static int featurize(struct tr_fit *f, struct tr_err *e)
{
	const struct tr_rows *r = &f->ts->part[TR_PART_TRACES];
	if (f->o->dense) {
		if (f->o->emb_rows != r->n)
			return tr_fail(e, "embeddings: %zu rows, but %s has %zu traces", f->o->emb_rows, f->ts->name, r->n);
		if (tr_feat_fit_dense(f->o->emb_dim, &f->fz, e))
			return -1;
		return f->o->emb_scratch ? featurize_in_place(f, e)
					 : tr_feat_transform_dense(f->fz, f->o->emb, f->o->emb_rows, f->o->emb_dim, f->use,
								   f->n, &f->F, e);
	}
	size_t *trace_idx = tr_malloc((f->ntr ? f->ntr : 1) * sizeof *trace_idx);
	if (!trace_idx)
		return tr_fail(e, "out of memory");
	for (size_t i = 0; i < f->ntr; i++)
		trace_idx[i] = f->use[f->tr[i]];
	struct tr_tfidf_params p = TR_TFIDF_DEFAULTS;
	int rc = tr_feat_fit_tfidf(r->v, trace_idx, f->ntr, &p, &f->fz, e) ||
		 tr_feat_transform_text(f->fz, r->v, f->use, f->n, &f->F, e);
	tr_free(trace_idx);
	return rc;
}

/* A grid of one point: the hyperparameters of s. */
static struct tr_grid grid_of(const struct tr_fit *f, const struct tr_surrogate *s)
{
	struct tr_grid one = {.n_hp = f->grid.n_hp};
	for (int k = 0; k < one.n_hp; k++)
		one.n_vals[k] = 1, one.vals[k][0] = s->hp[k];
	return one;
}

/*
 * One model of crossfit_probs once the hyperparameters are chosen: fold k's (trained on the F rows outside
 * it, its probabilities written into f->p1 at the fold's rows) or, k = -1, the refit on f->tr (kept in
 * f->s1; under oof its probabilities of C's rows written too). Trained without validation rows: the
 * choice is made, and the refit reports fold 0's score. The models of different jobs are independent and
 * each writes its own rows of f->p1, so neither the thread count nor the order of the jobs changes a bit.
 */
#define FOLD_JOB_OOD (-2) /* the job fitting the OOD guard on f->tr (the refit's rows) */

static int fit_ood_now(const struct tr_fit *f, struct tr_ood **out, struct tr_err *e);

struct fold_job {
	int k; /* fold k's model; -1: the refit; FOLD_JOB_OOD */
	int rc;
	struct tr_buf log;
	struct tr_err err;
};

struct fold_pool {
	struct tr_fit *f;
	const struct tr_grid *one;
	struct fold_job *jobs;
};

static int fold_job_run(struct tr_fit *f, const struct tr_grid *one, struct fold_job *jb)
{
	if (jb->k == FOLD_JOB_OOD) { /* a failure here is not the fit's: tr_fit_ood tries again and reports it */
		fit_ood_now(f, &f->ood, &jb->err);
		return 0;
	}
	size_t *in = tr_malloc(f->n * sizeof *in), *out = tr_malloc(f->n * sizeof *out), ni = 0, no = 0;
	double *p = NULL;
	struct tr_surrogate *s = NULL;
	int rc = -1;
	if (!in || !out) {
		tr_fail(&jb->err, "out of memory");
		goto done;
	}
	for (size_t j = 0; j < f->n; j++) {
		if (jb->k < 0 ? f->fold[j] < 0 : f->fold[j] == jb->k) /* rows to predict: the fold's, or C's */
			out[no++] = j;
		else if (jb->k >= 0 && f->fold[j] >= 0) /* oof: C rows (fold -1) train no fold model */
			in[ni++] = j;
	}
	if (jb->k < 0) { /* the refit: every training row */
		if (train_rows(f, one, f->tr, f->ntr, NULL, 0, 1, &jb->log, NULL, &f->s1, &jb->err))
			goto done;
		if (!f->o->oof)
			no = 0; /* crossfit: every row has its fold model's probabilities */
		s = f->s1;
	} else if (train_rows(f, one, in, ni, NULL, 0, 1, &jb->log, NULL, &s, &jb->err))
		goto done;
	if (no && (!(p = tr_malloc(no * (size_t)f->K * sizeof *p)) || tr_fit_predict(f, s, out, no, p, &jb->err))) {
		if (!p)
			tr_fail(&jb->err, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < no; i++)
		memcpy(f->p1 + out[i] * (size_t)f->K, p + i * (size_t)f->K, (size_t)f->K * sizeof *p);
	rc = 0;
done:
	if (jb->k >= 0) /* a fold model (the refit is f->s1's, which only its own job touches until the join) */
		tr_surrogate_free(s);
	tr_free(in), tr_free(out), tr_free(p);
	return rc;
}

static void fold_run(void *ctx, size_t i)
{
	struct fold_pool *pl = ctx;
	pl->jobs[i].rc = fold_job_run(pl->f, pl->one, &pl->jobs[i]);
}

/*
 * crossfit's stage 1: out-of-fold probabilities of every used row into f->p1, and the surrogate refitted
 * on all of them into f->s1. The hyperparameters are chosen once (trained without the first fold that has
 * rows, selected on it) and kept for every other fold model and the refit, whose validation macro-F1 is
 * that fold's. Those models are then jobs of one pool: up to `threads` at once for thread-safe families
 * (at most that many models alive), the refit first (the most rows: the longest).
 */
static int crossfit_probs(struct tr_fit *f, struct tr_err *e)
{
	int K = f->o->folds ? f->o->folds : TR_CROSSFIT_FOLDS, rc = -1, first = -1;
	size_t *in = tr_malloc(f->n * sizeof *in), *out = tr_malloc(f->n * sizeof *out);
	double *p = tr_malloc(f->n * (size_t)f->K * sizeof *p);
	struct tr_surrogate *s = NULL;
	struct fold_job jobs[18];
	size_t nj = 0;
	if (!in || !out || !p) {
		tr_fail(e, "out of memory");
		goto done;
	}
	for (int k = 0; k < K; k++) {
		size_t ni = 0, no = 0;
		for (size_t j = 0; j < f->n; j++) {
			if (f->fold[j] == k)
				out[no++] = j;
			else if (f->fold[j] >= 0) /* oof: C rows (fold -1) train no fold model */
				in[ni++] = j;
		}
		if (no == 0)
			continue; /* fewer groups than folds: an empty fold has nothing to predict */
		if (first >= 0) {
			jobs[nj++] = (struct fold_job){.k = k};
			continue;
		}
		if (tr_fit_train(f, &f->grid, in, ni, out, no, &s, e) || tr_fit_predict(f, s, out, no, p, e))
			goto done;
		first = k;
		for (size_t i = 0; i < no; i++)
			memcpy(f->p1 + out[i] * (size_t)f->K, p + i * (size_t)f->K, (size_t)f->K * sizeof *p);
	}
	tr_free(in), tr_free(out), tr_free(p);
	in = out = NULL, p = NULL;
	if (first < 0) /* no fold has rows: fold_check refuses this before */
		return tr_fail(e, "crossfit: no fold has rows");
	/* the refit leads: it trains on the most rows; the folds follow in order */
	memmove(jobs + 1, jobs, nj * sizeof *jobs);
	jobs[0] = (struct fold_job){.k = -1};
	nj++;
	if (f->o->ood) /* it needs only the refit's rows: beside the fold models, started last */
		jobs[nj++] = (struct fold_job){.k = FOLD_JOB_OOD};
	struct tr_grid one = grid_of(f, s);
	double f1 = s->val_f1;
	tr_surrogate_free(s); /* the jobs' models only from here: at most one per thread, and the refit */
	s = NULL;
	tr_progress_phase(f->o->progress, "out-of-fold models: folds %d to %d and the refit%s", first + 2, K,
			  f->o->ood ? ", the OOD guard beside them" : "");
	tr_progress_step(f->o->progress, 0, nj);
	struct fold_pool pl = {.f = f, .one = &one, .jobs = jobs};
	tr_surrogate_jobs(nj, tr_surrogate_threads(f->fam, nj, f->o->threads), fold_run, &pl, f->o->progress);
	rc = 0;
	for (size_t i = 0; i < nj; i++) { /* in job order: the first error, the logs in the order of the jobs */
		if (!rc && jobs[i].rc) {
			rc = -1;
			if (e)
				*e = jobs[i].err;
		}
		if (jobs[i].log.len)
			tr_buf_add(&f->log, jobs[i].log.data, jobs[i].log.len); /* out of memory: a shorter log */
		tr_buf_free(&jobs[i].log);
	}
	if (!rc) /* the refit has seen every row: report the out-of-fold score of the model that chose */
		f->s1->val_f1 = f1;
done:
	tr_surrogate_free(s);
	tr_free(in), tr_free(out), tr_free(p);
	return rc;
}

/* Stage 1 on every used row: probabilities, agreement, acceptor scores. */
static int stage1(struct tr_fit *f, struct tr_err *e)
{
	size_t *all = tr_malloc(f->n * sizeof *all);
	double *pv = tr_malloc(f->nva * (size_t)f->K * sizeof *pv + 1);
	int *av = tr_malloc(f->nva * sizeof *av + 1);
	f->p1 = tr_malloc(f->n * (size_t)f->K * sizeof *f->p1);
	f->sc1 = tr_malloc(f->n * sizeof *f->sc1);
	f->a1 = tr_malloc(f->n * sizeof *f->a1);
	int rc = -1;
	if (!all || !pv || !av || !f->p1 || !f->sc1 || !f->a1) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < f->n; j++)
		all[j] = j;
	if (f->o->crossfit || f->o->oof ? crossfit_probs(f, e)
			   : tr_fit_train(f, &f->grid, f->tr, f->ntr, f->va, f->nva, &f->s1, e) ||
				     tr_fit_predict(f, f->s1, all, f->n, f->p1, e))
		goto out;
	tr_fit_agree(f, f->p1, all, f->n, f->a1);
	for (size_t i = 0; i < f->nva; i++) {
		memcpy(pv + i * (size_t)f->K, f->p1 + f->va[i] * (size_t)f->K, (size_t)f->K * sizeof *pv);
		av[i] = f->a1[f->va[i]];
	}
	if (tr_acceptor_fit(pv, av, f->nva, f->K, f->o->seed, &f->acc1, e) ||
	    tr_acceptor_score(&f->acc1, f->p1, f->n, f->K, f->sc1, e))
		goto out;
	rc = 0;
out:
	tr_free(all), tr_free(pv), tr_free(av);
	return rc;
}

/* The calibration rows' stage-1 view, shared by every rule and target. */
static int calib_build(const struct tr_fit *f, struct tr_calib *c, struct tr_err *e)
{
	c->score = tr_malloc(f->nca * sizeof *c->score);
	c->val_score = tr_malloc((f->nva ? f->nva : 1) * sizeof *c->val_score);
	c->val_agree = tr_malloc((f->nva ? f->nva : 1) * sizeof *c->val_agree);
	c->agree = tr_malloc(f->nca * sizeof *c->agree);
	c->strat = tr_malloc(f->nca * sizeof *c->strat);
	c->group = tr_malloc(f->nca * sizeof *c->group);
	if (!c->score || !c->val_score || !c->val_agree || !c->agree || !c->strat || !c->group)
		return tr_fail(e, "out of memory");
	for (size_t i = 0; i < f->nca; i++) {
		c->score[i] = f->sc1[f->ca[i]];
		c->agree[i] = f->a1[f->ca[i]];
		c->strat[i] = f->y[f->ca[i]];
		c->group[i] = tr_trace_group(row(f, f->ca[i]));
	}
	for (size_t i = 0; i < f->nva; i++)
		c->val_score[i] = f->sc1[f->va[i]], c->val_agree[i] = f->a1[f->va[i]];
	return 0;
}

static void calib_free(struct tr_calib *c)
{
	tr_free(c->score), tr_free(c->val_score), tr_free(c->val_agree), tr_free(c->agree), tr_free(c->strat);
	tr_free(c->group);
	memset(c, 0, sizeof *c);
}

static void results_free(struct tr_fit *f)
{
	for (int i = 0; f->res && i < f->o->n_targets * f->n_fam; i++)
		tr_gate_result_free(&f->res[i].r);
	tr_free(f->res);
	f->res = NULL;
}

void tr_fit_free(struct tr_fit *f)
{
	if (!f)
		return;
	results_free(f);
	for (int i = 0; i < tr_pol_family_count(); i++)
		if (f->state[i] && tr_pol_family_at(i)->state_free)
			tr_pol_family_at(i)->state_free(f->state[i]);
	tr_free(f->use), tr_free(f->tr), tr_free(f->va), tr_free(f->ca), tr_free(f->y), tr_free(f->fold);
	if (f->F_borrowed)
		f->F.dense = NULL; /* the caller's */
	tr_feats_free(&f->F);
	tr_featurizer_free(f->fz);
	tr_surrogate_free(f->s1);
	tr_ood_free(f->ood);
	tr_acceptor_free(&f->acc1);
	tr_free(f->p1), tr_free(f->sc1), tr_free(f->a1);
	calib_free(&f->c);
	tr_buf_free(&f->log);
	tr_free(f);
}

/*
 * crossfit and oof: every fold that predicts rows must have rows outside it to train its model. The fold
 * split is stratified by teacher label, and the labels with a single row in the fit part all land in one.
 */
static int fold_check(const struct tr_fit *f, const char *spec, struct tr_err *e)
{
	if (!f->fold)
		return 0;
	int K = f->o->folds ? f->o->folds : TR_CROSSFIT_FOLDS;
	size_t cnt[16] = {0}, all = 0;
	for (size_t j = 0; j < f->n; j++)
		if (f->fold[j] >= 0)
			cnt[f->fold[j]]++, all++;
	for (int k = 0; k < K; k++)
		if (cnt[k] > 0 && cnt[k] == all)
			return tr_fail(e, "%s: %s: all %zu %s rows fall in fold %d of %d, so its model has no training rows "
				       "(labels with a single fit-part row all fall in one fold): give more traces%s", spec,
				       tr_calibration_name(f->o), all, f->o->oof ? "fit-part" : "used", k + 1, K,
				       f->n < f->ts->part[TR_PART_TRACES].n ? ", raise --cap or --cap 0" : "");
	return 0;
}

/*
 * Checked before any training: the rows left after --cap and the split can calibrate something. The
 * message says which step emptied them: the cap (each label's share of a small cap rounds to no
 * group), or labels too small to reach calibration (one group each goes to training).
 */
static int check_split(const struct tr_fit *f, const char *spec, struct tr_err *e)
{
	size_t N = f->ts->part[TR_PART_TRACES].n;
	int capped = f->n < N; /* the cap dropped rows (with many tiny labels it may keep them all) */
	if (f->n == 0 && f->o->oof) /* oof's cap draws whole groups blind to labels */
		return tr_fail(e, "%s: --cap %zu keeps no traces (of %zu, its share of the group keys rounds to none): "
			       "raise --cap, or --cap 0 for no cap", spec, f->o->cap, N);
	if (f->n == 0)
		return tr_fail(e, "%s: --cap %zu keeps no traces (of %zu over %d labels, each label's share rounds to "
			       "nothing): raise --cap, or --cap 0 for no cap", spec, f->o->cap, N, f->K);
	if (f->nca > 0)
		return fold_check(f, spec, e);
	if (f->o->oof) /* the fit / calibration split is blind to labels: only the number of groups counts */
		return tr_fail(e, "%s: no calibration rows after oof's fit/calibration split (%zu trace%s%s, the "
			       "calibration part takes %d%% of the group keys, rounded): give more traces%s", spec, f->n,
			       f->n == 1 ? "" : "s", capped ? " kept by --cap" : "", f->o->oof_cal ? f->o->oof_cal : TR_OOF_CAL,
			       capped ? ", raise --cap or --cap 0" : "");
	if (capped)
		return tr_fail(e, "%s: no calibration rows after --cap %zu (kept %zu of %zu traces, every kept label "
			       "has fewer than 2): raise --cap, or --cap 0 for no cap", spec, f->o->cap, f->n, N);
	return tr_fail(e, "%s: no calibration rows after the split (%zu traces, every label has fewer than 2)", spec,
		       f->n);
}

int tr_fit_new(const struct tr_traceset *ts, const char *spec, const struct tr_fit_options *o, struct tr_fit **out,
	       struct tr_err *e)
{
	*out = NULL;
	if (o->n_targets < 1 || o->n_targets > TR_MAX_TARGETS)
		return tr_fail(e, "%d targets (1 to %d)", o->n_targets, TR_MAX_TARGETS);
	const struct tr_family *fam = tr_family_find(o->backend);
	if (!fam)
		return tr_fail(e, "unknown backend \"%s\"", o->backend);
	if (ts->part[TR_PART_TRACES].n == 0)
		return tr_fail(e, "%s: no traces", spec);
	/* the teacher's labels decide: labels seen only in ground_truth are never an answer to learn */
	const struct tr_rows *tr = &ts->part[TR_PART_TRACES];
	int first = tr->v[0].teacher, two = 0;
	for (size_t i = 1; i < tr->n && !two; i++)
		two = tr->v[i].teacher != first;
	if (!two)
		return tr_fail(e, "%s: one teacher label only (%s): nothing to learn, every input has the same answer",
			       spec, first >= 0 ? ts->labels.names[first] : "none");
	if (o->crossfit && o->oof)
		return tr_fail(e, "calibration: crossfit and oof exclude each other");
	struct tr_fit *f = tr_calloc(1, sizeof *f);
	if (!f)
		return tr_fail(e, "out of memory");
	*f = (struct tr_fit){.ts = ts, .o = o, .fam = fam, .K = ts->labels.n, .n_fam = tr_pol_family_count()};
	if (tr_grid_parse(fam, o->grid, &f->grid, e) || split_rows(f, e))
		goto fail;
	if (check_split(f, spec, e))
		goto fail;
	/* the first phase is named once the split is known good: bad input fails before any progress line */
	tr_progress_phase(o->progress, "features of %zu of the %zu traces", f->n, tr->n);
	if (featurize(f, e))
		goto fail;
	if (o->oof)
		tr_progress_phase(o->progress, "surrogate %s and acceptor (%zu fit-part rows, out of fold)", fam->name,
				  f->ntr);
	else
		tr_progress_phase(o->progress, "surrogate %s and acceptor (%zu train, %zu validation rows%s)", fam->name,
				  f->ntr, f->nva, o->crossfit ? ", cross-fitted" : "");
	if (stage1(f, e) || calib_build(f, &f->c, e))
		goto fail;
	*out = f;
	return 0;
fail:
	tr_fit_free(f);
	return -1;
}

struct tr_fam_result *tr_fit_res(struct tr_fit *f, int t, int fam)
{
	return &f->res[t * f->n_fam + fam];
}

const struct tr_fam_result *tr_fit_result(const struct tr_fit *f, int t, int fam)
{
	return &f->res[t * f->n_fam + fam];
}

void **tr_fit_state(struct tr_fit *f, const struct tr_pol_family *fam)
{
	return &f->state[tr_pol_family_index(fam)];
}

double tr_rule_family_delta(const struct tr_rule *rule, double delta, int n_fam)
{
	return rule->plans ? delta : delta / n_fam;
}

/* The gate's input for a family's view at target t. */
static struct tr_gate_input gate_input(const struct tr_fit *f, int t, const struct tr_family_view *v)
{
	return (struct tr_gate_input){.n = f->nca,
				      .score = v->score,
				      .agree = v->agree,
				      .strat = f->c.strat,
				      .group = f->c.group,
				      .n_val = f->nva,
				      .val_score = v->val_score,
				      .val_agree = v->val_agree,
				      .alpha = f->o->targets[t],
				      .delta = tr_rule_family_delta(f->rule, f->o->delta, f->n_fam),
				      .seed = f->o->seed + 1};
}

/* One family's gate at target t from its view (already prepared with `prepared`). */
static int run_family(struct tr_fit *f, int t, int fam, int prepared, struct tr_err *e)
{
	const struct tr_pol_family *pf = tr_pol_family_at(fam);
	struct tr_fam_result *x = tr_fit_res(f, t, fam);
	if (!prepared && pf->prepare(f, t, &x->v, e))
		return -1;
	if (!x->v.tried)
		return 0;
	struct tr_gate_input in = gate_input(f, t, &x->v);
	if (tr_gate_run(f->rule, &in, pf->accept_all, &x->r, e))
		return -1;
	x->tried = 1;
	x->deployable = x->r.deployed && x->r.coverage >= TR_MIN_COVERAGE;
	if (x->deployable)
		snprintf(x->status, sizeof x->status, "deployable");
	else if (x->r.deployed)
		snprintf(x->status, sizeof x->status, "below %.0f%% coverage (%.4f)", 100 * TR_MIN_COVERAGE,
			 x->r.coverage);
	else
		snprintf(x->status, sizeof x->status, "not deployable");
	return 0;
}

/* The rows a plan is made on, as report.md and gate_audit.json name them. */
static const char *plan_rows(const struct tr_fit *f)
{
	return f->o->oof ? "the fit part's out-of-fold rows" : f->o->crossfit ? "the acceptor's out-of-fold rows"
										 : "validation rows";
}

/*
 * A rule that plans (ltt-plan) at target t: every family is prepared in table order and planned on its
 * validation rows, out-of-fold rows under oof and crossfit (plan_rows; rsb's stage-1 threshold is the one
 * l2d's plan predicts, so nothing here has seen a calibration label), and only the family with the highest predicted coverage is tested, at the full
 * δ. Accept-all families do not compete: accept-all is the last step of every other family's
 * sequence, so choosing it would only forgo the stricter thresholds.
 */
static int plan_target(struct tr_fit *f, int t, struct tr_err *e)
{
	int n = f->n_fam, all[TR_REGISTRY_MAX] = {0}, others = 0;
	struct tr_gate_input in[TR_REGISTRY_MAX] = {{0}};
	struct tr_plan plans[TR_REGISTRY_MAX];
	for (int fam = 0; fam < n; fam++)
		others += !(all[fam] = tr_pol_family_at(fam)->accept_all);
	for (int fam = 0; fam < n; fam++) {
		struct tr_fam_result *x = tr_fit_res(f, t, fam);
		const struct tr_pol_family *pf = tr_pol_family_at(fam);
		if (pf->prepare(f, t, &x->v, e))
			return -1;
		in[fam] = gate_input(f, t, &x->v);
		if (!x->v.tried || (pf->accept_all && others))
			in[fam].val_agree = NULL; /* not a competitor */
		struct tr_plan none = {.start = -1, .backup = -1, .predicted_level = -1};
		x->plan = none;
		if (in[fam].val_agree && tr_ltt_plan(in[fam].val_score, in[fam].val_agree, in[fam].n_val, in[fam].n,
						     in[fam].alpha, in[fam].delta, pf->accept_all, &x->plan, e))
			return -1;
	}
	int best = tr_ltt_plan_choose(in, all, n, plans, e);
	if (best < -1)
		return -1;
	for (int fam = 0; fam < n; fam++) {
		struct tr_fam_result *x = tr_fit_res(f, t, fam);
		if (fam == best || !x->v.tried)
			continue;
		if (tr_pol_family_at(fam)->accept_all && others) {
			snprintf(x->status, sizeof x->status, "last step of the other families");
			snprintf(x->r.reason, sizeof x->r.reason, "%s: accept-all is the last threshold of every other family's "
				 "sequence", f->rule->name);
		} else {
			snprintf(x->status, sizeof x->status, "not chosen by the plan");
			snprintf(x->r.reason, sizeof x->r.reason, "predicted coverage %.4f (plan from %s) below the chosen "
				 "family's", x->plan.expected, plan_rows(f));
		}
	}
	if (best < 0) {
		struct tr_fam_result *x = tr_fit_res(f, t, tr_pol_family_index(&tr_pol_l2d));
		snprintf(x->status, sizeof x->status, "not deployable");
		snprintf(x->r.reason, sizeof x->r.reason, "the plan (%s) predicts no family passes at %.3f with %zu "
			 "calibration rows: nothing tested", plan_rows(f), f->o->targets[t], f->nca);
		return 0;
	}
	return run_family(f, t, best, 1, e);
}

int tr_fit_gate(struct tr_fit *f, const struct tr_rule *rule, struct tr_err *e)
{
	results_free(f);
	f->rule = rule;
	if (!(f->res = tr_calloc((size_t)(f->o->n_targets * f->n_fam), sizeof *f->res)))
		return tr_fail(e, "out of memory");
	for (int i = 0; i < f->o->n_targets * f->n_fam; i++)
		f->res[i].r.threshold = NAN;
	tr_progress_phase(f->o->progress, "gate %s over %d targets", rule->name, f->o->n_targets);
	for (int t = 0; t < f->o->n_targets; t++) {
		tr_progress_step(f->o->progress, (size_t)t, (size_t)f->o->n_targets);
		if (rule->plans) {
			if (plan_target(f, t, e))
				return -1;
			continue;
		}
		for (int fam = 0; fam < f->n_fam; fam++) /* table order: a family may read earlier ones */
			if (run_family(f, t, fam, 0, e))
				return -1;
	}
	return 0;
}

double tr_fit_stage1_threshold(struct tr_fit *f, int t)
{
	int l2d = tr_pol_family_index(&tr_pol_l2d);
	const struct tr_fam_result *x = tr_fit_res(f, t, l2d);
	if (f->rule->plans) {
		const struct tr_plan *p = &x->plan;
		return p->predicted_level > 0 && p->predicted_level < 100 ? p->predicted_threshold : NAN;
	}
	return x->deployable && isfinite(x->r.threshold) ? x->r.threshold : NAN;
}

int tr_fit_best(const struct tr_fit *f, int t)
{
	int best = -1;
	for (int fam = 0; fam < f->n_fam; fam++) {
		const struct tr_fam_result *x = tr_fit_result(f, t, fam), *b = best < 0 ? NULL : tr_fit_result(f, t, best);
		if (!x->deployable)
			continue;
		if (!b || x->r.coverage > b->r.coverage ||
		    (x->r.coverage == b->r.coverage && x->r.agreement > b->r.agreement))
			best = fam;
	}
	return best;
}

double tr_fit_stage_threshold(const struct tr_fam_result *x, int k)
{
	if (k == x->v.n_stages - 1 || isnan(x->v.stage[k].threshold))
		return x->r.threshold;
	return x->v.stage[k].threshold;
}

void tr_fit_info(const struct tr_fit *f, struct tr_fit_info *out)
{
	*out = (struct tr_fit_info){f->n, f->ntr, f->nva, f->nca, f->ca_dropped, f->fam, f->s1->hp, f->s1->val_f1, f->fz};
}

int tr_fit_ood(struct tr_fit *f, struct tr_ood **out, struct tr_err *e)
{
	if (f->ood) { /* fitted beside the fold models */
		*out = f->ood;
		f->ood = NULL;
		return 0;
	}
	return fit_ood_now(f, out, e);
}

static int fit_ood_now(const struct tr_fit *f, struct tr_ood **out, struct tr_err *e)
{
	struct tr_feats Xt;
	int *yt;
	if (rows_view(f, f->tr, f->ntr, &Xt, &yt))
		return tr_fail(e, "out of memory");
	int rc = tr_ood_fit_take(&Xt, yt, f->K, out, e); /* the view's rows are a copy: the guard keeps them */
	tr_feats_view_free(&Xt);
	tr_free(yt);
	return rc;
}

void tr_fit_stage1_view(struct tr_fit *f, struct tr_family_view *v)
{
	*v = (struct tr_family_view){.tried = 1, .score = f->c.score, .val_score = f->c.val_score, .agree = f->c.agree,
				     .val_agree = f->c.val_agree, .n_stages = 1, .stage = {{&f->s1, &f->acc1, NAN}}};
}
