/*
 * libsvm.c - C-SVC with probability estimates (libsvm): linear kernel on sparse rows, RBF on dense.
 * The only file that includes libsvm's header.
 *
 * Sparse rows use libsvm's precomputed-kernel mode: linear kernel (Gram) values are computed with an
 * inverted index, so libsvm's solver reads kernel values instead of merging sparse rows for every
 * evaluation (tens of times faster on tf-idf rows; the result is the same linear-kernel SVM). The
 * model then keeps the support vectors' own rows and computes their kernel with each new input.
 *
 * libsvm's multi-class C-SVC is one-vs-one: svm_train trains every class pair on that pair's rows
 * only, so only the Gram blocks within a pair are ever read. We call svm_train once per class pair
 * (on that pair's rows, in the order and with the labels svm_train itself would give them, with
 * libc's rand() stream running on from pair to pair as inside one call) and assemble the multi-class
 * model as svm_train does: the same model bit for bit (a unit test compares it with one call on the
 * whole Gram matrix), in 16 bytes × (rows of the largest pair)² instead of 16 bytes × n².
 *
 * Prediction on sparse rows does not go through the support vectors: with a linear kernel, class pair
 * p's decision value sum_k coef_k <sv_k, x> - rho_p is <w_p, x> - rho_p with w_p = sum_k coef_k sv_k,
 * so the model is collapsed once (after training or loading) to one sparse weight vector per class
 * pair, indexed by feature. libsvm's probability step follows: each decision value through the pair's
 * sigmoid (probA, probB), clipped, then Wu, Lin and Weng's pairwise coupling (their second method, as
 * libsvm 3.24 runs it, same arithmetic in the same order). libsvm exposes neither step on its own, so
 * both are written out here. The sums are regrouped, so decision values differ from libsvm's own
 * svm_predict_probability in the last bits (tr_libsvm_kernel_predict runs libsvm's path, for tests).
 * The saved model is unchanged (support vectors and coefficients): the weights are derived on load.
 *
 * libsvm's probability fit shuffles with libc's rand(): srand(seed) runs right before training.
 */
#include <pthread.h>
#include <libsvm/svm.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "surrogate.h"

_Static_assert(sizeof(struct svm_node) == sizeof(struct tr_node) &&
		       offsetof(struct svm_node, value) == offsetof(struct tr_node, value),
	       "tr_node must have libsvm's svm_node layout");

struct sv_model {
	struct svm_model *m;
	int K;
	/* precomputed (sparse) mode: the support vectors' rows, concatenated (what is saved) */
	int dim;
	struct tr_node *sv_nodes;
	size_t n_sv_nodes;
	/*
	 * The collapsed pairs, by feature. A feature held by at least two thirds of the pairs has a dense row
	 * of every pair's weight, dense[row[f] * pairs ...] (row[f] >= 0): added as one contiguous run, in 8
	 * bytes a pair, no more than the 12 bytes of each (pair, weight) it replaces; the others keep
	 * (pair, weight) lists w[start[f] .. start[f+1]) for pairs pair[...] (row[f] = -1).
	 */
	size_t *start;
	uint32_t *pair;
	double *w;
	int32_t *row;
	double *dense;
};

static void quiet(const char *s)
{
	(void)s;
}

static size_t row_len(const struct svm_node *x)
{
	size_t n = 0;
	while (x[n].index != -1)
		n++;
	return n;
}

static void sv_free(void *model)
{
	struct sv_model *sm = model;
	if (!sm)
		return;
	if (sm->m)
		svm_free_and_destroy_model(&sm->m);
	tr_free(sm->sv_nodes);
	tr_free(sm->start), tr_free(sm->pair), tr_free(sm->w), tr_free(sm->row), tr_free(sm->dense);
	tr_free(sm);
}

/* Points each SV at a two-node row {0, i+1} (its serial number in the SV list), in one block. */
static int serial_svs(struct svm_model *m)
{
	struct svm_node *block = malloc(2 * (size_t)m->l * sizeof *block); /* freed by libsvm */
	if (!block)
		return -1;
	for (int i = 0; i < m->l; i++) {
		block[2 * i] = (struct svm_node){0, i + 1};
		block[2 * i + 1] = (struct svm_node){-1, 0};
		m->SV[i] = block + 2 * i;
	}
	m->free_sv = 1;
	return 0;
}

/* Dense mode: copies the support vectors into one block the model owns (libsvm frees SV[0]). */
static int own_dense_svs(struct svm_model *m)
{
	size_t total = 0;
	for (int i = 0; i < m->l; i++)
		total += row_len(m->SV[i]) + 1;
	struct svm_node *block = malloc((total ? total : 1) * sizeof *block);
	if (!block)
		return -1;
	struct svm_node *p = block;
	for (int i = 0; i < m->l; i++) {
		size_t n = row_len(m->SV[i]) + 1;
		memcpy(p, m->SV[i], n * sizeof *p);
		m->SV[i] = p;
		p += n;
	}
	m->free_sv = 1;
	return 0;
}

/* Gram rows for libsvm's precomputed mode: row i = {0, i+1}, {1, k(i,1)}, ..., {n, k(i,n)}, {-1}. */
static struct svm_node **gram(const struct tr_feats *X, struct svm_node **pool)
{
	size_t n = X->n;
	struct tr_sparse_index *ix;
	struct svm_node **rows = tr_malloc(n * sizeof *rows);
	double *dots = tr_malloc(n * sizeof *dots);
	*pool = tr_malloc(n * (n + 2) * sizeof **pool);
	if (!rows || !dots || !*pool || tr_sparse_index_build(X->rows, n, X->dim, &ix)) {
		tr_free(rows), tr_free(dots), tr_free(*pool);
		*pool = NULL;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		struct svm_node *r = *pool + i * (n + 2);
		tr_sparse_index_dots(ix, X->rows[i], dots);
		r[0] = (struct svm_node){0, (double)(i + 1)};
		for (size_t j = 0; j < n; j++)
			r[j + 1] = (struct svm_node){(int)j + 1, dots[j]};
		r[n + 1] = (struct svm_node){-1, 0};
		rows[i] = r;
	}
	tr_sparse_index_free(ix);
	tr_free(dots);
	return rows;
}

