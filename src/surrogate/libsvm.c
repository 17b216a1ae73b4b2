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
 * Prediction on sparse rows computes what libsvm's svm_predict_probability computes, bit for bit, a
 * block of rows at a time (see block_predict): kernel values with every SV, each class pair's decision
 * value summed in libsvm's order, each through the pair's sigmoid (probA, probB), clipped, then Wu, Lin
 * and Weng's pairwise coupling (their second method, as libsvm 3.24 runs it: the same operations in
 * the same order). libsvm exposes neither the decision sums by block nor the last two steps, so they
 * are written out here; a unit test holds them to svm_predict_probability (tr_libsvm_kernel_predict).
 * Collapsing the linear kernel to one weight vector per class pair was tried and measured: about 2x
 * faster than libsvm's path but 266 MB of weights for a 10,800-trace CLINC150 model (18 million
 * (pair, weight) entries over 27,000 char-n-gram features; 773 MB peak for train-surrogate on all
 * 18,000 traces), and its regrouped sums moved probabilities in the last bits.
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
	/* for prediction: the SVs' rows indexed by feature, and coef[s * (nr_class - 1) + m] = sv_coef[m][s] */
	struct tr_sparse_index *ix;
	double *coef;
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
	tr_sparse_index_free(sm->ix), tr_free(sm->coef);
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
 * Readies a sparse-row model for prediction: the SVs' rows indexed by feature (checking first that
 * sv_nodes holds exactly l rows: a corrupt model file is an error, not an overrun) and the coefficients
 * SV by SV, each SV's nr_class - 1 coefficients (one per other class) in one run.
 */
static int ready(struct sv_model *sm)
{
	const struct svm_model *m = sm->m;
	size_t l = (size_t)m->l, o = (size_t)m->nr_class - 1;
	if (tr_sparse_index_packed(sm->sv_nodes, sm->n_sv_nodes, l, sm->dim, &sm->ix) ||
	    !(sm->coef = tr_malloc(l * o * sizeof *sm->coef)))
		return -1;
	for (size_t s = 0; s < l; s++)
		for (size_t c = 0; c < o; c++)
			sm->coef[s * o + c] = m->sv_coef[c][s];
	return 0;
}

/*
 * Four doubles at a time through GCC's vector extension: each lane is one IEEE product, sum or quotient,
 * rounded as the scalar operation would be (no contraction into fused multiply-adds in ISO C mode), so
 * the results are those of one at a time. With GCC on x86-64 the loops below also get an AVX2 clone,
 * picked at load time on CPUs that have it (the same roundings, twice the width).
 */
typedef double v4d __attribute__((vector_size(32), aligned(8), may_alias));
#define AT4(p) (*(v4d *)(p))
/* not under ThreadSanitizer: the clones' resolver runs at load time, before TSan is set up, and its
 * instrumented code crashed every binary of `make tsan` */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define TR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TR_CLONES
#endif

/* y[j] += a * x[j] for j < n, a product then a sum each. */
static TR_CLONES void add_scaled(size_t n, double a, const double *restrict x, double *restrict y)
{
	size_t j = 0;
	for (; j + 4 <= n; j += 4)
		AT4(y + j) = AT4(y + j) + a * AT4(x + j);
	for (; j < n; j++)
		y[j] += a * x[j];
}

