/*
 * surrogate.c - the family table, hyperparameter grids, generic model selection, serialisation and the
 * metrics used to select (macro-F1 against the teacher).
 */
#include "surrogate.h"
#include "../common/progress.h"

#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct tr_family *const tr_families[] = {&tr_family_liblinear, &tr_family_libsvm, &tr_family_knn, &tr_family_softmax, NULL};

const struct tr_family *tr_family_find(const char *name)
{
	for (int i = 0; tr_families[i]; i++)
		if (strcmp(tr_families[i]->name, name) == 0)
			return tr_families[i];
	return NULL;
}

const char *tr_family_list(const char *sep)
{
	static _Thread_local char buf[256];
	size_t len = 0;
	buf[0] = 0;
	for (int i = 0; tr_families[i]; i++) {
		int n = snprintf(buf + len, sizeof buf - len, "%s%s", i ? sep : "", tr_families[i]->name);
		if (n < 0 || (size_t)n >= sizeof buf - len)
			break;
		len += (size_t)n;
	}
	return buf;
}

/* Parses a comma-separated list of values for hparam h into g. */
static int parse_values(const struct tr_family *fam, const struct tr_hparam *h, const char *s, size_t len,
			double *vals, int *n, struct tr_err *e)
{
	*n = 0;
	char buf[512];
	if (len >= sizeof buf)
		return tr_fail(e, "%s: values of %s too long", fam->name, h->name);
	memcpy(buf, s, len);
	buf[len] = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		double v = strtod(tok, &end);
		if (end == tok || *end || !isfinite(v))
			return tr_fail(e, "%s: %s=\"%s\" is not a number", fam->name, h->name, tok);
		if (v < h->min || v > h->max)
			return tr_fail(e, "%s: %s=%g out of range [%g, %g]", fam->name, h->name, v, h->min, h->max);
		if (h->integer && v != floor(v))
			return tr_fail(e, "%s: %s=%g must be a whole number", fam->name, h->name, v);
		if (*n == TR_MAX_GRID)
			return tr_fail(e, "%s: more than %d values for %s", fam->name, TR_MAX_GRID, h->name);
		vals[(*n)++] = v;
	}
	if (*n == 0)
		return tr_fail(e, "%s: no values for %s", fam->name, h->name);
	return 0;
}

int tr_grid_parse(const struct tr_family *fam, const char *spec, struct tr_grid *g, struct tr_err *e)
{
	memset(g, 0, sizeof *g);
	for (const struct tr_hparam *h = fam->hparams; h && h->name; h++, g->n_hp++)
		if (parse_values(fam, h, h->grid, strlen(h->grid), g->vals[g->n_hp], &g->n_vals[g->n_hp], e))
			return -1;
	for (const char *s = spec; s && *s;) {
		const char *semi = strchr(s, ';'), *end = semi ? semi : s + strlen(s);
		const char *eq = memchr(s, '=', (size_t)(end - s));
		if (!eq)
			return tr_fail(e, "%s: expected name=values in \"%.*s\"", fam->name, (int)(end - s), s);
		int k = 0;
		const struct tr_hparam *h = fam->hparams;
		for (; h && h->name; h++, k++)
			if (strlen(h->name) == (size_t)(eq - s) && strncmp(h->name, s, (size_t)(eq - s)) == 0)
				break;
		if (!h || !h->name)
			return tr_fail(e, "%s: unknown parameter \"%.*s\"", fam->name, (int)(eq - s), s);
		if (parse_values(fam, h, eq + 1, (size_t)(end - eq - 1), g->vals[k], &g->n_vals[k], e))
			return -1;
		s = semi ? semi + 1 : end;
	}
	return 0;
}

void tr_argmax_rows(const double *proba, size_t n, int K, int *pred)
{
	for (size_t i = 0; i < n; i++) {
		const double *p = proba + i * (size_t)K;
		int best = 0;
		for (int k = 1; k < K; k++)
			if (p[k] > p[best])
				best = k;
		pred[i] = best;
	}
}

