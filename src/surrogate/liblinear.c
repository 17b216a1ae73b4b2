/*
 * liblinear.c - L2-regularised logistic regression (liblinear's primal L2R_LR solver, which is
 * deterministic), one-vs-rest for more than two labels, with a bias term. The only file that includes
 * liblinear's header (it exports bare names such as `train` and `struct model`).
 */
#include <pthread.h>
#include <linear.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "surrogate.h"

_Static_assert(sizeof(struct feature_node) == sizeof(struct tr_node) &&
		       offsetof(struct feature_node, value) == offsetof(struct tr_node, value),
	       "tr_node must have liblinear's feature_node layout");

struct ll_model {
	struct model *m;
	int K;
};

static void quiet(const char *s)
{
	(void)s;
}

/* Copies row x appending the bias node (index bias_index, value 1). */
static size_t row_len(const struct tr_node *x)
{
	size_t n = 0;
	while (x[n].index != -1)
		n++;
	return n;
}

/* Rows with the bias feature appended; one pool, returned in *pool. */
static struct feature_node **with_bias(const struct tr_feats *X, int bias_index, struct feature_node **pool)
{
	size_t total = 0;
	if (X->rows)
		for (size_t i = 0; i < X->n; i++)
			total += row_len(X->rows[i]) + 2;
	else
		total = X->n * ((size_t)X->dim + 2);
	struct feature_node **rows = tr_malloc(X->n * sizeof *rows);
	*pool = tr_malloc(total * sizeof **pool);
	if (!rows || !*pool) {
		tr_free(rows), tr_free(*pool);
		*pool = NULL;
		return NULL;
	}
	struct feature_node *p = *pool;
	for (size_t i = 0; i < X->n; i++) {
		/* a dense row is written straight into the pool (its dim + 1 nodes fit the dim + 2 there) */
		const struct tr_node *r = tr_feats_row(X, i, (struct tr_node *)p);
		size_t n = row_len(r);
		rows[i] = p;
		if (X->rows)
			memcpy(p, r, n * sizeof *p);
		p[n] = (struct feature_node){bias_index, 1.0};
		p[n + 1] = (struct feature_node){-1, 0};
		p += n + 2;
	}
	return rows;
}

/*
 * What liblinear 2.3's train() allocates for L2R_LR on n rows of w features (bias included) and k labels
 * (from its source): per row, the class grouping and permutation, two row-pointer arrays, the ±1
 * labels, and the solver's per-row C, z and D (80 bytes); the k × w weights (one column for k = 2)
 * plus the column being solved and the trust-region solver's vectors of w (at most 12 more). It
 * reports no failure (a NULL from malloc is dereferenced, a failed `new` aborts), so the caller checks
 * first. A quarter more for the allocator's overhead and fragmentation, plus 4 MB.
 */
static double ll_need(size_t n, int w, int k)
{
	double cols = k == 2 ? 1 : k;
	return 1.25 * (80.0 * (double)n + 8.0 * w * (cols + 12)) + 4e6;
}

/* liblinear's print function is one global: set it once, not from every training thread. */
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;
static void make_quiet(void)
{
	set_print_string_function(quiet);
}

static int ll_train(const struct tr_feats *X, const int *y, int K, const double *hp, uint64_t seed,
		    void **model, struct tr_err *e)
{
	pthread_once(&quiet_once, make_quiet);
	struct feature_node *pool;
	struct feature_node **rows = with_bias(X, X->dim + 1, &pool);
	double *yd = tr_malloc(X->n * sizeof *yd);
	struct ll_model *lm = tr_calloc(1, sizeof *lm);
	double need = ll_need(X->n, X->dim + 1, K);
	if (!rows || !yd || !lm || tr_mem_reserve(need)) {
		tr_free(rows), tr_free(pool), tr_free(yd), tr_free(lm);
		if (rows && yd && lm)
			return tr_fail(e, "out of memory while training liblinear on %zu rows of %d features, %d labels "
				       "(about %.0f MB more needed)", X->n, X->dim, K, need / 1e6);
		return tr_fail(e, "out of memory while copying %zu rows for liblinear", X->n);
	}
	for (size_t i = 0; i < X->n; i++)
		yd[i] = y[i];
	struct problem prob = {.l = (int)X->n, .n = X->dim + 1, .y = yd, .x = rows, .bias = 1.0};
	struct parameter param = {.solver_type = L2R_LR, .eps = 0.01, .C = hp[0]};
	const char *msg = check_parameter(&prob, &param);
	if (msg) {
		tr_mem_release(need);
		tr_free(rows), tr_free(pool), tr_free(yd), tr_free(lm);
		return tr_fail(e, "liblinear: %s", msg);
	}
	srand((unsigned)seed); /* the primal solver draws nothing, but keep libc's state fixed anyway */
	lm->m = train(&prob, &param);
	tr_mem_release(need);
	lm->K = K;
	tr_free(rows), tr_free(pool), tr_free(yd);
	if (!lm->m) {
		tr_free(lm);
		return tr_fail(e, "liblinear: training failed");
	}
	*model = lm;
	return 0;
}

