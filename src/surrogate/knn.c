/*
 * knn.c - cosine k-nearest neighbours over the training traces (the smallest family: read this one to
 * see how a family plugs in).
 *
 * Rows are L2-normalised by the featurizer, so cosine similarity is a dot product: sparse rows go
 * through the exact pruned top-k search (tr_sparse_knn_top: the neighbours and similarities of a full
 * scan), dense rows through BLAS (gsl_blas_dgemm, linked to OpenBLAS). The
 * probability of a label is its share of the similarity-weighted votes of the k nearest rows, smoothed
 * by TR_KNN_SMOOTH so that no label seen in training is exactly 0; labels absent from the training rows
 * get 0, as with the other families. Ties in similarity go to the lower training row.
 */
#include <gsl/gsl_blas.h>
#include <stdlib.h>
#include <string.h>

#include "surrogate.h"

#define TR_KNN_SMOOTH 1e-3
#define TR_KNN_BLOCK 256 /* query rows per BLAS product */
#define KNN_K_MAX 1000	 /* the largest k a model may have (its hyperparameter's range) */

struct knn {
	int K, k, dim;
	size_t n;
	int *y;
	int *present;	       /* K flags: label seen in training */
	double *dense;	       /* n × dim, or NULL for sparse */
	struct tr_node *nodes; /* sparse rows, concatenated, each ended by -1 */
	size_t n_nodes;
	struct tr_sparse_knn *ix;
};

static void knn_free(void *model)
{
	struct knn *m = model;
	if (!m)
		return;
	tr_free(m->y), tr_free(m->present), tr_free(m->dense), tr_free(m->nodes);
	tr_sparse_knn_free(m->ix);
	tr_free(m);
}

static int knn_train(const struct tr_feats *X, const int *y, int K, const double *hp, uint64_t seed,
		     void **model, struct tr_err *e)
{
	(void)seed; /* nothing random */
	struct knn *m = tr_calloc(1, sizeof *m);
	if (!m)
		return tr_fail(e, "knn: out of memory");
	*m = (struct knn){.K = K, .k = (int)hp[0], .dim = X->dim, .n = X->n};
	m->y = tr_malloc(X->n * sizeof *m->y);
	m->present = tr_calloc((size_t)K, sizeof *m->present);
	int bad = !m->y || !m->present;
	if (!bad && X->dense) {
		size_t sz = X->n * (size_t)X->dim * sizeof *m->dense;
		bad = !(m->dense = tr_malloc(sz));
		if (!bad)
			memcpy(m->dense, X->dense, sz);
	} else if (!bad) {
		bad = tr_rows_pack(X, &m->nodes, &m->n_nodes) ||
		      tr_sparse_knn_new(m->nodes, m->n_nodes, m->n, m->dim, &m->ix);
	}
	if (bad) {
		knn_free(m);
		return tr_fail(e, "knn: out of memory for %zu rows", X->n);
	}
	for (size_t i = 0; i < X->n; i++) {
		m->y[i] = y[i];
		m->present[y[i]] = 1;
	}
	*model = m;
	return 0;
}

/* Probabilities from the `have` nearest rows (rows top[], similarities sim[], nearest first). */
static void vote(const struct knn *m, const uint32_t *top, const double *sim, int have, double *row)
{
	memset(row, 0, (size_t)m->K * sizeof *row);
	double total = 0;
	int labels = 0;
	for (int c = 0; c < m->K; c++)
		labels += m->present[c];
	for (int t = 0; t < have; t++) {
		double w = sim[t] > 0 ? sim[t] : 0;
		row[m->y[top[t]]] += w;
		total += w;
	}
	double denom = total + TR_KNN_SMOOTH * labels;
	for (int c = 0; c < m->K; c++)
		row[c] = m->present[c] ? (row[c] + TR_KNN_SMOOTH) / denom : 0;
}

/* The k nearest of one row of similarities to every training row: similarity descending, then row ascending. */
static int nearest(const struct knn *m, const double *sim, uint32_t *top, double *tsim)
{
	int k = m->k < (int)m->n ? m->k : (int)m->n, have = 0;
	for (size_t j = 0; j < m->n; j++) {
		double s = sim[j];
		if (have == k && !(s > tsim[k - 1]))
			continue;
		int pos = have < k ? have++ : k - 1;
		while (pos > 0 && s > tsim[pos - 1]) {
			top[pos] = top[pos - 1], tsim[pos] = tsim[pos - 1];
			pos--;
		}
		top[pos] = (uint32_t)j, tsim[pos] = s;
	}
	return have;
}