double tr_macro_f1(const int *y, const int *pred, size_t n, int K)
{
	size_t *tp = calloc((size_t)K, sizeof *tp), *fp = calloc((size_t)K, sizeof *fp),
	       *fn = calloc((size_t)K, sizeof *fn);
	if (!tp || !fp || !fn) {
		free(tp), free(fp), free(fn);
		return NAN;
	}
	for (size_t i = 0; i < n; i++) {
		if (y[i] == pred[i])
			tp[y[i]]++;
		else
			fn[y[i]]++, fp[pred[i]]++;
	}
	double sum = 0;
	int labels = 0;
	for (int k = 0; k < K; k++) {
		if (tp[k] + fp[k] + fn[k] == 0)
			continue;
		labels++;
		sum += 2.0 * (double)tp[k] / (double)(2 * tp[k] + fp[k] + fn[k]);
	}
	free(tp), free(fp), free(fn);
	return labels ? sum / labels : 0;
}

void tr_surrogate_free(struct tr_surrogate *s)
{
	if (!s)
		return;
	if (s->model)
		s->fam->free(s->model);
	tr_free(s);
}

int tr_surrogate_predict(const struct tr_surrogate *s, const struct tr_feats *X, double *proba,
			 struct tr_err *e)
{
	if (s->const_label >= 0) {
		memset(proba, 0, X->n * (size_t)s->K * sizeof *proba);
		for (size_t i = 0; i < X->n; i++)
			proba[i * (size_t)s->K + (size_t)s->const_label] = 1.0;
		return 0;
	}
	return s->fam->predict(s->model, X, proba, e);
}

/* The hp vector of grid point `idx` (mixed radix over the hparams, last hparam fastest). */
static void grid_point(const struct tr_grid *g, size_t idx, double *hp)
{
	for (int k = g->n_hp - 1; k >= 0; k--) {
		hp[k] = g->vals[k][idx % (size_t)g->n_vals[k]];
		idx /= (size_t)g->n_vals[k];
	}
}

/* 1 if point idx repeats an earlier one once dense-only hparams are pinned (sparse features). */
static int redundant_point(const struct tr_family *fam, const struct tr_grid *g, size_t idx, int dense)
{
	if (dense)
		return 0;
	for (int k = g->n_hp - 1; k >= 0; k--) {
		if (fam->hparams[k].dense_only && idx % (size_t)g->n_vals[k] != 0)
			return 1;
		idx /= (size_t)g->n_vals[k];
	}
	return 0;
}

/* One grid point to train and score. */
struct point {
	const struct tr_family *fam;
	const struct tr_feats *X, *Xv;
	const int *y, *yv;
	int K;
	uint64_t seed;
	struct tr_surrogate *s;
	int rc;
	struct tr_err err;
};

static void train_point(struct point *pt)
{
	struct tr_surrogate *s = pt->s;
	if (pt->fam->train(pt->X, pt->y, pt->K, s->hp, pt->seed, &s->model, &pt->err)) {
		pt->rc = -1;
		return;
	}
	if (pt->Xv->n == 0)
		return;
	double *proba = tr_malloc(pt->Xv->n * (size_t)pt->K * sizeof *proba);
	int *pred = tr_malloc(pt->Xv->n * sizeof *pred);
	if (!proba || !pred)
		pt->rc = tr_fail(&pt->err, "out of memory");
	else if (pt->fam->predict(s->model, pt->Xv, proba, &pt->err))
		pt->rc = -1;
	else {
		tr_argmax_rows(proba, pt->Xv->n, pt->K, pred);
		s->val_f1 = tr_macro_f1(pt->yv, pred, pt->Xv->n, pt->K);
	}
	tr_free(proba), tr_free(pred);
}

struct jobs {
	void (*run)(void *ctx, size_t i);
	void *ctx;
	size_t n, next, done;
	struct tr_progress *progress; /* steps reported under mu: show() never runs in two threads at once */
	pthread_mutex_t mu;
};