/*
 * Prediction. liblinear's predict_probability, one input at a time, adds to each label's score the
 * weight of every feature of the input, in the input's order; with ~80 features per tf-idf input and a
 * weight row of nr_class doubles per feature, it reads a row of a matrix far larger than the cache for
 * every feature of every input (a third of `tracer route`'s time). Blocks of at least LL_BLOCK_MIN
 * inputs are instead swept feature by feature: each weight row is read once per block and added to the
 * scores of every input of the block that has the feature. Features are swept in ascending order and
 * each input's features ascend, so every input receives the same products in the same order as in
 * predict_values, and its scores, hence probabilities, are the same bits (tests/unit/test_surrogate.c
 * compares both paths). That holds because the model's bias is 1 (ll_load refuses any other, so
 * predict_values reads the bias feature as the blocks do) and because neither side fuses a multiply and
 * an add (the Makefile builds with -ffp-contract=off; Debian's liblinear has no FMA instructions). An
 * input whose features do not ascend, and blocks under LL_BLOCK_MIN inputs (a single request), go
 * through predict_probability. Each block also costs time in proportion to the feature count (the
 * counting sort's counters and the sweep), small next to 256 inputs' products.
 */
#define LL_BLOCK 256	 /* inputs swept together (scores: 256 x nr_class doubles, 158 KB for 77 labels) */
#define LL_BLOCK_MIN 16 /* fewer inputs go row by row (`route --batch 16` measured faster in blocks) */

/* Weight columns per feature: one for two labels, else one per label (as liblinear stores them). */
static int weight_cols(const struct model *m)
{
	return m->nr_class == 2 ? 1 : m->nr_class;
}

/* est, in liblinear's label order, written as row of K probabilities (0 for labels the model lacks). */
static void put_row(const struct ll_model *lm, const double *est, double *row)
{
	memset(row, 0, (size_t)lm->K * sizeof *row);
	for (int c = 0; c < lm->m->nr_class; c++)
		row[lm->m->label[c]] = est[c];
}

/* liblinear's probabilities from the scores of one input (as predict_probability turns them). */
static void ll_proba(const struct model *m, double *dec, const struct ll_model *lm, double *row)
{
	int nc = m->nr_class, nw = weight_cols(m);
	for (int c = 0; c < nw; c++)
		dec[c] = 1 / (1 + exp(-dec[c]));
	if (nc == 2) {
		dec[1] = 1. - dec[0];
	} else {
		double sum = 0;
		for (int c = 0; c < nc; c++)
			sum += dec[c];
		for (int c = 0; c < nc; c++)
			dec[c] = dec[c] / sum;
	}
	put_row(lm, dec, row);
}

/* Input i by predict_probability, its probabilities written at proba's row i. */
static int one_row(const struct ll_model *lm, const struct tr_feats *X, size_t i, double *est,
		   struct feature_node **buf, size_t *cap, double *proba)
{
	const struct model *m = lm->m;
	size_t n = X->rows ? row_len(X->rows[i]) : (size_t)X->dim;
	if (tr_grow(buf, cap, n + 2, sizeof **buf))
		return -1;
	/* features beyond the training dimension (none from the same featurizer) predict_values skips */
	const struct tr_node *r = tr_feats_row(X, i, (struct tr_node *)*buf);
	if (X->rows)
		memcpy(*buf, r, n * sizeof **buf);
	(*buf)[n] = (struct feature_node){m->nr_feature + 1, 1.0};
	(*buf)[n + 1] = (struct feature_node){-1, 0};
	predict_probability(m, *buf, est);
	put_row(lm, est, proba + i * (size_t)lm->K);
	return 0;
}

/* The block's postings, feature by feature: who[start[f] .. start[f + 1]) are its inputs with feature f. */
struct ll_block {
	uint32_t *start; /* nr_feature + 3 entries */
	uint32_t *who;
	double *val;
	size_t cap;
	double *score;		 /* LL_BLOCK x nr_w */
	unsigned char *in_block; /* per input of the block: 0 when its features do not ascend */
};

