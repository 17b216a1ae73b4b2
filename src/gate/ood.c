/*
 * ood.c - the out-of-distribution guard: defers inputs far from every training trace.
 */
#include "gate.h"

#include <gsl/gsl_blas.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <string.h>

struct tr_ood {
	int K, dim, dense;
	size_t n;
	double *thr;	   /* per label, K entries (NAN: use the global one) */
	double global;	   /* over all training rows */
	struct tr_node *nodes; /* sparse training rows, concatenated */
	size_t n_nodes;
	double *x; /* dense training rows, n × dim */
	struct tr_sparse_knn *ix;
};

void tr_ood_free(struct tr_ood *o)
{
	if (!o)
		return;
	tr_free(o->thr), tr_free(o->nodes), tr_free(o->x);
	tr_sparse_knn_free(o->ix);
	tr_free(o);
}

#define OOD_BLOCK 128 /* dense query rows per BLAS product */

/* out (b x m): similarities of the b dense rows at q to the m dense rows at t, dim values each (one BLAS product). */
static void sims(const double *q, size_t b, const double *t, size_t m, int dim, double *out)
{
	gsl_matrix_const_view tv = gsl_matrix_const_view_array(t, m, (size_t)dim);
	gsl_matrix_const_view qv = gsl_matrix_const_view_array(q, b, (size_t)dim);
	gsl_matrix_view s = gsl_matrix_view_array(out, b, m);
	gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, &qv.matrix, &tv.matrix, 0.0, &s.matrix);
}

/* Mean cosine distance given the `have` largest similarities, largest first (1 when there are none). */
static double mean_distance(const double *top, size_t have)
{
	double d = 0;
	for (size_t t = 0; t < have; t++)
		d += 1 - top[t];
	return have ? d / (double)have : 1;
}

/*
 * Mean cosine distance of sparse row q to its TR_OOD_K most similar training rows, leaving out row
 * `self` (SIZE_MAX: none); the exact search gives the similarities a full scan would.
 */
static double sparse_distance(const struct tr_ood *o, const struct tr_node *q, size_t self,
			      struct tr_sparse_knn_scratch *s)
{
	uint32_t row[TR_OOD_K];
	double top[TR_OOD_K];
	return mean_distance(top, tr_sparse_knn_top(o->ix, q, TR_OOD_K, self, s, row, top));
}

/* Puts similarity s into a list of the `*have` largest so far (largest first, at most TR_OOD_K). */
static void top_insert(double *top, int *have, double s)
{
	if (*have == TR_OOD_K && s <= top[TR_OOD_K - 1])
		return;
	int pos = *have < TR_OOD_K ? (*have)++ : TR_OOD_K - 1;
	while (pos > 0 && s > top[pos - 1]) {
		top[pos] = top[pos - 1];
		pos--;
	}
	top[pos] = s;
}

/* Mean cosine distance to the k most similar of n rows, given their similarities. */
static double mean_knn_distance(const double *sim, size_t n)
{
	double top[TR_OOD_K];
	int have = 0;
	for (size_t j = 0; j < n; j++)
		top_insert(top, &have, sim[j]);
	return mean_distance(top, (size_t)have);
}

/*
 * dist[i]: mean cosine distance of dense training row i to its TR_OOD_K most similar other rows. The
 * similarities are symmetric, so half of them are computed: rows i0..i0+b (a block) get their products
 * with rows i0..n only (one BLAS product), which count for both rows of a pair; rows after the block
 * receive theirs from the blocks before. A list of the k largest holds the same values whatever order
 * they come in; x_i . x_j and x_j . x_i come from different BLAS calls and may differ in the last bit
 * (OpenBLAS's edge kernels), so a distance may move by about 1e-16: identical on the dense workload,
 * within 1e-15 of the full matrix in general (tests/unit/test_gate.c checks 1e-12).
 */