/*
 * What libsvm 3.24's svm_train() allocates for C-SVC with probability estimates on n rows and K labels,
 * beyond the rows it is given (from its source): for the largest one-vs-one subproblem of l rows, the
 * kernel cache (a column of l floats per cached row, at most l² floats and at most cache_mb) with its
 * 32-byte row heads, and the solver's per-row arrays (about 100 bytes a row); the decision functions
 * and the model's coefficients (2 (K - 1) n doubles); row pointers, labels and flags (64 bytes a row).
 * It reports no failure (a NULL from malloc is dereferenced), so the caller checks first. Trained pair
 * by pair, also the largest pair's Gram rows (16 bytes × l²), the classes' diagonal Gram blocks (at most
 * 8 n × the largest class), one cross block and every pair's coefficients (8 (K - 1) n).
 * A quarter more for the allocator, plus 4 MB.
 */
static double sv_need(size_t n, const int *y, int K, double cache_mb, int by_pair)
{
	size_t top[2] = {0, 0};
	size_t *count = tr_calloc((size_t)K, sizeof *count);
	if (!count)
		return (double)n * n; /* no room for K counts: the largest possible subproblem */
	for (size_t i = 0; i < n; i++)
		count[y[i]]++;
	for (int c = 0; c < K; c++) {
		if (count[c] > top[0])
			top[1] = top[0], top[0] = count[c];
		else if (count[c] > top[1])
			top[1] = count[c];
	}
	tr_free(count);
	double l = (double)(top[0] + top[1]), cache = 4 * l * l < cache_mb * 1.05e6 ? 4 * l * l : cache_mb * 1.05e6;
	double pair = by_pair ? 16 * l * (l + 2) + 8.0 * (double)n * (double)top[0] + 8.0 * (double)top[0] * (double)top[1] +
				    8.0 * (K - 1) * (double)n
			      : 0;
	return 1.25 * (cache + pair + 132 * l + 16.0 * (K - 1) * (double)n + 64.0 * (double)n) + 4e6;
}

static void make_quiet(void)
{
	svm_set_print_string_function(quiet);
}

int tr_libsvm_whole_gram = 0;

/*
 * The Gram rows of class pair (a, b) for libsvm's precomputed mode (see gram()), from the diagonal blocks
 * daa (ca x ca) and dbb (cb x cb) and the block dba (cb x ca: rows of b against rows of a). Every value
 * is the one gram() computes for the whole matrix: a dot product sums the products of the features
 * both rows hold in ascending feature order, whichever row is the query, so K(i, j) = K(j, i) bit for bit.
 */
static struct svm_node **pair_gram(const double *daa, const double *dbb, const double *dba, size_t ca, size_t cb,
				   struct svm_node **pool)
{
	size_t l = ca + cb;
	struct svm_node **rows = tr_malloc(l * sizeof *rows);
	*pool = tr_malloc(l * (l + 2) * sizeof **pool);
	if (!rows || !*pool) {
		tr_free(rows), tr_free(*pool);
		*pool = NULL;
		return NULL;
	}
	for (size_t k = 0; k < l; k++) {
		struct svm_node *r = *pool + k * (l + 2);
		r[0] = (struct svm_node){0, (double)(k + 1)};
		for (size_t j = 0; j < l; j++) {
			double v = k < ca ? (j < ca ? daa[k * ca + j] : dba[(j - ca) * ca + k])
					  : (j < ca ? dba[(k - ca) * ca + j] : dbb[(k - ca) * cb + j - ca]);
			r[j + 1] = (struct svm_node){(int)j + 1, v};
		}
		r[l + 1] = (struct svm_node){-1, 0};
		rows[k] = r;
	}
	return rows;
}

/* out[k * m + j] = <q_k, row j> for the nq query rows q against an index of m rows. */
static void block_dots(const struct tr_sparse_index *ix, struct tr_node *const *q, size_t nq, size_t m, double *out)
{
	for (size_t k = 0; k < nq; k++)
		tr_sparse_index_dots(ix, q[k], out + k * m);
}

/*
 * svm_train's multi-class C-SVC, one class pair at a time (see the top of the file). Classes are
 * numbered by first appearance in yd, as svm_train numbers them; pair (a, b), a < b, trains on the rows
 * of a then those of b, each in training order.
 */
