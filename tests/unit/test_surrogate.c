/*
 * Contract test of every registered surrogate family (a new family is tested by adding it to the
 * table): probabilities well-formed, save/load bit-identical, same seed same model, bad parameters
 * rejected, tiny and two-class problems, labels absent from training get 0, a separable problem
 * learned, random labels stay near chance.
 */
#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/common/progress.h"
#include "../../src/surrogate/surrogate.h"
#include "unit.h"

#define DIM 40

static int pad_byte; /* fills the row pool before the rows are written: struct padding holds it */

/* n rows; label = y[i]. Separable: feature y+1 carries the label; noise elsewhere. */
static void make(struct tr_feats *X, int *y, size_t n, int K, int dense, int random_labels, uint64_t seed)
{
	gsl_rng *r = tr_rng_new(seed);
	memset(X, 0, sizeof *X);
	X->n = n;
	X->dim = DIM;
	X->rows = malloc(n * sizeof *X->rows);
	X->pool = malloc(n * (DIM + 1) * sizeof *X->pool);
	memset(X->pool, pad_byte, n * (DIM + 1) * sizeof *X->pool);
	if (dense)
		X->dense = malloc(n * DIM * sizeof *X->dense);
	for (size_t i = 0; i < n; i++) {
		y[i] = (int)gsl_rng_uniform_int(r, (unsigned long)K);
		double v[DIM], ss = 0;
		for (int d = 0; d < DIM; d++) {
			v[d] = gsl_rng_uniform(r) < (dense ? 1.0 : 0.2) ? 0.3 * gsl_rng_uniform(r) : 0;
			if (!random_labels && d == y[i])
				v[d] += 1.0;
			ss += v[d] * v[d];
		}
		struct tr_node *row = X->pool + i * (DIM + 1);
		int m = 0;
		for (int d = 0; d < DIM; d++) {
			v[d] /= sqrt(ss);
			if (dense)
				X->dense[i * DIM + (size_t)d] = v[d];
			if (v[d] != 0)
				row[m++] = (struct tr_node){d + 1, v[d]};
		}
		row[m] = (struct tr_node){-1, 0};
		X->rows[i] = row;
	}
	if (random_labels)
		for (size_t i = 0; i < n; i++)
			y[i] = (int)gsl_rng_uniform_int(r, (unsigned long)K);
	gsl_rng_free(r);
}

static double accuracy(const struct tr_surrogate *s, const struct tr_feats *X, const int *y, int K)
{
	double *p = malloc(X->n * (size_t)K * sizeof *p);
	int *pred = malloc(X->n * sizeof *pred);
	struct tr_err e;
	tr_surrogate_predict(s, X, p, &e);
	tr_argmax_rows(p, X->n, K, pred);
	size_t ok = 0;
	for (size_t i = 0; i < X->n; i++)
		ok += pred[i] == y[i];
	free(p), free(pred);
	return (double)ok / (double)X->n;
}

/* Probabilities finite, in [0, 1], rows summing to 1, and 0 for labels in `absent` (if >= 0). */
static int well_formed(const double *p, size_t n, int K, int absent)
{
	for (size_t i = 0; i < n; i++) {
		double sum = 0;
		for (int k = 0; k < K; k++) {
			double v = p[i * (size_t)K + (size_t)k];
			if (!isfinite(v) || v < 0 || v > 1 || (k == absent && v != 0))
				return 0;
			sum += v;
		}
		if (fabs(sum - 1) > 1e-9)
			return 0;
	}
	return 1;
}

static struct tr_surrogate *fit(const struct tr_family *fam, const char *grid, const struct tr_feats *X,
				const int *y, const struct tr_feats *V, const int *yv, int K, uint64_t seed)
{
	struct tr_grid g;
	struct tr_err e;
	struct tr_surrogate *s = NULL;
	if (tr_grid_parse(fam, grid, &g, &e) || tr_surrogate_fit(fam, &g, X, y, V, yv, K, seed, 0, &s, NULL, NULL, &e))
		CHECK(0, "%s: %s", fam->name, e.msg);
	return s;
}