static int dense_self_distances(const struct tr_ood *o, double *sim, double *dist)
{
	size_t n = o->n, d = (size_t)o->dim;
	double *top = tr_malloc((n ? n : 1) * TR_OOD_K * sizeof *top);
	int *have = tr_calloc(n ? n : 1, sizeof *have);
	if (!top || !have) {
		tr_free(top), tr_free(have);
		return -1;
	}
	for (size_t i0 = 0; i0 < n; i0 += OOD_BLOCK) {
		size_t b = n - i0 < OOD_BLOCK ? n - i0 : OOD_BLOCK, m = n - i0;
		sims(o->x + i0 * d, b, o->x + i0 * d, m, o->dim, sim);
		for (size_t r = 0; r < b; r++) {
			const double *row = sim + r * m;
			size_t i = i0 + r;
			for (size_t c = 0; c < m; c++) /* row i's own: its block and every later row */
				if (c != r)
					top_insert(top + i * TR_OOD_K, &have[i], row[c]);
			for (size_t c = b; c < m; c++) /* the later rows' share of the same products */
				top_insert(top + (i0 + c) * TR_OOD_K, &have[i0 + c], row[c]);
		}
	}
	for (size_t i = 0; i < n; i++)
		dist[i] = mean_distance(top + i * TR_OOD_K, (size_t)have[i]);
	tr_free(top), tr_free(have);
	return 0;
}

/* tr_ood_fit; `own`, when not NULL, is X's dense rows, the guard's from here on (freed if it fails). */
static int ood_fit(const struct tr_feats *X, double *own, const int *y, int K, struct tr_ood **out, struct tr_err *e)
{
	*out = NULL;
	struct tr_ood *o = tr_calloc(1, sizeof *o);
	if (o)
		o->x = own;
	else
		tr_free(own);
	size_t block = X->dense ? OOD_BLOCK : 0;
	struct tr_sparse_knn_scratch *sk = NULL;
	double *dist = tr_malloc((X->n ? X->n : 1) * sizeof *dist), *sim = tr_malloc((X->n ? X->n : 1) * (block ? block : 1) * sizeof *sim);
	double *buf = tr_malloc((X->n ? X->n : 1) * sizeof *buf);
	if (!o || !dist || !sim || !buf || !(o->thr = tr_malloc((size_t)K * sizeof *o->thr)))
		goto oom;
	o->K = K, o->dim = X->dim, o->n = X->n, o->dense = X->dense != NULL;
	if (o->dense && !o->x) {
		size_t sz = X->n * (size_t)X->dim * sizeof *o->x;
		if (!(o->x = tr_malloc(sz)))
			goto oom;
		memcpy(o->x, X->dense, sz);
	} else if (!o->dense && (tr_rows_pack(X, &o->nodes, &o->n_nodes) ||
				 tr_sparse_knn_new(o->nodes, o->n_nodes, o->n, o->dim, &o->ix) ||
				 !(sk = tr_sparse_knn_scratch_new(o->ix, TR_OOD_K)))) {
		goto oom;
	}
	if (o->dense && tr_blas_begin()) {
		tr_free(dist), tr_free(sim), tr_free(buf);
		tr_ood_free(o);
		return tr_fail(e, "out of memory while fitting the ood guard (BLAS needs %.0f MB)", TR_BLAS_BUFFER / 1e6);
	}
	if (o->dense && dense_self_distances(o, sim, dist)) {
		tr_blas_end();
		goto oom;
	}
	for (size_t i = 0; !o->dense && i < X->n; i++)
		dist[i] = sparse_distance(o, X->rows[i], i, sk);
	if (o->dense)
		tr_blas_end();
	tr_sparse_knn_scratch_free(sk);
	memcpy(buf, dist, X->n * sizeof *buf);
	gsl_sort(buf, 1, X->n);
	o->global = X->n ? gsl_stats_quantile_from_sorted_data(buf, 1, X->n, TR_OOD_PCT) : INFINITY;
	for (int c = 0; c < K; c++) {
		size_t m = 0;
		for (size_t i = 0; i < X->n; i++)
			if (y[i] == c)
				buf[m++] = dist[i];
		if (m >= 10) {
			gsl_sort(buf, 1, m);
			o->thr[c] = gsl_stats_quantile_from_sorted_data(buf, 1, m, TR_OOD_PCT);
		} else {
			o->thr[c] = NAN;
		}
	}
	tr_free(dist), tr_free(sim), tr_free(buf);
	*out = o;
	return 0;
oom:
	tr_sparse_knn_scratch_free(sk);
	tr_free(dist), tr_free(sim), tr_free(buf);
	tr_ood_free(o);
	return tr_fail(e, "ood: out of memory for %zu rows", X->n);
}