static struct svm_model *train_pairs(const struct tr_feats *X, const double *yd, const struct svm_parameter *param)
{
	size_t n = X->n;
	int nc = 0, ok = 0;
	int *cls = tr_malloc(n * sizeof *cls), *label = malloc(n * sizeof *label), *count = tr_calloc(n, sizeof *count);
	size_t *start = tr_malloc((n + 1) * sizeof *start), *perm = tr_malloc(n * sizeof *perm), *sub = tr_malloc(n * sizeof *sub);
	char *nonzero = tr_calloc(n, 1);
	struct tr_node **crow = NULL;
	struct tr_sparse_index *ix = NULL;
	double **diag = NULL;
	double **alpha = NULL, *sub_y = tr_malloc(n * sizeof *sub_y);
	struct svm_model *m = calloc(1, sizeof *m), *pm = NULL;
	if (!cls || !label || !count || !start || !perm || !sub || !nonzero || !sub_y || !m)
		goto out;
	for (size_t i = 0; i < n; i++) {
		int c = 0;
		while (c < nc && label[c] != (int)yd[i])
			c++;
		if (c == nc)
			label[nc++] = (int)yd[i];
		cls[i] = c, count[c]++;
	}
	start[0] = 0;
	for (int c = 0; c < nc; c++)
		start[c + 1] = start[c] + (size_t)count[c];
	for (int c = 0; c < nc; c++)
		count[c] = 0;
	for (size_t i = 0; i < n; i++)
		perm[start[cls[i]] + (size_t)count[cls[i]]++] = i;
	int pairs = nc * (nc - 1) / 2, p = 0;
	/* rows in class order; the diagonal Gram block of each class (class by class, one index at a time) */
	crow = tr_malloc(n * sizeof *crow);
	diag = tr_calloc((size_t)nc, sizeof *diag);
	if (!crow || !diag)
		goto out;
	for (size_t k = 0; k < n; k++)
		crow[k] = X->rows[perm[k]];
	for (int c = 0; c < nc; c++) {
		size_t cc = (size_t)count[c];
		if (!(diag[c] = tr_malloc(cc * cc * sizeof **diag)) ||
		    tr_sparse_index_build(crow + start[c], cc, X->dim, &ix))
			goto out;
		block_dots(ix, crow + start[c], cc, cc, diag[c]);
		tr_sparse_index_free(ix), ix = NULL;
	}
	m->param = *param;
	m->nr_class = nc;
	m->label = label, label = NULL;
	m->rho = malloc((size_t)pairs * sizeof *m->rho);
	m->probA = malloc((size_t)pairs * sizeof *m->probA);
	m->probB = malloc((size_t)pairs * sizeof *m->probB);
	m->nSV = calloc((size_t)nc, sizeof *m->nSV);
	if (!m->rho || !m->probA || !m->probB || !m->nSV || !(alpha = tr_calloc((size_t)pairs, sizeof *alpha)))
		goto out;
	for (int a = 0; a < nc; a++) {
		size_t ca = (size_t)count[a];
		if (tr_sparse_index_build(crow + start[a], ca, X->dim, &ix))
			goto out;
		for (int b = a + 1; b < nc; b++, p++) {
			size_t cb = (size_t)count[b], l = ca + cb;
			memcpy(sub, perm + start[a], ca * sizeof *sub);
			memcpy(sub + ca, perm + start[b], cb * sizeof *sub);
			for (size_t k = 0; k < l; k++)
				sub_y[k] = yd[sub[k]];
			struct svm_node *pool = NULL, **rows = NULL;
			double *dba = tr_malloc((cb * ca + 1) * sizeof *dba);
			if (dba) {
				block_dots(ix, crow + start[b], cb, ca, dba);
				rows = pair_gram(diag[a], diag[b], dba, ca, cb, &pool);
			}
			tr_free(dba);
			if (!rows || !(alpha[p] = tr_calloc(l, sizeof **alpha))) {
				tr_free(rows), tr_free(pool);
				goto out;
			}
			for (size_t k = ca; k < l; k++) /* svm_train's alpha * y: the second class's zeros are -0 */
				alpha[p][k] = -0.0;
			struct svm_problem prob = {.l = (int)l, .y = sub_y, .x = rows};
			pm = svm_train(&prob, param);
			int fine = pm && pm->nr_class == 2 && pm->label[0] == m->label[a] && pm->sv_indices;
			for (int s = 0; fine && s < pm->l; s++) {
				size_t k = (size_t)pm->sv_indices[s] - 1;
				alpha[p][k] = pm->sv_coef[0][s];
				nonzero[sub[k]] |= fabs(pm->sv_coef[0][s]) > 0;
			}
			if (fine)
				m->rho[p] = pm->rho[0], m->probA[p] = pm->probA[0], m->probB[p] = pm->probB[0];
			if (pm)
				svm_free_and_destroy_model(&pm);
			tr_free(rows), tr_free(pool);
			if (!fine)
				goto out;
		}
		tr_sparse_index_free(ix), ix = NULL;
	}
	/* the support vectors: class by class, training order within a class (svm_train's order) */
	int total = 0;
	size_t *nz_start = tr_malloc((size_t)nc * sizeof *nz_start);
	if (!nz_start)
		goto out;
	for (int c = 0; c < nc; c++) {
		nz_start[c] = (size_t)total;
		for (size_t k = start[c]; k < start[c + 1]; k++)
			if (nonzero[perm[k]])
				m->nSV[c]++, total++;
	}
	m->l = total;
	m->SV = calloc((size_t)(total ? total : 1), sizeof *m->SV);
	m->sv_indices = malloc((size_t)(total ? total : 1) * sizeof *m->sv_indices);
	m->sv_coef = calloc((size_t)(nc - 1), sizeof *m->sv_coef);
	int bad = !m->SV || !m->sv_indices || !m->sv_coef;
	for (int c = 0; !bad && c < nc - 1; c++)
		bad = !(m->sv_coef[c] = malloc((size_t)(total ? total : 1) * sizeof **m->sv_coef));
	if (!bad) {
		int q = 0;
		for (size_t k = 0; k < n; k++)
			if (nonzero[perm[k]])
				m->sv_indices[q++] = (int)perm[k] + 1;
		p = 0;
		for (int a = 0; a < nc; a++)
			for (int b = a + 1; b < nc; b++, p++) {
				size_t ca = (size_t)count[a], cb = (size_t)count[b], qa = nz_start[a], qb = nz_start[b];
				for (size_t k = 0; k < ca; k++)
					if (nonzero[perm[start[a] + k]])
						m->sv_coef[b - 1][qa++] = alpha[p][k];
				for (size_t k = 0; k < cb; k++)
					if (nonzero[perm[start[b] + k]])
						m->sv_coef[a][qb++] = alpha[p][ca + k];
			}
	}
	tr_free(nz_start);
	ok = !bad;
out:
	for (int p2 = 0; alpha && p2 < nc * (nc - 1) / 2; p2++)
		tr_free(alpha[p2]);
	for (int c = 0; diag && c < nc; c++)
		tr_free(diag[c]);
	tr_free(alpha), tr_free(diag), tr_free(crow);
	tr_sparse_index_free(ix);
	if (!ok && m) {
		m->l = 0; /* no SV rows yet: nothing for libsvm to free there */
		svm_free_and_destroy_model(&m);
	}
	free(label);
	tr_free(cls), tr_free(count), tr_free(start), tr_free(perm), tr_free(sub), tr_free(nonzero), tr_free(sub_y);
	return ok ? m : NULL;
}