/* 1 when the row's features (those liblinear reads, index <= bias_index) ascend, from index 1 on. */
static int ascends(const struct tr_node *x, int bias_index)
{
	int prev = 1;
	for (; x->index != -1; x++) {
		if (x->index > bias_index)
			continue; /* skipped by predict_values too */
		if (x->index < prev)
			return 0;
		prev = x->index;
	}
	return 1;
}

/* Sparse inputs [s, s + b) swept feature by feature (see above); 0, or -1 out of memory. */
static int sparse_block(const struct ll_model *lm, const struct tr_feats *X, size_t s, size_t b,
			struct ll_block *k, double *est, struct feature_node **buf, size_t *cap, double *proba)
{
	const struct model *m = lm->m;
	int nw = weight_cols(m), bias = m->nr_feature + 1;
	size_t total = 0;
	memset(k->start, 0, ((size_t)bias + 2) * sizeof *k->start);
	for (size_t r = 0; r < b; r++) {
		const struct tr_node *x = X->rows[s + r];
		k->in_block[r] = (unsigned char)ascends(x, bias);
		if (!k->in_block[r])
			continue;
		for (; x->index != -1; x++)
			if (x->index <= bias)
				k->start[x->index + 1]++, total++;
		k->start[bias + 1]++, total++; /* the bias feature, last */
	}
	if (total > k->cap) {
		uint32_t *who = tr_realloc(k->who, total * sizeof *who);
		if (who)
			k->who = who;
		double *val = tr_realloc(k->val, total * sizeof *val);
		if (val)
			k->val = val;
		if (!who || !val)
			return -1;
		k->cap = total;
	}
	for (int f = 1; f <= bias; f++)
		k->start[f + 1] += k->start[f];
	for (size_t r = 0; r < b; r++) {
		if (!k->in_block[r])
			continue;
		for (const struct tr_node *x = X->rows[s + r]; x->index != -1; x++)
			if (x->index <= bias) {
				uint32_t at = k->start[x->index]++;
				k->who[at] = (uint32_t)r, k->val[at] = x->value;
			}
		uint32_t at = k->start[bias]++;
		k->who[at] = (uint32_t)r, k->val[at] = 1.0;
	}
	/* start[f] now ends feature f's postings, so feature f's begin where feature f - 1's end */
	memset(k->score, 0, b * (size_t)nw * sizeof *k->score);
	uint32_t from = 0;
	for (int f = 1; f <= bias; f++) {
		const double *restrict w = m->w + (size_t)(f - 1) * (size_t)nw;
		for (uint32_t p = from; p < k->start[f]; p++) {
			double v = k->val[p], *restrict sc = k->score + (size_t)k->who[p] * (size_t)nw;
			int c = 0;
			for (; c + 4 <= nw; c += 4) {
				double a0 = sc[c] + w[c] * v, a1 = sc[c + 1] + w[c + 1] * v;
				double a2 = sc[c + 2] + w[c + 2] * v, a3 = sc[c + 3] + w[c + 3] * v;
				sc[c] = a0, sc[c + 1] = a1, sc[c + 2] = a2, sc[c + 3] = a3;
			}
			for (; c < nw; c++)
				sc[c] += w[c] * v;
		}
		from = k->start[f];
	}
	for (size_t r = 0; r < b; r++) {
		if (!k->in_block[r]) {
			if (one_row(lm, X, s + r, est, buf, cap, proba))
				return -1;
			continue;
		}
		double *sc = k->score + r * (size_t)nw;
		memcpy(est, sc, (size_t)nw * sizeof *est);
		ll_proba(m, est, lm, proba + (s + r) * (size_t)lm->K);
	}
	return 0;
}

int tr_liblinear_row_predict = 0;

static int ll_predict(const void *model, const struct tr_feats *X, double *proba, struct tr_err *e)
{
	const struct ll_model *lm = model;
	const struct model *m = lm->m;
	int nw = weight_cols(m);
	double *est = tr_malloc((size_t)m->nr_class * sizeof *est);
	struct feature_node *buf = NULL;
	size_t cap = 0;
	struct ll_block k = {0};
	int batched = X->rows && X->n >= LL_BLOCK_MIN && !tr_liblinear_row_predict, rc = 0;
	if (batched) {
		k.start = tr_malloc(((size_t)m->nr_feature + 3) * sizeof *k.start);
		k.score = tr_malloc((size_t)LL_BLOCK * (size_t)nw * sizeof *k.score);
		k.in_block = tr_malloc(LL_BLOCK);
	}
	if (!est || (batched && (!k.start || !k.score || !k.in_block)))
		rc = -1;
	for (size_t s = 0; !rc && s < X->n; s += LL_BLOCK) {
		size_t b = X->n - s < LL_BLOCK ? X->n - s : LL_BLOCK;
		if (batched && b >= LL_BLOCK_MIN)
			rc = sparse_block(lm, X, s, b, &k, est, &buf, &cap, proba);
		else
			for (size_t i = s; !rc && i < s + b; i++)
				rc = one_row(lm, X, i, est, &buf, &cap, proba);
	}
	tr_free(est), tr_free(buf);
	tr_free(k.start), tr_free(k.who), tr_free(k.val), tr_free(k.score), tr_free(k.in_block);
	return rc ? tr_fail(e, "liblinear: out of memory") : 0;
}