static void free_feats(struct tr_feats *X)
{
	free(X->rows), free(X->pool), free(X->dense);
}

static void contract(const struct tr_family *fam, int dense)
{
	const char *kind = dense ? "dense" : "sparse";
	enum { N = 400, NV = 200, K = 5 };
	static int y[N], yv[NV];
	struct tr_feats X, V;
	make(&X, y, N, K, dense, 0, 1);
	make(&V, yv, NV, K, dense, 0, 2);
	/* label 4 never appears in training */
	for (size_t i = 0; i < N; i++)
		if (y[i] == 4)
			y[i] = 3;
	struct tr_surrogate *s = fit(fam, NULL, &X, y, &V, yv, K, 11);
	if (!s)
		return;
	double *p = malloc(NV * K * sizeof *p), *q = malloc(NV * K * sizeof *q);
	struct tr_err e;
	CHECK(tr_surrogate_predict(s, &V, p, &e) == 0, "%s", e.msg);
	CHECK(well_formed(p, NV, K, 4), "%s/%s: probabilities not well formed", fam->name, kind);
	/* save -> load: bit-identical probabilities */
	struct tr_buf b1 = {0}, b2 = {0};
	CHECK(tr_surrogate_save(s, &b1, &e) == 0, "%s", e.msg);
	struct tr_surrogate *l = NULL;
	CHECK(tr_surrogate_load("m.bin", b1.data, b1.len, &l, &e) == 0, "%s/%s: %s", fam->name, kind, e.msg);
	if (l) {
		CHECK(tr_surrogate_predict(l, &V, q, &e) == 0 && memcmp(p, q, NV * K * sizeof *p) == 0,
		      "%s/%s: save/load changed probabilities", fam->name, kind);
		tr_surrogate_free(l);
	}
	/* a truncated model file is an error, never a crash */
	for (size_t cut = 0; cut < b1.len; cut += b1.len / 7 + 1) {
		CHECK(tr_surrogate_load("cut.bin", b1.data, cut, &l, &e) == -1, "%s: truncated at %zu accepted",
		      fam->name, cut);
	}
	/* a file of the format before field-by-field nodes is refused by name */
	char *old = malloc(b1.len);
	memcpy(old, b1.data, b1.len);
	old[strlen("tracer-surrogate ")] = '1';
	CHECK(tr_surrogate_load("old.bin", old, b1.len, &l, &e) == -1, "%s/%s: format 1 accepted", fam->name, kind);
	CHECK_ERR(e, "old.bin:1: not a tracer surrogate (format 2)");
	free(old);
	/* same seed -> same model, with other bytes in the rows' struct padding (none reaches the file) */
	free_feats(&X);
	pad_byte = 0xa5;
	make(&X, y, N, K, dense, 0, 1);
	pad_byte = 0;
	for (size_t i = 0; i < N; i++)
		if (y[i] == 4)
			y[i] = 3;
	struct tr_surrogate *s2 = fit(fam, NULL, &X, y, &V, yv, K, 11);
	if (s2) {
		tr_surrogate_save(s2, &b2, &e);
		CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0, "%s/%s: same seed, other model",
		      fam->name, kind);
		tr_surrogate_free(s2);
	}
	/* separable problem learned (label 4 excluded from the check) */
	size_t ok = 0, n = 0;
	int *pred = malloc(NV * sizeof *pred);
	tr_argmax_rows(p, NV, K, pred);
	for (size_t i = 0; i < NV; i++)
		if (yv[i] != 4)
			n++, ok += pred[i] == yv[i];
	CHECK((double)ok / (double)n >= 0.99, "%s/%s: separable accuracy %.3f", fam->name, kind,
	      (double)ok / (double)n);
	free(pred), free(p), free(q);
	tr_buf_free(&b1), tr_buf_free(&b2);
	tr_surrogate_free(s);
	free_feats(&X), free_feats(&V);

	/* random labels: near chance on fresh rows (no leakage) */
	make(&X, y, N, K, dense, 1, 3);
	make(&V, yv, NV, K, dense, 1, 4);
	s = fit(fam, NULL, &X, y, &V, yv, K, 1);
	if (s) {
		double acc = accuracy(s, &V, yv, K);
		CHECK(acc < 1.0 / K + 0.12, "%s/%s: random labels give accuracy %.3f", fam->name, kind, acc);
		tr_surrogate_free(s);
	}
	free_feats(&X), free_feats(&V);

	/* two classes, and one row per class */
	make(&X, y, 60, 2, dense, 0, 5);
	s = fit(fam, NULL, &X, y, &X, y, 2, 1);
	if (s) {
		CHECK(accuracy(s, &X, y, 2) > 0.95, "%s/%s: two classes", fam->name, kind);
		tr_surrogate_free(s);
	}
	free_feats(&X);
	int y1[K];
	make(&X, y1, K, K, dense, 0, 6);
	for (int i = 0; i < K; i++)
		y1[i] = i;
	s = fit(fam, NULL, &X, y1, &X, y1, K, 1);
	if (s) {
		double pr[K * K];
		CHECK(tr_surrogate_predict(s, &X, pr, &e) == 0 && well_formed(pr, K, K, -1),
		      "%s/%s: one row per class", fam->name, kind);
		tr_surrogate_free(s);
	}
	free_feats(&X);
}