/*
 * Pair (a, b)'s weights, summed into acc (dim + 1 doubles, zero on entry): the SVs of class a with their
 * coefficients against b, then those of class b against a, each SV's features in its row's order.
 * Features seen for the first time are appended to touched (their count in *nt).
 */
static void pair_weights(const struct svm_model *m, const struct tr_node *const *sv, const int *first, int a, int b,
			 int dim, double *acc, int *touched, size_t *nt)
{
	const int cls[2] = {a, b}, against[2] = {b - 1, a}; /* svm_predict_values' coefficient rows */
	for (int h = 0; h < 2; h++) {
		const double *coef = m->sv_coef[against[h]];
		for (int k = first[cls[h]]; k < first[cls[h]] + m->nSV[cls[h]]; k++)
			for (const struct tr_node *q = sv[k]; q->index != -1; q++) {
				if (q->index <= 0 || q->index > dim)
					continue;
				if (!touched[q->index])
					touched[q->index] = 1, touched[dim + 1 + (*nt)++] = q->index;
				acc[q->index] += coef[k] * q->value;
			}
	}
}

/*
 * Collapses the linear-kernel model to one weight vector per class pair (see the top of the file), in
 * pairs' order (a, b), a < b, as libsvm numbers them, and indexes the weights by feature. Checks first
 * that sv_nodes holds exactly l rows (a corrupt model file is an error, not an overrun).
 */
static int collapse(struct sv_model *sm)
{
	const struct svm_model *m = sm->m;
	int nc = m->nr_class, dim = sm->dim, rc = -1;
	size_t l = (size_t)m->l, ends = 0, d = (size_t)dim + 2;
	for (size_t j = 0; j < sm->n_sv_nodes; j++)
		ends += sm->sv_nodes[j].index == -1;
	if (ends != l || sm->n_sv_nodes == 0 || sm->sv_nodes[sm->n_sv_nodes - 1].index != -1)
		return -1;
	const struct tr_node **sv = tr_malloc(l * sizeof *sv);
	int *first = tr_malloc((size_t)nc * sizeof *first), *touched = tr_calloc(2 * d, sizeof *touched);
	double *acc = tr_calloc(d, sizeof *acc);
	size_t *fill = NULL;
	size_t pairs = (size_t)nc * (size_t)(nc - 1) / 2, n_dense = 0;
	if (!sv || !first || !touched || !acc || !(sm->start = tr_calloc(d, sizeof *sm->start)) ||
	    !(sm->row = tr_malloc(d * sizeof *sm->row)))
		goto out;
	for (size_t i = 0, j = 0; i < l; i++) {
		sv[i] = sm->sv_nodes + j;
		while (sm->sv_nodes[j++].index != -1)
			;
	}
	for (int c = 0, f = 0; c < nc; f += m->nSV[c++])
		first[c] = f;
	/* two passes over the pairs: count each feature's weights, then place them */
	for (int pass = 0; pass < 2; pass++) {
		uint32_t p = 0;
		for (int a = 0; a < nc; a++)
			for (int b = a + 1; b < nc; b++, p++) {
				size_t nt = 0;
				pair_weights(m, sv, first, a, b, dim, acc, touched, &nt);
				for (size_t t = 0; t < nt; t++) {
					int f = touched[dim + 1 + t];
					if (acc[f] != 0) {
						if (pass == 0)
							sm->start[f + 1]++;
						else if (sm->row[f] >= 0)
							sm->dense[(size_t)sm->row[f] * pairs + p] = acc[f];
						else
							sm->pair[fill[f]] = p, sm->w[fill[f]++] = acc[f];
					}
					acc[f] = 0, touched[f] = 0;
				}
			}
		if (pass == 0) {
			for (size_t f = 0; f + 1 < d; f++) {
				int dense = 3 * sm->start[f + 1] >= 2 * pairs;
				sm->row[f] = dense ? (int32_t)n_dense++ : -1;
				if (dense)
					sm->start[f + 1] = 0;
			}
			sm->row[d - 1] = -1;
			for (size_t f = 1; f < d; f++)
				sm->start[f] += sm->start[f - 1];
			size_t nw = sm->start[d - 1] ? sm->start[d - 1] : 1;
			if (!(fill = tr_malloc(d * sizeof *fill)) || !(sm->pair = tr_malloc(nw * sizeof *sm->pair)) ||
			    !(sm->w = tr_malloc(nw * sizeof *sm->w)) ||
			    !(sm->dense = tr_calloc(n_dense ? n_dense * pairs : 1, sizeof *sm->dense)))
				goto out;
			memcpy(fill, sm->start, d * sizeof *fill);
		}
	}
	rc = 0;
out:
	tr_free(sv), tr_free(first), tr_free(touched), tr_free(acc), tr_free(fill);
	return rc;
}

/* y[j] += a * x[j] for j < n, a product then a sum each (four at a time, which the compiler turns into
 * vector instructions: the same roundings as one at a time). */