static size_t n_weights(const struct model *m)
{
	int cols = weight_cols(m);
	return (size_t)(m->nr_feature + 1) * (size_t)cols;
}

static int ll_save(const void *model, struct tr_buf *out)
{
	const struct ll_model *lm = model;
	const struct model *m = lm->m;
	int32_t head[3] = {lm->K, m->nr_class, m->nr_feature};
	return tr_buf_add(out, head, sizeof head) || tr_buf_add(out, &m->bias, sizeof m->bias) ||
	       tr_buf_add(out, m->label, (size_t)m->nr_class * sizeof *m->label) ||
	       tr_buf_add(out, m->w, n_weights(m) * sizeof *m->w);
}

static void ll_free(void *model)
{
	struct ll_model *lm = model;
	if (!lm)
		return;
	if (lm->m)
		free_and_destroy_model(&lm->m);
	tr_free(lm);
}

static int ll_load(const char *what, struct tr_cursor *in, int K, void **model, struct tr_err *e)
{
	int32_t head[3];
	if (tr_cursor_take(in, head, sizeof head) || head[0] != K || head[1] < 1 || head[1] > head[0] ||
	    head[2] < 0)
		return tr_fail(e, "%s: corrupt liblinear model header", what);
	/* the sizes in the header must fit in what is left, before anything is allocated by them */
	int cols = head[1] == 2 ? 1 : head[1];
	double need = (double)sizeof(double) + (double)head[1] * sizeof(int) +
		      ((double)head[2] + 1) * cols * sizeof(double);
	if (need > (double)(in->end - in->p))
		return tr_fail(e, "%s: truncated liblinear model (%.0f bytes announced)", what, need);
	struct ll_model *lm = tr_calloc(1, sizeof *lm);
	struct model *m = calloc(1, sizeof *m); /* freed by liblinear with free() */
	if (!lm || !m) {
		tr_free(lm), free(m);
		return tr_fail(e, "%s: out of memory", what);
	}
	lm->m = m;
	lm->K = head[0];
	m->nr_class = head[1];
	m->nr_feature = head[2];
	m->param.solver_type = L2R_LR;
	m->label = malloc((size_t)m->nr_class * sizeof *m->label);
	m->w = malloc(n_weights(m) * sizeof *m->w);
	int bad = !m->label || !m->w || tr_cursor_take(in, &m->bias, sizeof m->bias) ||
		  tr_cursor_take(in, m->label, (size_t)m->nr_class * sizeof *m->label) ||
		  tr_cursor_take(in, m->w, n_weights(m) * sizeof *m->w);
	for (int c = 0; !bad && c < m->nr_class; c++)
		bad = m->label[c] < 0 || m->label[c] >= lm->K;
	/* training always writes bias 1 (and prediction appends the bias feature with value 1); another bias
	 * would make predict_values skip that feature (bias < 0, NaN) where the blocks add it */
	bad = bad || m->bias != 1.0;
	if (bad) {
		ll_free(lm);
		return tr_fail(e, "%s: truncated or corrupt liblinear model", what);
	}
	*model = lm;
	return 0;
}

static const struct tr_hparam ll_hparams[] = {
	{"C", "1,10,100", 1e-6, 1e6, 0, 0},
	{NULL, NULL, 0, 0, 0, 0},
};

const struct tr_family tr_family_liblinear = {
	.name = "liblinear",
	.caps = TR_CAP_PROBA | TR_CAP_SPARSE | TR_CAP_DENSE,
	.about = "L2-regularised logistic regression (liblinear), one-vs-rest",
	.hparams = ll_hparams,
	.thread_safe = 1,
	.train = ll_train,
	.predict = ll_predict,
	.save = ll_save,
	.load = ll_load,
	.free = ll_free,
};