static int knn_predict(const void *model, const struct tr_feats *X, double *proba, struct tr_err *e)
{
	const struct knn *m = model;
	if (!!X->dense != !!m->dense)
		return tr_fail(e, "knn: model and rows differ in kind (dense vs sparse)");
	/* dense rows are read m->dim values at a time (sparse queries skip features outside 1..dim) */
	if (X->dense && X->dim != m->dim)
		return tr_fail(e, "knn: rows of %d dimensions, the model was trained on %d", X->dim, m->dim);
	uint32_t *top = tr_malloc(((size_t)m->k + 1) * sizeof *top);
	double *tsim = tr_malloc(((size_t)m->k + 1) * sizeof *tsim);
	if (!top || !tsim) {
		tr_free(top), tr_free(tsim);
		return tr_fail(e, "out of memory while computing knn similarities of %zu rows", X->n);
	}
	if (!m->dense) {
		struct tr_sparse_knn_scratch *s = tr_sparse_knn_scratch_new(m->ix, m->k);
		for (size_t i = 0; s && i < X->n; i++) {
			size_t have = tr_sparse_knn_top(m->ix, X->rows[i], m->k, SIZE_MAX, s, top, tsim);
			vote(m, top, tsim, (int)have, proba + i * (size_t)m->K);
		}
		tr_free(top), tr_free(tsim);
		if (!s)
			return tr_fail(e, "out of memory while computing knn similarities of %zu rows", X->n);
		tr_sparse_knn_scratch_free(s);
		return 0;
	}
	size_t block = TR_KNN_BLOCK;
	double *sim = tr_malloc(block * m->n * sizeof *sim);
	if (!sim || tr_blas_begin()) {
		tr_free(sim), tr_free(top), tr_free(tsim);
		if (sim)
			return tr_fail(e, "out of memory while computing knn similarities (BLAS needs %.0f MB)",
				       TR_BLAS_BUFFER / 1e6);
		return tr_fail(e, "out of memory while computing knn similarities of %zu rows", X->n);
	}
	for (size_t i0 = 0; i0 < X->n; i0 += block) {
		size_t b = X->n - i0 < block ? X->n - i0 : block;
		gsl_matrix_const_view q = gsl_matrix_const_view_array(X->dense + i0 * (size_t)m->dim, b, (size_t)m->dim);
		gsl_matrix_const_view t = gsl_matrix_const_view_array(m->dense, m->n, (size_t)m->dim);
		gsl_matrix_view s = gsl_matrix_view_array(sim, b, m->n);
		gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, &q.matrix, &t.matrix, 0.0, &s.matrix);
		for (size_t r = 0; r < b; r++)
			vote(m, top, tsim, nearest(m, sim + r * m->n, top, tsim), proba + (i0 + r) * (size_t)m->K);
	}
	tr_blas_end();
	tr_free(sim), tr_free(top), tr_free(tsim);
	return 0;
}

static int knn_save(const void *model, struct tr_buf *out)
{
	const struct knn *m = model;
	int32_t head[4] = {m->K, m->k, m->dim, m->dense != NULL};
	uint64_t sizes[2] = {m->n, m->n_nodes};
	return tr_buf_add(out, head, sizeof head) || tr_buf_add(out, sizes, sizeof sizes) ||
	       tr_buf_add(out, m->y, m->n * sizeof *m->y) ||
	       (m->dense ? tr_buf_add(out, m->dense, m->n * (size_t)m->dim * sizeof *m->dense)
			 : tr_nodes_put(out, m->nodes, m->n_nodes));
}

static int knn_load(const char *what, struct tr_cursor *in, int K, void **model, struct tr_err *e)
{
	int32_t head[4];
	uint64_t sizes[2];
	/* k within its hyperparameter's range: prediction allocates by it before reading any row */
	if (tr_cursor_take(in, head, sizeof head) || tr_cursor_take(in, sizes, sizeof sizes) || head[0] != K ||
	    head[1] < 1 || head[1] > KNN_K_MAX || head[2] < 0 || head[2] > TR_MAX_DIM || sizes[0] == 0 ||
	    sizes[0] > (uint64_t)(in->end - in->p) || sizes[1] > (uint64_t)(in->end - in->p))
		return tr_fail(e, "%s: corrupt knn model header", what);
	double left = (double)(in->end - in->p);
	double need = (double)sizes[0] * sizeof(int) +
		      (head[3] ? (double)sizes[0] * head[2] * sizeof(double) : (double)sizes[1] * TR_NODE_BYTES);
	if (need > left)
		return tr_fail(e, "%s: truncated knn model (%.0f bytes announced)", what, need);
	struct knn *m = tr_calloc(1, sizeof *m);
	if (!m)
		return tr_fail(e, "%s: out of memory", what);
	*m = (struct knn){.K = head[0], .k = head[1], .dim = head[2], .n = sizes[0], .n_nodes = sizes[1]};
	m->y = tr_malloc(m->n * sizeof *m->y);
	m->present = tr_calloc((size_t)m->K, sizeof *m->present);
	int bad = !m->y || !m->present || tr_cursor_take(in, m->y, m->n * sizeof *m->y);
	if (!bad && head[3]) {
		size_t sz = m->n * (size_t)m->dim * sizeof *m->dense;
		bad = !(m->dense = tr_malloc(sz)) || tr_cursor_take(in, m->dense, sz);
	} else if (!bad) {
		bad = !(m->nodes = tr_malloc(m->n_nodes * sizeof *m->nodes)) ||
		      tr_nodes_take(in, m->nodes, m->n_nodes) ||
		      tr_sparse_knn_new(m->nodes, m->n_nodes, m->n, m->dim, &m->ix);
	}
	for (size_t i = 0; !bad && i < m->n; i++) {
		bad = m->y[i] < 0 || m->y[i] >= m->K;
		if (!bad)
			m->present[m->y[i]] = 1;
	}
	if (bad) {
		knn_free(m);
		return tr_fail(e, "%s: truncated or corrupt knn model", what);
	}
	*model = m;
	return 0;
}

static const struct tr_hparam knn_hparams[] = {
	{"k", "5,10,25", 1, KNN_K_MAX, 1, 0},
	{NULL, NULL, 0, 0, 0, 0},
};

const struct tr_family tr_family_knn = {
	.name = "knn",
	.caps = TR_CAP_PROBA | TR_CAP_SPARSE | TR_CAP_DENSE,
	.about = "cosine k-nearest neighbours, similarity-weighted votes",
	.hparams = knn_hparams,
	.thread_safe = 1,
	.train = knn_train,
	.predict = knn_predict,
	.save = knn_save,
	.load = knn_load,
	.free = knn_free,
};