int tr_ood_fit(const struct tr_feats *X, const int *y, int K, struct tr_ood **out, struct tr_err *e)
{
	return ood_fit(X, NULL, y, K, out, e);
}

int tr_ood_fit_take(struct tr_feats *X, const int *y, int K, struct tr_ood **out, struct tr_err *e)
{
	double *own = X->dense;
	if (!own)
		return ood_fit(X, NULL, y, K, out, e);
	X->dense = NULL; /* read below through a view of the same rows, now the guard's */
	struct tr_feats V = *X;
	V.dense = own;
	return ood_fit(&V, own, y, K, out, e);
}

int tr_ood_far(const struct tr_ood *o, int label, double d)
{
	double t = label >= 0 && label < o->K && !isnan(o->thr[label]) ? o->thr[label] : o->global;
	return d > t;
}

int tr_ood_distances(const struct tr_ood *o, const struct tr_feats *X, const int *need, double *dist, struct tr_err *e)
{
	if (X->dim != o->dim || !!X->dense != o->dense)
		return tr_fail(e, "ood: rows differ from the training rows in kind or dimension");
	if (!o->dense) {
		struct tr_sparse_knn_scratch *sk = tr_sparse_knn_scratch_new(o->ix, TR_OOD_K);
		if (!sk)
			return tr_fail(e, "ood: out of memory");
		for (size_t i = 0; i < X->n; i++)
			dist[i] = !need || need[i] ? sparse_distance(o, X->rows[i], SIZE_MAX, sk) : NAN;
		tr_sparse_knn_scratch_free(sk);
		return 0;
	}
	size_t block = OOD_BLOCK, d = (size_t)o->dim;
	double *sim = tr_malloc((o->n ? o->n : 1) * block * sizeof *sim);
	double *q = tr_malloc(block * d * sizeof *q);
	size_t *at = tr_malloc(block * sizeof *at);
	if (!sim || !at || !q) {
		tr_free(sim), tr_free(q), tr_free(at);
		return tr_fail(e, "ood: out of memory");
	}
	if (tr_blas_begin()) {
		tr_free(sim), tr_free(q), tr_free(at);
		return tr_fail(e, "out of memory while checking inputs against the ood guard (BLAS needs %.0f MB)",
			       TR_BLAS_BUFFER / 1e6);
	}
	for (size_t i = 0; i < X->n;) {
		size_t b = 0; /* the next rows that need a distance, up to a block */
		for (; i < X->n && b < block; i++) {
			dist[i] = NAN;
			if (!need || need[i])
				at[b++] = i;
		}
		if (b == 0)
			continue;
		for (size_t r = 0; r < b; r++)
			memcpy(q + r * d, X->dense + at[r] * d, d * sizeof *q);
		sims(q, b, o->x, o->n, o->dim, sim);
		for (size_t r = 0; r < b; r++)
			dist[at[r]] = mean_knn_distance(sim + r * o->n, o->n);
	}
	tr_blas_end();
	tr_free(sim), tr_free(q), tr_free(at);
	return 0;
}

/* The stop rule of the routing check: the k rows found put the input within its label's limit. */
struct near_rule {
	const struct tr_ood *o;
	int label;
};

static int near_enough(const double *sims, size_t k, void *arg)
{
	const struct near_rule *n = arg;
	return !tr_ood_far(n->o, n->label, mean_distance(sims, k));
}