static void add_scaled(size_t n, double a, const double *restrict x, double *restrict y)
{
	size_t j = 0;
	for (; j + 4 <= n; j += 4) {
		y[j] += a * x[j], y[j + 1] += a * x[j + 1];
		y[j + 2] += a * x[j + 2], y[j + 3] += a * x[j + 3];
	}
	for (; j < n; j++)
		y[j] += a * x[j];
}

/* libsvm's pairwise probability for decision value f: 1 / (1 + exp(A f + B)), without overflow. */
static double pair_sigmoid(double f, double A, double B)
{
	double z = f * A + B;
	return z >= 0 ? exp(-z) / (1.0 + exp(-z)) : 1.0 / (1 + exp(z));
}

/*
 * Class probabilities p (k of them) from pairwise ones r (k × k, r[i k + j] = P(i | i or j)): Wu, Lin
 * and Weng (2004), method 2, minimising p'Qp with sum p = 1, Q[t][t] = sum_{j != t} r_jt²,
 * Q[t][j] = -r_jt r_tj, by updating one coordinate at a time and renormalising, until every (Qp)_t is
 * within 0.005 / k of p'Qp or max(100, k) sweeps. Q and Qp are the caller's scratch (k² and k doubles).
 */
static void pair_coupling(int k, const double *r, double *p, double *Q, double *Qp)
{
	for (int t = 0; t < k; t++) {
		p[t] = 1.0 / k;
		double diag = 0;
		for (int j = 0; j < k; j++)
			if (j != t) {
				diag += r[j * k + t] * r[j * k + t];
				Q[t * k + j] = -r[j * k + t] * r[t * k + j];
			}
		Q[t * k + t] = diag;
	}
	int sweeps = k > 100 ? k : 100;
	for (int it = 0; it < sweeps; it++) {
		/* Qp[t] = sum_j Q[t][j] p[j], summed over j in order; Q[t][j] and Q[j][t] are the same product,
		 * so row j of Q scaled by p[j] adds every t's term j at once */
		double pQp = 0, worst = 0;
		memset(Qp, 0, (size_t)k * sizeof *Qp);
		for (int j = 0; j < k; j++)
			add_scaled((size_t)k, p[j], Q + (size_t)j * (size_t)k, Qp);
		for (int t = 0; t < k; t++)
			pQp += p[t] * Qp[t];
		for (int t = 0; t < k; t++)
			if (fabs(Qp[t] - pQp) > worst)
				worst = fabs(Qp[t] - pQp);
		if (worst < 0.005 / k)
			break;
		for (int t = 0; t < k; t++) {
			double step = (-Qp[t] + pQp) / Q[t * k + t], g = 1 + step;
			p[t] += step;
			pQp = (pQp + step * (step * Q[t * k + t] + 2 * Qp[t])) / g / g;
			const double *q = Q + (size_t)t * (size_t)k;
			int j = 0;
			for (; j + 2 <= k; j += 2) { /* in pairs: the compiler divides two at a time */
				Qp[j] = (Qp[j] + step * q[j]) / g, Qp[j + 1] = (Qp[j + 1] + step * q[j + 1]) / g;
				p[j] /= g, p[j + 1] /= g;
			}
			for (; j < k; j++) {
				Qp[j] = (Qp[j] + step * q[j]) / g;
				p[j] /= g;
			}
		}
	}
}

static int sv_train(const struct tr_feats *X, const int *y, int K, const double *hp, uint64_t seed,
		    void **model, struct tr_err *e)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT; /* libsvm's print function is one global */
	pthread_once(&once, make_quiet);
	int sparse = X->dense == NULL, whole = !sparse || tr_libsvm_whole_gram;
	double *yd = tr_malloc(X->n * sizeof *yd);
	struct sv_model *sm = tr_calloc(1, sizeof *sm);
	struct svm_node *pool = NULL, **rows = !sparse ? (struct svm_node **)tr_feats_dense_rows(X, (struct tr_node **)&pool)
					       : whole ? gram(X, &pool) : tr_malloc(sizeof *rows);
	if (!yd || !sm || !rows) {
		tr_free(yd), tr_free(sm), tr_free(rows), tr_free(pool);
		return tr_fail(e, "out of memory while preparing %zu rows for libsvm%s", X->n,
			       sparse ? " (Gram matrix)" : "");
	}
	for (size_t i = 0; i < X->n; i++)
		yd[i] = y[i];
	struct svm_problem prob = {.l = (int)X->n, .y = yd, .x = rows};
	struct svm_parameter param = {.svm_type = C_SVC,
				      .kernel_type = sparse ? PRECOMPUTED : RBF,
				      .gamma = hp[1],
				      .cache_size = 200,
				      .eps = 1e-3,
				      .C = hp[0],
				      .shrinking = 1,
				      .probability = 1};
	const char *msg = svm_check_parameter(&prob, &param);
	int rc = 0;
	if (msg) {
		rc = tr_fail(e, "libsvm: %s", msg);
		goto out;
	}
	double need = sv_need(X->n, y, K, param.cache_size, !whole);
	if (tr_mem_reserve(need)) {
		rc = tr_fail(e, "out of memory while training libsvm on %zu rows, %d labels (about %.0f MB more needed)",
			     X->n, K, need / 1e6);
		goto out;
	}
	srand((unsigned)seed);
	sm->m = whole ? svm_train(&prob, &param) : train_pairs(X, yd, &param);
	tr_mem_release(need);
	sm->K = K;
	sm->dim = X->dim;
	if (!sm->m) {
		rc = tr_fail(e, "libsvm: training failed");
		goto out;
	}
	if (sparse) {
		/* keep the SVs' own rows, found through their 1-based training indices */
		size_t total = 0;
		for (int i = 0; i < sm->m->l; i++)
			total += row_len((struct svm_node *)X->rows[sm->m->sv_indices[i] - 1]) + 1;
		sm->n_sv_nodes = total;
		if (!(sm->sv_nodes = tr_malloc(total * sizeof *sm->sv_nodes))) {
			rc = -1;
		} else {
			struct tr_node *p = sm->sv_nodes;
			for (int i = 0; i < sm->m->l; i++) {
				const struct tr_node *r = X->rows[sm->m->sv_indices[i] - 1];
				size_t n = row_len((const struct svm_node *)r) + 1;
				memcpy(p, r, n * sizeof *p);
				p += n;
			}
			rc = serial_svs(sm->m) || collapse(sm) ? -1 : 0;
		}
	} else {
		rc = own_dense_svs(sm->m);
	}
	if (rc)
		tr_fail(e, "libsvm: out of memory keeping the support vectors");