static void *jobs_worker(void *arg)
{
	struct jobs *pl = arg;
	pthread_mutex_lock(&pl->mu);
	for (;;) {
		size_t i = pl->next++;
		pthread_mutex_unlock(&pl->mu);
		if (i >= pl->n)
			return NULL;
		pl->run(pl->ctx, i);
		pthread_mutex_lock(&pl->mu);
		tr_progress_step(pl->progress, ++pl->done, pl->n);
	}
}

void tr_surrogate_jobs(size_t n, int threads, void (*run)(void *ctx, size_t i), void *ctx,
		       struct tr_progress *progress)
{
	if (threads <= 1) {
		for (size_t i = 0; i < n; i++) {
			run(ctx, i);
			tr_progress_step(progress, i + 1, n);
		}
		return;
	}
	struct jobs pl = {.run = run, .ctx = ctx, .n = n, .progress = progress};
	pthread_t th[64];
	int started = 0;
	pthread_mutex_init(&pl.mu, NULL);
	for (; started < threads && started < 64; started++)
		if (pthread_create(&th[started], NULL, jobs_worker, &pl) != 0)
			break;
	if (started == 0)
		jobs_worker(&pl);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&pl.mu);
}

/*
 * Points are taken from the last: grids list C ascending and a larger C trains longer (liblinear 12 s
 * at C = 100 against 5 s at C = 1 on Banking77), so the longest starts first and the short ones fill
 * the other threads. Each point is trained alone and the choice below reads them in grid order, so
 * the order of training changes nothing in the result.
 */
struct search {
	struct point *pts;
	size_t n;
};

static void train_from_last(void *ctx, size_t i)
{
	struct search *sr = ctx;
	train_point(&sr->pts[sr->n - 1 - i]);
}

int tr_surrogate_threads(const struct tr_family *fam, size_t points, int threads)
{
	if (!fam->thread_safe || points < 2)
		return 1;
	long n = threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return (int)((size_t)n < points ? (size_t)n : points);
}

int tr_surrogate_fit(const struct tr_family *fam, const struct tr_grid *grid, const struct tr_feats *X,
		     const int *y, const struct tr_feats *Xv, const int *yv, int K, uint64_t seed, int threads,
		     struct tr_surrogate **out, struct tr_buf *log, struct tr_progress *progress, struct tr_err *e)
{
	*out = NULL;
	int dense = X->dense != NULL;
	if (!(fam->caps & (dense ? TR_CAP_DENSE : TR_CAP_SPARSE)))
		return tr_fail(e, "%s: does not take %s features", fam->name, dense ? "dense" : "sparse");
	if (X->n == 0)
		return tr_fail(e, "%s: no training rows", fam->name);
	int single = 1;
	for (size_t i = 1; i < X->n && single; i++)
		single = y[i] == y[0];
	if (single) {
		struct tr_surrogate *s = tr_calloc(1, sizeof *s);
		if (!s)
			return tr_fail(e, "out of memory");
		*s = (struct tr_surrogate){.fam = fam, .K = K, .val_f1 = NAN, .const_label = y[0]};
		grid_point(grid, 0, s->hp);
		if (log)
			tr_buf_printf(log, "%s: one label in the training rows; constant model\n", fam->name);
		*out = s;
		return 0;
	}
	size_t total = 1;
	for (int k = 0; k < grid->n_hp; k++)
		total *= (size_t)grid->n_vals[k];
	if (Xv->n == 0)
		total = 1; /* nothing to select on: the first grid point */
	struct point *pts = tr_calloc(total, sizeof *pts);
	size_t np = 0;
	int rc = 0;
	if (!pts)
		return tr_fail(e, "out of memory");
	for (size_t idx = 0; idx < total && !rc; idx++) {
		if (redundant_point(fam, grid, idx, dense))
			continue;
		struct tr_surrogate *s = tr_calloc(1, sizeof *s);
		if (!s) {
			rc = tr_fail(e, "out of memory");
			break;
		}
		*s = (struct tr_surrogate){.fam = fam, .K = K, .val_f1 = NAN, .const_label = -1};
		grid_point(grid, idx, s->hp);
		pts[np++] = (struct point){fam, X, Xv, y, yv, K, seed, s, 0, {{0}}};
	}
	int nt = rc ? 1 : tr_surrogate_threads(fam, np, threads), log_steps = progress ? progress->log_steps : 0;
	if (np < 2)
		progress = NULL; /* one point: no search to report */
	if (!rc && progress) {
		/* a phase of its own; each point takes seconds to minutes, so each is worth a log line */
		tr_progress_phase(progress, "surrogate %s grid search over %zu points", fam->name, np);
		progress->log_steps = 1;
	}
	struct search sr = {pts, np};
	if (!rc)
		tr_surrogate_jobs(np, nt, train_from_last, &sr, progress);
	if (progress)
		progress->log_steps = log_steps;
	struct tr_surrogate *best = NULL;
	for (size_t i = 0; i < np; i++) {
		struct point *pt = &pts[i];
		if (!rc && pt->rc) {
			rc = -1;
			if (e)
				*e = pt->err;
		}
		if (!rc && log) {
			tr_buf_printf(log, "%s:", fam->name);
			for (int k = 0; k < grid->n_hp; k++)
				if (dense || !fam->hparams[k].dense_only)
					tr_buf_printf(log, " %s=%g", fam->hparams[k].name, pt->s->hp[k]);
			tr_buf_printf(log, " validation macro-F1 %.4f\n", pt->s->val_f1);
		}
		if (!rc && (!best || pt->s->val_f1 > best->val_f1)) {
			tr_surrogate_free(best);
			best = pt->s;
		} else {
			tr_surrogate_free(pt->s);
		}
	}
	tr_free(pts);
	if (rc) {
		tr_surrogate_free(best);
		return -1;
	}
	*out = best;
	return 0;
}