static void bad_params(const struct tr_family *fam)
{
	struct tr_grid g;
	struct tr_err e;
	CHECK(tr_grid_parse(fam, NULL, &g, &e) == 0 && g.n_hp >= 1, "%s: defaults", fam->name);
	const char *first = fam->hparams[0].name;
	char spec[64];
	snprintf(spec, sizeof spec, "%s=-5", first);
	CHECK(tr_grid_parse(fam, spec, &g, &e) == -1, "%s: negative accepted", fam->name);
	CHECK_ERR(e, "out of range");
	snprintf(spec, sizeof spec, "%s=abc", first);
	CHECK(tr_grid_parse(fam, spec, &g, &e) == -1, "%s: text accepted", fam->name);
	CHECK_ERR(e, "is not a number");
	CHECK(tr_grid_parse(fam, "nosuch=1", &g, &e) == -1, "%s: unknown name accepted", fam->name);
	CHECK_ERR(e, "unknown parameter \"nosuch\"");
	snprintf(spec, sizeof spec, "%s=", first);
	CHECK(tr_grid_parse(fam, spec, &g, &e) == -1, "%s: empty list accepted", fam->name);
}

/*
 * softmax's solver reaches the optimum: with two labels, the multinomial model at C equals binary
 * logistic regression at 2C (the optimum has w1 = -w0, so |W|^2 / 2 = |w1 - w0|^2 / 4), which
 * liblinear solves by a different method (trust-region Newton). Their probabilities must agree.
 */
static void softmax_optimum(int dense)
{
	enum { N = 300, K = 2 };
	static int y[N];
	struct tr_feats X;
	make(&X, y, N, K, dense, 1, 5); /* random labels: a non-trivial optimum */
	struct tr_feats none = {0};
	struct tr_surrogate *s = fit(&tr_family_softmax, "C=3", &X, y, &none, NULL, K, 1);
	struct tr_surrogate *l = fit(&tr_family_liblinear, "C=6", &X, y, &none, NULL, K, 1);
	double *p = malloc(N * K * sizeof *p), *q = malloc(N * K * sizeof *q), worst = 0, spread = 0;
	struct tr_err e;
	if (s && l && tr_surrogate_predict(s, &X, p, &e) == 0 && tr_surrogate_predict(l, &X, q, &e) == 0)
		for (size_t i = 0; i < N; i++) {
			worst = fmax(worst, fabs(p[2 * i] - q[2 * i]));
			spread = fmax(spread, fabs(p[2 * i] - 0.5));
		}
	else
		CHECK(0, "softmax/liblinear equivalence: no model (%s)", e.msg);
	CHECK(spread > 0.05, "softmax %s: probabilities all near 0.5 (%g): nothing compared", dense ? "dense" : "sparse",
	      spread);
	CHECK(worst < 0.01, "softmax %s: probability %g away from the binary optimum", dense ? "dense" : "sparse", worst);
	tr_surrogate_free(s), tr_surrogate_free(l);
	free(p), free(q);
	free_feats(&X);
}