out:
	tr_free(yd);
	tr_free(rows), tr_free(pool); /* dense: the SVs were copied out of them by own_dense_svs */
	if (rc) {
		if (sm->m && !sm->m->free_sv)
			sm->m->l = 0; /* SVs still point into the Gram rows we just freed: nothing to free */
		sv_free(sm);
		return -1;
	}
	*model = sm;
	return 0;
}

int tr_libsvm_kernel_predict = 0;

/* libsvm's own svm_predict_probability on sparse rows through the support vectors (tests only). */
static int kernel_predict(const struct sv_model *sm, const struct tr_feats *X, double *proba)
{
	const struct svm_model *m = sm->m;
	size_t l = (size_t)m->l;
	struct tr_sparse_index *ix;
	double *est = tr_malloc((size_t)m->nr_class * sizeof *est), *dots = tr_malloc(l * sizeof *dots);
	struct svm_node *kx = tr_malloc((l + 2) * sizeof *kx);
	if (!est || !dots || !kx || tr_sparse_index_packed(sm->sv_nodes, sm->n_sv_nodes, l, sm->dim, &ix)) {
		tr_free(est), tr_free(dots), tr_free(kx);
		return -1;
	}
	for (size_t i = 0; i < X->n; i++) {
		tr_sparse_index_dots(ix, X->rows[i], dots);
		kx[0] = (struct svm_node){0, 0};
		for (size_t j = 0; j < l; j++)
			kx[j + 1] = (struct svm_node){(int)j + 1, dots[j]};
		kx[l + 1] = (struct svm_node){-1, 0};
		svm_predict_probability(m, kx, est);
		double *row = proba + i * (size_t)sm->K;
		memset(row, 0, (size_t)sm->K * sizeof *row);
		for (int c = 0; c < m->nr_class; c++)
			row[m->label[c]] = est[c];
	}
	tr_sparse_index_free(ix);
	tr_free(est), tr_free(dots), tr_free(kx);
	return 0;
}

/* One feature of one row in a block of rows: ordered by feature, then row. */
struct entry {
	int32_t f;
	uint32_t b;
	double v;
	size_t at; /* for a feature without a dense row: its next (pair, weight) not yet added */
};

static int entry_cmp(const void *x, const void *y)
{
	const struct entry *a = x, *b = y;
	return a->f != b->f ? (a->f > b->f) - (a->f < b->f) : (a->b > b->b) - (a->b < b->b);
}

enum { BLOCK_ROWS = 128, BLOCK_PAIRS = 256 };

/*
 * Decision values (before rho) of rows X->rows[i0 .. i0 + nb) into dec (nb × pairs), in blocks: the
 * rows' features sorted by feature, then the pairs a run of BLOCK_PAIRS at a time, each feature's run
 * of weights added to every row of the block holding it while it is in cache. Each decision value is
 * its row's features' products added in ascending feature order, as one row at a time would add them
 * (tf-idf rows are in ascending feature order).
 */
static void block_decisions(const struct sv_model *sm, const struct tr_feats *X, size_t i0, size_t nb, size_t pairs,
			    struct entry *ent, double *dec)
{
	size_t ne = 0;
	for (size_t b = 0; b < nb; b++)
		for (const struct tr_node *q = X->rows[i0 + b]; q->index != -1; q++)
			if (q->index > 0 && q->index <= sm->dim)
				ent[ne++] = (struct entry){q->index, (uint32_t)b, q->value, sm->start[q->index]};
	qsort(ent, ne, sizeof *ent, entry_cmp);
	memset(dec, 0, nb * pairs * sizeof *dec);
	for (size_t c0 = 0; c0 < pairs; c0 += BLOCK_PAIRS) {
		size_t c1 = c0 + BLOCK_PAIRS < pairs ? c0 + BLOCK_PAIRS : pairs;
		for (size_t e = 0; e < ne; e++) {
			struct entry *t = ent + e;
			double *d = dec + t->b * pairs;
			if (sm->row[t->f] >= 0) {
				add_scaled(c1 - c0, t->v, sm->dense + (size_t)sm->row[t->f] * pairs + c0, d + c0);
				continue;
			}
			size_t j = t->at, end = sm->start[t->f + 1];
			for (; j < end && sm->pair[j] < c1; j++)
				d[sm->pair[j]] += t->v * sm->w[j];
			t->at = j;
		}
	}
}