int tr_surrogate_save(const struct tr_surrogate *s, struct tr_buf *out, struct tr_err *e)
{
	int32_t head[2] = {s->K, s->const_label};
	if (tr_buf_printf(out, "tracer-surrogate 2 %s\n", s->fam->name) || tr_buf_add(out, head, sizeof head) ||
	    tr_buf_add(out, s->hp, sizeof s->hp) || tr_buf_add(out, &s->val_f1, sizeof s->val_f1) ||
	    (s->const_label < 0 && s->fam->save(s->model, out)))
		return tr_fail(e, "out of memory while saving the %s model", s->fam->name);
	return 0;
}

int tr_surrogate_load(const char *what, const char *data, size_t len, struct tr_surrogate **out,
		      struct tr_err *e)
{
	*out = NULL;
	const char *nl = memchr(data, '\n', len < 128 ? len : 128);
	char name[64];
	if (!nl || sscanf(data, "tracer-surrogate 2 %63s", name) != 1)
		return tr_fail(e, "%s:1: not a tracer surrogate (format 2)", what);
	const struct tr_family *fam = tr_family_find(name);
	if (!fam)
		return tr_fail(e, "%s:1: unknown surrogate family \"%s\"", what, name);
	struct tr_cursor c = {nl + 1, data + len};
	struct tr_surrogate *s = tr_calloc(1, sizeof *s);
	int32_t head[2];
	if (!s)
		return tr_fail(e, "%s: out of memory", what);
	s->fam = fam;
	if (tr_cursor_take(&c, head, sizeof head) || tr_cursor_take(&c, s->hp, sizeof s->hp) ||
	    tr_cursor_take(&c, &s->val_f1, sizeof s->val_f1) || head[0] < 1 || head[1] >= head[0] ||
	    head[1] < -1) {
		tr_free(s);
		return tr_fail(e, "%s: truncated or corrupt surrogate header", what);
	}
	s->K = head[0];
	s->const_label = head[1];
	if (s->const_label < 0 && fam->load(what, &c, s->K, &s->model, e)) {
		tr_free(s);
		return -1;
	}
	*out = s;
	return 0;
}