/* libsvm on sparse rows, trained pair by pair, is bit for bit the model of one svm_train call on the
 * whole Gram matrix (classes in an order that is not ascending, and one class absent). */
static void libsvm_pairs(void)
{
	enum { N = 240, K = 6 };
	static int y[N];
	struct tr_feats X;
	make(&X, y, N, K, 0, 0, 7);
	for (size_t i = 0; i < N; i++)
		y[i] = y[i] == 2 ? 4 : y[i]; /* label 2 absent */
	struct tr_feats none = {0};
	struct tr_buf a = {0}, b = {0};
	struct tr_err e;
	struct tr_surrogate *s = fit(&tr_family_libsvm, "C=1", &X, y, &none, NULL, K, 3);
	tr_libsvm_whole_gram = 1;
	struct tr_surrogate *w = fit(&tr_family_libsvm, "C=1", &X, y, &none, NULL, K, 3);
	tr_libsvm_whole_gram = 0;
	CHECK(s && w && tr_surrogate_save(s, &a, &e) == 0 && tr_surrogate_save(w, &b, &e) == 0, "libsvm pairs: no model");
	CHECK(a.len > 0 && a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
	      "libsvm pairs: model differs from one svm_train call (%zu vs %zu bytes)", a.len, b.len);
	tr_surrogate_free(s), tr_surrogate_free(w);
	tr_buf_free(&a), tr_buf_free(&b);
	free_feats(&X);
}

/*
 * libsvm's sparse-row prediction by blocks (our sums, sigmoid and coupling) is libsvm's own
 * svm_predict_probability bit for bit, with the same labels (two classes, and K classes in a
 * non-ascending order with one absent, so the coupling runs; 200 rows: several blocks, the last partial).
 */
static void libsvm_blocks(void)
{
	enum { N = 300, T = 200 };
	const int Ks[] = {2, 7};
	for (int v = 0; v < 2; v++) {
		int K = Ks[v];
		static int y[N], yt[T];
		struct tr_feats X, Xt, none = {0};
		make(&X, y, N, K, 0, 0, 11 + (uint64_t)v);
		make(&Xt, yt, T, K, 0, 0, 21 + (uint64_t)v);
		for (size_t i = 0; K > 2 && i < N; i++)
			y[i] = y[i] == 3 ? 5 : y[i]; /* label 3 absent */
		struct tr_surrogate *s = fit(&tr_family_libsvm, "C=1", &X, y, &none, NULL, K, 5);
		double *p = malloc(T * (size_t)K * sizeof *p), *q = malloc(T * (size_t)K * sizeof *q);
		int lp[T], lq[T];
		struct tr_err e;
		CHECK(s && tr_surrogate_predict(s, &Xt, p, &e) == 0, "libsvm blocks K=%d: no prediction", K);
		tr_libsvm_kernel_predict = 1;
		CHECK(s && tr_surrogate_predict(s, &Xt, q, &e) == 0, "libsvm kernel K=%d: no prediction", K);
		tr_libsvm_kernel_predict = 0;
		double worst = 0, spread = 0;
		for (size_t i = 0; i < T * (size_t)K; i++) {
			worst = fmax(worst, fabs(p[i] - q[i]));
			spread = fmax(spread, fabs(q[i] - 1.0 / K));
		}
		tr_argmax_rows(p, T, K, lp), tr_argmax_rows(q, T, K, lq);
		int same = 0;
		for (int i = 0; i < T; i++)
			same += lp[i] == lq[i];
		CHECK(spread > 0.2, "libsvm K=%d: probabilities all near 1/K (%g): nothing compared", K, spread);
		CHECK(worst == 0 && memcmp(p, q, T * (size_t)K * sizeof *p) == 0,
		      "libsvm K=%d: probabilities %g away from svm_predict_probability (bit for bit expected)", K, worst);
		CHECK(same == T, "libsvm K=%d: %d of %d labels differ from svm_predict_probability", K, T - same, T);
		/* a model read back predicts the same probabilities bit for bit */
		struct tr_buf b = {0};
		struct tr_surrogate *back = NULL;
		double *r = malloc(T * (size_t)K * sizeof *r);
		CHECK(tr_surrogate_save(s, &b, &e) == 0 && tr_surrogate_load("m", b.data, b.len, &back, &e) == 0 &&
			      tr_surrogate_predict(back, &Xt, r, &e) == 0 && memcmp(p, r, T * (size_t)K * sizeof *r) == 0,
		      "libsvm K=%d: loaded model predicts otherwise", K);
		tr_surrogate_free(back), tr_buf_free(&b), free(r);
		tr_surrogate_free(s);
		free(p), free(q);
		free_feats(&X), free_feats(&Xt);
	}
}