/* The coupling's renormalisation after a step: Qp[j] = (Qp[j] + step q[j]) / g, p[j] /= g (four at a time). */
static TR_CLONES void rescale(size_t n, double step, double g, const double *restrict q, double *restrict Qp,
			      double *restrict p)
{
	size_t j = 0;
	for (; j + 4 <= n; j += 4) {
		AT4(Qp + j) = (AT4(Qp + j) + step * AT4(q + j)) / g;
		AT4(p + j) = AT4(p + j) / g;
	}
	for (; j < n; j++) {
		Qp[j] = (Qp[j] + step * q[j]) / g;
		p[j] /= g;
	}
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
			rescale((size_t)k, step, g, Q + (size_t)t * (size_t)k, Qp, p);
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
			rc = serial_svs(sm->m) || ready(sm) ? -1 : 0;
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
	double *est = tr_malloc((size_t)m->nr_class * sizeof *est), *dots = tr_malloc(l * sizeof *dots);
	struct svm_node *kx = tr_malloc((l + 2) * sizeof *kx);
	if (!est || !dots || !kx) {
		tr_free(est), tr_free(dots), tr_free(kx);
		return -1;
	}
	for (size_t i = 0; i < X->n; i++) {
		tr_sparse_index_dots(sm->ix, X->rows[i], dots);
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
	tr_free(est), tr_free(dots), tr_free(kx);
	return 0;
}

enum { BLOCK_ROWS = 32 };

/*
 * Sparse rows, BLOCK_ROWS at a time, with libsvm's own arithmetic: the rows' kernel values with every SV
 * (the dot products libsvm's precomputed mode reads), then each class pair's decision value summed as
 * svm_predict_values sums it (+0, the first class's SVs in order, then the second's, minus rho), then
 * the sigmoid and the coupling. Class a's SVs add to every pair (a, b > a) at once: dec[a][b] for the
 * run b = a+1.. (coefficients coef[s][a..], stored contiguously); then each pair's value moves to
 * dec[b][a] and class b's SVs add to the run a = 0..b-1 (coefficients coef[s][0..b-1]). Each coefficient
 * run is read once for the whole block. The result is svm_predict_probability's, bit for bit.
 */
static int block_predict(const struct sv_model *sm, const struct tr_feats *X, double *proba)
{
	const struct svm_model *m = sm->m;
	int k = m->nr_class;
	size_t l = (size_t)m->l, o = (size_t)k - 1, kk = (size_t)k * (size_t)k;
	const double min_prob = 1e-7; /* libsvm's clip of pairwise probabilities */
	double *kv = tr_malloc(BLOCK_ROWS * l * sizeof *kv), *dec = tr_malloc(BLOCK_ROWS * kk * sizeof *dec),
	       *r = tr_malloc(kk * sizeof *r), *Q = tr_malloc(kk * sizeof *Q), *Qp = tr_malloc((size_t)k * sizeof *Qp),
	       *est = tr_malloc((size_t)k * sizeof *est);
	if (!kv || !dec || !r || !Q || !Qp || !est) {
		tr_free(kv), tr_free(dec), tr_free(r), tr_free(Q), tr_free(Qp), tr_free(est);
		return -1;
	}
	for (size_t i0 = 0; i0 < X->n; i0 += BLOCK_ROWS) {
		size_t nb = X->n - i0 < BLOCK_ROWS ? X->n - i0 : BLOCK_ROWS;
		for (size_t b = 0; b < nb; b++)
			tr_sparse_index_dots(sm->ix, X->rows[i0 + b], kv + b * l);
		memset(dec, 0, nb * kk * sizeof *dec);
		for (int pass = 0; pass < 2; pass++) {
			size_t s = 0;
			for (int c = 0; c < k; c++)
				for (int t = 0; t < m->nSV[c]; t++, s++) {
					/* pass 0: pairs (c, c+1..), coefficients from c on; pass 1: pairs (0..c-1, c) */
					const double *w = sm->coef + s * o + (pass ? 0 : (size_t)c);
					size_t n = pass ? (size_t)c : o - (size_t)c, at = (size_t)c * (size_t)k + (pass ? 0 : (size_t)c + 1);
					for (size_t b = 0; b < nb; b++)
						add_scaled(n, kv[b * l + s], w, dec + b * kk + at);
				}
			for (size_t b = 0; pass == 0 && b < nb; b++) /* dec[a][b] -> dec[b][a] */
				for (int a = 0; a < k; a++)
					for (int c = a + 1; c < k; c++)
						dec[b * kk + (size_t)c * (size_t)k + (size_t)a] = dec[b * kk + (size_t)a * (size_t)k + (size_t)c];
		}
		for (size_t b = 0; b < nb; b++) {
			const double *d = dec + b * kk;
			for (int a = 0, p = 0; a < k; a++)
				for (int c = a + 1; c < k; c++, p++) {
					double v = pair_sigmoid(d[(size_t)c * (size_t)k + (size_t)a] - m->rho[p], m->probA[p], m->probB[p]);
					v = v < min_prob ? min_prob : v > 1 - min_prob ? 1 - min_prob : v;
					r[a * k + c] = v, r[c * k + a] = 1 - v;
				}
			if (k == 2)
				est[0] = r[1], est[1] = r[2];
			else
				pair_coupling(k, r, est, Q, Qp);
			double *row = proba + (i0 + b) * (size_t)sm->K;
			memset(row, 0, (size_t)sm->K * sizeof *row);
			for (int c = 0; c < k; c++)
				row[m->label[c]] = est[c];
		}
	}
	tr_free(kv), tr_free(dec), tr_free(r), tr_free(Q), tr_free(Qp), tr_free(est);
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
		return (tr_libsvm_kernel_predict ? kernel_predict(sm, X, proba) : block_predict(sm, X, proba))
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
			      serial_svs(m) || ready(sm);
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