int tr_ood_check(const struct tr_ood *o, const struct tr_feats *X, const int *need, const int *label, double *dist,
		 struct tr_err *e)
{
	if (o->dense)
		return tr_ood_distances(o, X, need, dist, e);
	if (X->dim != o->dim || X->dense)
		return tr_fail(e, "ood: rows differ from the training rows in kind or dimension");
	struct tr_sparse_knn_scratch *sk = tr_sparse_knn_scratch_new(o->ix, TR_OOD_K);
	if (!sk)
		return tr_fail(e, "ood: out of memory");
	for (size_t i = 0; i < X->n; i++) {
		dist[i] = NAN;
		if (need && !need[i])
			continue;
		/*
		 * Rank by rank, any k rows found are no nearer than the k nearest, so their mean distance (summed
		 * in the same order) bounds the true one from above: within the limit, the verdict is "near" and
		 * the search can end. First the probe's few rows, then the exact search, which ends there too.
		 */
		struct near_rule rule = {o, label[i]};
		struct tr_knn_stop stop = {near_enough, &rule};
		uint32_t row[TR_OOD_K];
		double top[TR_OOD_K];
		if (tr_sparse_knn_probe(o->ix, X->rows[i], TR_OOD_K, SIZE_MAX, &stop, sk, row, top) == TR_OOD_K) {
			double d = mean_distance(top, TR_OOD_K);
			if (!tr_ood_far(o, label[i], d)) {
				dist[i] = d;
				continue;
			}
		}
		dist[i] = mean_distance(top, tr_sparse_knn_top_until(o->ix, X->rows[i], TR_OOD_K, SIZE_MAX, &stop, sk, row,
								     top, NULL));
	}
	tr_sparse_knn_scratch_free(sk);
	return 0;
}

int tr_ood_save(const struct tr_ood *o, struct tr_buf *out)
{
	int32_t head[3] = {o->K, o->dim, o->dense};
	uint64_t sizes[2] = {o->n, o->n_nodes};
	return tr_buf_puts(out, "tracer-ood 2\n") || tr_buf_add(out, head, sizeof head) ||
	       tr_buf_add(out, sizes, sizeof sizes) || tr_buf_add(out, &o->global, sizeof o->global) ||
	       tr_buf_add(out, o->thr, (size_t)o->K * sizeof *o->thr) ||
	       (o->dense ? tr_buf_add(out, o->x, o->n * (size_t)o->dim * sizeof *o->x)
			 : tr_nodes_put(out, o->nodes, o->n_nodes));
}

int tr_ood_load(const char *what, const char *data, size_t len, struct tr_ood **out, struct tr_err *e)
{
	*out = NULL;
	static const char magic[] = "tracer-ood 2\n";
	if (len < sizeof magic - 1 || memcmp(data, magic, sizeof magic - 1) != 0)
		return tr_fail(e, "%s:1: not a tracer OOD reference (format 2)", what);
	struct tr_cursor c = {data + sizeof magic - 1, data + len};
	int32_t head[3];
	uint64_t sizes[2];
	struct tr_ood *o = tr_calloc(1, sizeof *o);
	if (!o)
		return tr_fail(e, "%s: out of memory", what);
	int bad = tr_cursor_take(&c, head, sizeof head) || tr_cursor_take(&c, sizes, sizeof sizes) || head[0] < 1 ||
		  head[1] < 0 || head[1] > TR_MAX_DIM || sizes[0] > (uint64_t)len || sizes[1] > (uint64_t)len;
	if (!bad) { /* announced sizes must fit in the file before they size any allocation */
		double need = sizeof(double) * (1.0 + head[0]) +
			      (head[2] ? (double)sizes[0] * head[1] * sizeof(double) : (double)sizes[1] * TR_NODE_BYTES);
		bad = need > (double)(c.end - c.p);
	}
	if (!bad) {
		o->K = head[0], o->dim = head[1], o->dense = head[2] != 0, o->n = sizes[0], o->n_nodes = sizes[1];
		bad = !(o->thr = tr_malloc((size_t)o->K * sizeof *o->thr)) ||
		      tr_cursor_take(&c, &o->global, sizeof o->global) ||
		      tr_cursor_take(&c, o->thr, (size_t)o->K * sizeof *o->thr);
	}
	if (!bad && o->dense) {
		size_t sz = o->n * (size_t)o->dim * sizeof *o->x;
		bad = sz > len || !(o->x = tr_malloc(sz)) || tr_cursor_take(&c, o->x, sz);
	} else if (!bad) {
		bad = !(o->nodes = tr_malloc(o->n_nodes * sizeof *o->nodes)) ||
		      tr_nodes_take(&c, o->nodes, o->n_nodes) ||
		      tr_sparse_knn_new(o->nodes, o->n_nodes, o->n, o->dim, &o->ix);
	}
	if (bad) {
		tr_ood_free(o);
		return tr_fail(e, "%s: truncated or corrupt OOD reference", what);
	}
	*out = o;
	return 0;
}