/* What a grid search reported through its progress. */
struct seen {
	int phases, steps, log_steps, out_of_order;
	size_t done, total;
	char phase[160];
};

static void seen_show(void *ctx, const struct tr_progress *p, int phase_changed)
{
	struct seen *s = ctx;
	if (phase_changed) {
		s->phases++;
		snprintf(s->phase, sizeof s->phase, "%s", p->phase);
		return;
	}
	s->steps++;
	s->out_of_order += p->done != s->done + 1;
	s->done = p->done, s->total = p->total;
	s->log_steps += p->log_steps;
}

/* Model bytes of a fit (for comparing fits with and without progress). */
static struct tr_buf saved(const struct tr_surrogate *s)
{
	struct tr_buf b = {0};
	struct tr_err e;
	CHECK(s && tr_surrogate_save(s, &b, &e) == 0, "save");
	return b;
}

/* The grid search reports a phase and one step per point, in order, from one or two threads; one point
 * reports nothing; the model does not depend on whether progress is watched. */
static void grid_progress(void)
{
	enum { N = 300, NV = 100, K = 4 };
	static int y[N], yv[NV];
	struct tr_feats X, V;
	make(&X, y, N, K, 0, 0, 21);
	make(&V, yv, NV, K, 0, 0, 22);
	struct tr_grid g, one;
	struct tr_err e;
	CHECK(tr_grid_parse(&tr_family_liblinear, "C=0.1,1,10,100", &g, &e) == 0 &&
		      tr_grid_parse(&tr_family_liblinear, "C=1", &one, &e) == 0,
	      "grids");
	struct tr_buf one_thread = {0};
	for (int threads = 1; threads <= 2; threads++) {
		struct seen s = {0};
		struct tr_progress p;
		tr_progress_init(&p, "test");
		p.show = seen_show, p.ctx = &s;
		struct tr_surrogate *a = NULL, *b = NULL;
		CHECK(tr_surrogate_fit(&tr_family_liblinear, &g, &X, y, &V, yv, K, 5, threads, &a, NULL, &p, &e) == 0,
		      "fit: %s", e.msg);
		CHECK(s.phases == 1 && strcmp(s.phase, "surrogate liblinear grid search over 4 points") == 0,
		      "%d threads: %d phases, last \"%s\"", threads, s.phases, s.phase);
		CHECK(s.steps == 4 && s.done == 4 && s.total == 4 && s.out_of_order == 0,
		      "%d threads: %d steps, last %zu/%zu, %d out of order", threads, s.steps, s.done, s.total,
		      s.out_of_order);
		CHECK(s.log_steps == 4 && p.log_steps == 0, "each point a log line (%d of 4), log_steps restored (%d)",
		      s.log_steps, p.log_steps);
		CHECK(tr_surrogate_fit(&tr_family_liblinear, &g, &X, y, &V, yv, K, 5, threads, &b, NULL, NULL, &e) == 0,
		      "fit without progress: %s", e.msg);
		struct tr_buf ba = saved(a), bb = saved(b);
		CHECK(ba.len == bb.len && ba.len && memcmp(ba.data, bb.data, ba.len) == 0,
		      "%d threads: same model with and without progress", threads);
		/* two threads take the points from the last: the same point is chosen, bit for bit */
		if (threads == 1)
			one_thread = ba, ba = (struct tr_buf){0};
		else
			CHECK(ba.len == one_thread.len && memcmp(ba.data, one_thread.data, ba.len) == 0,
			      "2 threads: the model 1 thread chooses");
		tr_buf_free(&ba), tr_buf_free(&bb);
		tr_surrogate_free(a), tr_surrogate_free(b);
		s = (struct seen){0};
		CHECK(tr_surrogate_fit(&tr_family_liblinear, &one, &X, y, &V, yv, K, 5, threads, &a, NULL, &p, &e) == 0 &&
			      s.phases == 0 && s.steps == 0,
		      "one point: no search reported (%d phases, %d steps)", s.phases, s.steps);
		tr_surrogate_free(a);
	}
	tr_buf_free(&one_thread);
	free_feats(&X), free_feats(&V);
}