/* Sparse rows through the collapsed pairs (see the top of the file). */
static int linear_predict(const struct sv_model *sm, const struct tr_feats *X, double *proba)
{
	const struct svm_model *m = sm->m;
	int k = m->nr_class;
	size_t pairs = (size_t)k * (size_t)(k - 1) / 2, most = 0;
	const double min_prob = 1e-7; /* libsvm's clip of pairwise probabilities */
	for (size_t i0 = 0; i0 < X->n; i0 += BLOCK_ROWS) { /* the most features a block holds */
		size_t ne = 0;
		for (size_t i = i0; i < X->n && i < i0 + BLOCK_ROWS; i++)
			for (const struct tr_node *q = X->rows[i]; q->index != -1; q++)
				ne++;
		most = ne > most ? ne : most;
	}
	size_t kk = (size_t)k * (size_t)k;
	double *dec = tr_malloc(BLOCK_ROWS * pairs * sizeof *dec), *r = tr_malloc(kk * sizeof *r),
	       *Q = tr_malloc(kk * sizeof *Q), *Qp = tr_malloc((size_t)k * sizeof *Qp),
	       *est = tr_malloc((size_t)k * sizeof *est);
	struct entry *ent = tr_malloc((most ? most : 1) * sizeof *ent);
	if (!dec || !r || !Q || !Qp || !est || !ent) {
		tr_free(dec), tr_free(r), tr_free(Q), tr_free(Qp), tr_free(est), tr_free(ent);
		return -1;
	}
	for (size_t i0 = 0; i0 < X->n; i0 += BLOCK_ROWS) {
		size_t nb = X->n - i0 < BLOCK_ROWS ? X->n - i0 : BLOCK_ROWS;
		block_decisions(sm, X, i0, nb, pairs, ent, dec);
		for (size_t i = i0; i < i0 + nb; i++) {
			const double *di = dec + (i - i0) * pairs;
			for (int a = 0, p = 0; a < k; a++)
				for (int b = a + 1; b < k; b++, p++) {
					double v = pair_sigmoid(di[p] - m->rho[p], m->probA[p], m->probB[p]);
					v = v < min_prob ? min_prob : v > 1 - min_prob ? 1 - min_prob : v;
					r[a * k + b] = v, r[b * k + a] = 1 - v;
				}
			if (k == 2)
				est[0] = r[1], est[1] = r[2];
			else
				pair_coupling(k, r, est, Q, Qp);
			double *row = proba + i * (size_t)sm->K;
			memset(row, 0, (size_t)sm->K * sizeof *row);
			for (int c = 0; c < k; c++)
				row[m->label[c]] = est[c];
		}
	}
	tr_free(dec), tr_free(r), tr_free(Q), tr_free(Qp), tr_free(est), tr_free(ent);
	return 0;
}

static int sv_predict(const void *model, const struct tr_feats *X, double *proba, struct tr_err *e)
{
	const struct sv_model *sm = model;
	const struct svm_model *m = sm->m;
	int nc = m->nr_class, pre = m->param.kernel_type == PRECOMPUTED;
	if (!!X->dense == pre)
		return tr_fail(e, "libsvm: model and rows differ in kind (dense vs sparse)");
	if (pre)
		return (tr_libsvm_kernel_predict ? kernel_predict(sm, X, proba) : linear_predict(sm, X, proba))
			       ? tr_fail(e, "libsvm: out of memory")
			       : 0;
	double *est = tr_malloc((size_t)nc * sizeof *est);
	struct svm_node *kx = tr_malloc(((size_t)X->dim + 1) * sizeof *kx);
	if (!est || !kx) {
		tr_free(est), tr_free(kx);
		return tr_fail(e, "libsvm: out of memory");
	}
	for (size_t i = 0; i < X->n; i++) {
		svm_predict_probability(m, (const struct svm_node *)tr_feats_row(X, i, (struct tr_node *)kx), est);
		double *row = proba + i * (size_t)sm->K;
		memset(row, 0, (size_t)sm->K * sizeof *row);
		for (int c = 0; c < nc; c++)
			row[m->label[c]] = est[c];
	}
	tr_free(est), tr_free(kx);
	return 0;
}

static int sv_save(const void *model, struct tr_buf *out)
{
	const struct sv_model *sm = model;
	const struct svm_model *m = sm->m;
	int k = m->nr_class, pairs = k * (k - 1) / 2, pre = m->param.kernel_type == PRECOMPUTED;
	int32_t head[5] = {sm->K, k, m->l, m->param.kernel_type, sm->dim};
	int bad = tr_buf_add(out, head, sizeof head) || tr_buf_add(out, &m->param.gamma, sizeof(double)) ||
		  tr_buf_add(out, m->label, (size_t)k * sizeof *m->label) ||
		  tr_buf_add(out, m->nSV, (size_t)k * sizeof *m->nSV) ||
		  tr_buf_add(out, m->rho, (size_t)pairs * sizeof *m->rho) ||
		  tr_buf_add(out, m->probA, (size_t)pairs * sizeof *m->probA) ||
		  tr_buf_add(out, m->probB, (size_t)pairs * sizeof *m->probB);
	for (int c = 0; c < k - 1 && !bad; c++)
		bad = tr_buf_add(out, m->sv_coef[c], (size_t)m->l * sizeof(double));
	if (pre) {
		uint64_t nn = sm->n_sv_nodes;
		return bad || tr_buf_add(out, &nn, sizeof nn) ||
		       tr_nodes_put(out, sm->sv_nodes, sm->n_sv_nodes);
	}
	for (int i = 0; i < m->l && !bad; i++) {
		int32_t n = (int32_t)row_len(m->SV[i]);
		bad = tr_buf_add(out, &n, sizeof n) || tr_nodes_put(out, (const struct tr_node *)m->SV[i], (size_t)n + 1);
	}
	return bad;
}