/*
 * liblinear's prediction by blocks, feature by feature, is predict_probability's bit for bit: two labels
 * and K labels with one absent, 600 rows (two whole blocks and a partial one), a tail of 15 rows (one at a
 * time) and of 16 (a block), two rows whose features descend (left to predict_probability), odd
 * rows (empty, repeated features, zero and negative values, the bias feature's index and indices above
 * it), a model read back, and a model whose bias is not 1 refused.
 */
static void liblinear_blocks(void)
{
	enum { N = 300, T = 600 };
	const int Ks[] = {2, 6};
	const size_t tails[] = {15, 16, 271, T};
	for (int v = 0; v < 2; v++) {
		int K = Ks[v];
		static int y[N], yt[T];
		struct tr_feats X, Xt, none = {0};
		make(&X, y, N, K, 0, 0, 31 + (uint64_t)v);
		make(&Xt, yt, T, K, 0, 0, 41 + (uint64_t)v);
		for (size_t i = 0; K > 2 && i < N; i++)
			y[i] = y[i] == 1 ? 5 : y[i]; /* label 1 absent */
		/* rows 7 and 300: their features in descending order (three or more: the sums' order matters) */
		for (int i = 7; i <= 300; i += 293) {
			struct tr_node *r = Xt.rows[i];
			int m = 0;
			while (r[m].index != -1)
				m++;
			CHECK(m >= 3, "liblinear blocks: row %d has %d features", i, m);
			for (int a = 0, z = m - 1; a < z; a++, z--) {
				struct tr_node t = r[a];
				r[a] = r[z], r[z] = t;
			}
		}
		struct tr_surrogate *s = fit(&tr_family_liblinear, "C=3", &X, y, &none, NULL, K, 5);
		double *p = malloc(T * (size_t)K * sizeof *p), *q = malloc(T * (size_t)K * sizeof *q);
		struct tr_err e;
		for (size_t k = 0; s && k < sizeof tails / sizeof *tails; k++) {
			struct tr_feats part = Xt;
			part.n = tails[k];
			size_t n = part.n * (size_t)K;
			memset(p, 0xff, n * sizeof *p), memset(q, 0, n * sizeof *q);
			CHECK(tr_surrogate_predict(s, &part, p, &e) == 0, "liblinear blocks K=%d: %s", K, e.msg);
			tr_liblinear_row_predict = 1;
			CHECK(tr_surrogate_predict(s, &part, q, &e) == 0, "liblinear rows K=%d: %s", K, e.msg);
			tr_liblinear_row_predict = 0;
			double worst = 0, spread = 0;
			for (size_t i = 0; i < n; i++)
				worst = fmax(worst, fabs(p[i] - q[i])), spread = fmax(spread, fabs(q[i] - 1.0 / K));
			CHECK(spread > 0.2, "liblinear K=%d: probabilities all near 1/K (%g): nothing compared", K, spread);
			CHECK(memcmp(p, q, n * sizeof *p) == 0,
			      "liblinear K=%d, %zu rows: probabilities %g away from predict_probability (bit for bit expected)",
			      K, part.n, worst);
		}
		/* odd rows (DIM = 40 = nr_feature; the bias is feature 41, which liblinear reads in a row too,
		 * and features above it it skips): empty, a repeated feature, a zero and a negative value,
		 * feature 41, features 42 and 50, large values; then ordinary rows, 40 in all (one block) */
		enum { NO = 40 };
		static struct tr_node odd[NO][DIM + 1];
		static const struct tr_node head[][4] = {
			{{-1, 0}},
			{{3, 0.5}, {3, 0.25}, {-1, 0}},
			{{5, 0.0}, {7, -0.4}, {-1, 0}},
			{{2, 0.3}, {DIM + 1, 0.6}, {-1, 0}},
			{{2, 0.3}, {DIM + 2, 0.6}, {DIM + 10, 1.0}, {-1, 0}},
			{{1, 1e6}, {2, -3e5}, {-1, 0}},
		};
		struct tr_node *odd_rows[NO];
		for (int i = 0; i < NO; i++) {
			size_t h = sizeof head / sizeof *head;
			const struct tr_node *from = i < (int)h ? head[i] : Xt.rows[i];
			int m = 0;
			do
				odd[i][m] = from[m];
			while (from[m++].index != -1);
			odd_rows[i] = odd[i];
		}
		struct tr_feats O = {.n = NO, .dim = DIM, .rows = odd_rows};
		double *po = malloc(NO * (size_t)K * sizeof *po), *qo = malloc(NO * (size_t)K * sizeof *qo);
		CHECK(s && tr_surrogate_predict(s, &O, po, &e) == 0, "liblinear odd rows K=%d: %s", K, e.msg);
		tr_liblinear_row_predict = 1;
		CHECK(s && tr_surrogate_predict(s, &O, qo, &e) == 0, "liblinear odd rows K=%d: %s", K, e.msg);
		tr_liblinear_row_predict = 0;
		for (int i = 0; i < NO; i++)
			CHECK(memcmp(po + i * K, qo + i * K, (size_t)K * sizeof *po) == 0,
			      "liblinear K=%d: odd row %d differs from predict_probability", K, i);
		free(po), free(qo);
		struct tr_buf b = {0};
		struct tr_surrogate *back = NULL;
		double *r = malloc(T * (size_t)K * sizeof *r);
		CHECK(s && tr_surrogate_save(s, &b, &e) == 0 && tr_surrogate_load("m", b.data, b.len, &back, &e) == 0 &&
			      tr_surrogate_predict(back, &Xt, r, &e) == 0 && memcmp(p, r, T * (size_t)K * sizeof *r) == 0,
		      "liblinear K=%d: loaded model predicts otherwise", K);
		/* a model whose bias is not 1 is refused (predict_values would skip the bias feature if it were < 0) */
		struct tr_surrogate *neg = NULL;
		if (b.data) {
			unsigned char *m = (unsigned char *)b.data;
			size_t at;
			double one = 1.0, minus = -1.0;
			for (at = 0; at + sizeof one <= b.len && memcmp(m + at, &one, sizeof one) != 0; at++)
				;
			CHECK(at + sizeof one <= b.len, "liblinear K=%d: no bias 1 in the saved model", K);
			if (at + sizeof one <= b.len) {
				memcpy(m + at, &minus, sizeof minus);
				CHECK(tr_surrogate_load("m", b.data, b.len, &neg, &e) == -1, "liblinear K=%d: bias -1 loaded", K);
				CHECK_ERR(e, "corrupt liblinear model");
				memcpy(m + at, &one, sizeof one);
			}
		}
		tr_surrogate_free(neg);
		tr_surrogate_free(back), tr_buf_free(&b), free(r);
		tr_surrogate_free(s);
		free(p), free(q);
		free_feats(&X), free_feats(&Xt);
	}
}

/*
 * A knn model file's k is bounded by its hyperparameter's range (1..1000): prediction allocates by k
 * before it reads a row, and a crafted file with k = 2^31 - 1 asked the fuzzer for 6.8 GB.
 */
enum { KNN_N = 60, KNN_K = 3 };

/* A knn model with k = 5 on KNN_N rows of KNN_K labels (dense or sparse), made from seed into X. */
static struct tr_surrogate *small_knn(int dense, uint64_t seed, struct tr_feats *X)
{
	static int y[KNN_N];
	struct tr_feats none = {0};
	make(X, y, KNN_N, KNN_K, dense, 0, seed);
	return fit(&tr_family_knn, "k=5", X, y, &none, NULL, KNN_K, 1);
}

static void knn_bounded_k(void)
{
	struct tr_feats X;
	struct tr_surrogate *s = small_knn(0, 5, &X);
	struct tr_buf b = {0};
	struct tr_err e;
	CHECK(s && tr_surrogate_save(s, &b, &e) == 0, "knn: saved");
	/* the family's header starts with K then k, both int32 */
	int32_t want[2] = {KNN_K, 5};
	size_t at = 0;
	for (at = 0; b.data && at + sizeof want <= b.len && memcmp(b.data + at, want, sizeof want) != 0; at++)
		;
	CHECK(b.data && at + sizeof want <= b.len, "knn: no (K, k) header in the saved model");
	if (b.data && at + sizeof want <= b.len) {
		static const int32_t ks[] = {1000, 1001, 2147483647, 0};
		for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
			struct tr_surrogate *l = NULL;
			memcpy(b.data + at + sizeof(int32_t), &ks[i], sizeof ks[i]);
			int rc = tr_surrogate_load("k.bin", b.data, b.len, &l, &e);
			CHECK(rc == (ks[i] == 1000 ? 0 : -1), "knn: a model with k = %d %s", (int)ks[i],
			      rc ? "refused" : "loaded");
			if (rc)
				CHECK_ERR(e, "k.bin: corrupt knn model header");
			tr_surrogate_free(l);
		}
	}
	tr_buf_free(&b);
	tr_surrogate_free(s);
	free_feats(&X);
}