/* Reads m->l dense SV rows (each: int32 length, then length + 1 nodes of TR_NODE_BYTES) into one block. */
static int load_dense_svs(struct svm_model *m, struct tr_cursor *in)
{
	struct tr_cursor scan = *in;
	size_t total = 0;
	for (int i = 0; i < m->l; i++) {
		int32_t n;
		if (tr_cursor_take(&scan, &n, sizeof n) || n < 0 ||
		    (size_t)(scan.end - scan.p) / TR_NODE_BYTES < (size_t)n + 1)
			return -1;
		scan.p += ((size_t)n + 1) * TR_NODE_BYTES;
		total += (size_t)n + 1;
	}
	struct svm_node *block = malloc(total * sizeof *block), *p = block;
	if (!block)
		return -1;
	for (int i = 0; i < m->l; i++) {
		int32_t n;
		tr_cursor_take(in, &n, sizeof n);
		tr_nodes_take(in, (struct tr_node *)p, (size_t)n + 1);
		m->SV[i] = p;
		if (p[n].index != -1) {
			m->free_sv = 1;
			return -1;
		}
		p += n + 1;
	}
	m->free_sv = 1;
	return 0;
}

static int sv_load(const char *what, struct tr_cursor *in, int K, void **model, struct tr_err *e)
{
	int32_t head[5];
	if (tr_cursor_take(in, head, sizeof head) || head[0] != K || head[1] < 2 || head[1] > head[0] ||
	    head[2] < 1 || (head[3] != PRECOMPUTED && head[3] != RBF) || head[4] < 0 ||
	    head[4] > TR_MAX_DIM)
		return tr_fail(e, "%s: corrupt libsvm model header", what);
	double pairs_d = (double)head[1] * (head[1] - 1) / 2;
	double need = sizeof(double) + 2.0 * head[1] * sizeof(int) + 3 * pairs_d * sizeof(double) +
		      (double)(head[1] - 1) * head[2] * sizeof(double);
	if (need > (double)(in->end - in->p))
		return tr_fail(e, "%s: truncated libsvm model (%.0f bytes announced)", what, need);
	struct sv_model *sm = tr_calloc(1, sizeof *sm);
	struct svm_model *m = calloc(1, sizeof *m); /* freed by libsvm with free() */
	if (!sm || !m) {
		tr_free(sm), free(m);
		return tr_fail(e, "%s: out of memory", what);
	}
	sm->m = m;
	sm->K = head[0];
	sm->dim = head[4];
	int k = head[1], pairs = k * (k - 1) / 2;
	m->nr_class = k;
	m->l = head[2];
	m->param = (struct svm_parameter){.svm_type = C_SVC, .kernel_type = head[3], .probability = 1};
	m->label = malloc((size_t)k * sizeof *m->label);
	m->nSV = malloc((size_t)k * sizeof *m->nSV);
	m->rho = malloc((size_t)pairs * sizeof *m->rho);
	m->probA = malloc((size_t)pairs * sizeof *m->probA);
	m->probB = malloc((size_t)pairs * sizeof *m->probB);
	m->sv_coef = calloc((size_t)(k - 1), sizeof *m->sv_coef);
	m->SV = calloc((size_t)m->l, sizeof *m->SV);
	int bad = !m->label || !m->nSV || !m->rho || !m->probA || !m->probB || !m->sv_coef || !m->SV ||
		  tr_cursor_take(in, &m->param.gamma, sizeof(double)) ||
		  tr_cursor_take(in, m->label, (size_t)k * sizeof *m->label) ||
		  tr_cursor_take(in, m->nSV, (size_t)k * sizeof *m->nSV) ||
		  tr_cursor_take(in, m->rho, (size_t)pairs * sizeof *m->rho) ||
		  tr_cursor_take(in, m->probA, (size_t)pairs * sizeof *m->probA) ||
		  tr_cursor_take(in, m->probB, (size_t)pairs * sizeof *m->probB);
	for (int c = 0; c < k - 1 && !bad; c++)
		bad = !(m->sv_coef[c] = malloc((size_t)m->l * sizeof(double))) ||
		      tr_cursor_take(in, m->sv_coef[c], (size_t)m->l * sizeof(double));
	long sv_total = 0; /* libsvm walks the SVs class by class with nSV: they must add up to l */
	for (int c = 0; c < k && !bad; c++) {
		bad = m->label[c] < 0 || m->label[c] >= sm->K || m->nSV[c] < 0;
		sv_total += bad ? 0 : m->nSV[c];
	}
	bad = bad || sv_total != m->l;
	if (!bad && head[3] == PRECOMPUTED) {
		uint64_t nn;
		bad = tr_cursor_take(in, &nn, sizeof nn) || nn == 0 ||
		      nn > (uint64_t)(in->end - in->p) / TR_NODE_BYTES;
		if (!bad) {
			sm->n_sv_nodes = (size_t)nn;
			bad = !(sm->sv_nodes = tr_malloc(sm->n_sv_nodes * sizeof *sm->sv_nodes)) ||
			      tr_nodes_take(in, sm->sv_nodes, sm->n_sv_nodes) ||
			      serial_svs(m) || collapse(sm);
		}
	} else if (!bad) {
		bad = load_dense_svs(m, in);
	}
	if (bad) {
		if (!m->free_sv)
			m->l = 0;
		sv_free(sm);
		return tr_fail(e, "%s: truncated or corrupt libsvm model", what);
	}
	*model = sm;
	return 0;
}

static const struct tr_hparam sv_hparams[] = {
	{"C", "1,10", 1e-6, 1e6, 0, 0},
	{"gamma", "0.5,1,2", 1e-9, 1e9, 0, 1},
	{NULL, NULL, 0, 0, 0, 0},
};

const struct tr_family tr_family_libsvm = {
	.name = "libsvm",
	.caps = TR_CAP_PROBA | TR_CAP_SPARSE | TR_CAP_DENSE,
	.about = "C-SVC with probability estimates (libsvm): linear kernel on sparse rows, RBF on dense",
	.hparams = sv_hparams,
	.thread_safe = 0, /* its probability fit draws from libc rand() */
	.train = sv_train,
	.predict = sv_predict,
	.save = sv_save,
	.load = sv_load,
	.free = sv_free,
};