/* Dense rows of another dimension than a knn model's are refused (its product read m->dim values a row). */
static void knn_dense_dim(void)
{
	struct tr_feats X;
	struct tr_surrogate *s = small_knn(1, 6, &X);
	double *p = malloc(KNN_N * KNN_K * sizeof *p);
	struct tr_err e;
	CHECK(s && tr_surrogate_predict(s, &X, p, &e) == 0, "knn dense: predicts its own rows");
	struct tr_feats narrow = X, wide = X;
	narrow.dim = DIM - 1, narrow.n = KNN_N / 2;
	wide.dim = DIM + 1, wide.n = KNN_N / 2;
	CHECK(s && tr_surrogate_predict(s, &narrow, p, &e) == -1, "knn dense: rows of DIM - 1 predicted");
	CHECK_ERR(e, "knn: rows of 39 dimensions, the model was trained on 40");
	CHECK(s && tr_surrogate_predict(s, &wide, p, &e) == -1, "knn dense: rows of DIM + 1 predicted");
	free(p);
	tr_surrogate_free(s);
	free_feats(&X);
}

int main(void)
{
	tr_gsl_init();
	for (int i = 0; tr_families[i]; i++) {
		const struct tr_family *fam = tr_families[i];
		CHECK(fam->caps & TR_CAP_PROBA, "%s gives probabilities", fam->name);
		bad_params(fam);
		if (fam->caps & TR_CAP_SPARSE)
			contract(fam, 0);
		if (fam->caps & TR_CAP_DENSE)
			contract(fam, 1);
	}
	softmax_optimum(0);
	softmax_optimum(1);
	libsvm_pairs();
	libsvm_blocks();
	liblinear_blocks();
	knn_bounded_k();
	knn_dense_dim();
	grid_progress();
	struct tr_grid g;
	struct tr_err e;
	CHECK(tr_grid_parse(&tr_family_knn, "k=2.5", &g, &e) == -1, "fractional k");
	CHECK_ERR(e, "must be a whole number");
	int y[4] = {0, 1, 1, 2}, p[4] = {0, 1, 2, 2};
	double f1 = tr_macro_f1(y, p, 4, 5);
	CHECK(fabs(f1 - (1.0 + 2.0 / 3 + 2.0 / 3) / 3) < 1e-12, "macro-F1 %g", f1);
	return unit_done();
}
