/*
 * sparse_knn.c - exact top-k dot-product search over sparse rows (the OOD guard's neighbours, kNN's votes)
 * that reads far fewer postings than a full scan.
 *
 * Features in at least TR_KNN_COMMON_SHARE of the rows (short character n-grams: most of the postings)
 * are "common". A query reads the postings of its other features only, which gives every row it touches
 * the exact sum of those products, then bounds the rest of the dot product by Cauchy-Schwarz: the
 * common part of <q, r> is at most |q_common| |r_common|, the row's common norm being kept per row. Rows
 * whose bound cannot reach the k-th best similarity found so far are skipped; every other row gets its
 * dot product computed in full, in ascending feature order. That is the order tr_sparse_index_dots adds
 * in (zeros added for the row's features absent from the query change no bit), so the similarities and
 * the k rows are bit-for-bit those of a full scan. The bound needs non-negative values (tf-idf rows are);
 * with a negative value anywhere, every row is computed in full. Bounds are compared with a slack far
 * above the rounding of any sum, so rounding can never prune a row that belongs to the top k.
 */
#include "feat.h"

#include <math.h>
#include <string.h>

/* a feature is common when at least this share of the rows has it */
#define TR_KNN_COMMON_SHARE 0.1
/* tr_sparse_knn_probe reads the postings of features in fewer than this share of the rows */
#define TR_KNN_PROBE_SHARE 0.01

struct tr_sparse_knn {
	size_t n;
	int dim;
	int nonneg;		/* every stored value >= 0 */
	size_t *row_start;	/* row r: [row_start[r], row_start[r+1]) of col/val, ascending columns */
	uint32_t *col;
	double *val;
	size_t *start;		/* postings of a non-common feature f: [start[f], start[f+1]); empty when common */
	uint32_t *prow;
	double *pval;
	unsigned char *common;	/* dim + 1 flags */
	double *rn;		/* per row: norm of its common features */
	uint32_t *by_rn;	/* rows by rn descending, then row ascending */
	double max_norm;	/* largest full row norm */
};

struct tr_sparse_knn_scratch {
	size_t n;
	int dim;
	double *qd;		/* the query scattered, dim + 1 entries, zero between queries */
	double *acc;		/* per row: sum over the query's non-common features */
	uint32_t *mark, *done, gen;
	uint32_t *touched;
	double *heap_ub;	/* the largest bounds among touched rows (a min-heap of up to 2k) */
	uint32_t *heap_row;
	size_t cap_k;
	size_t evaluated;	/* rows whose dot product was computed, over every search */
};

void tr_sparse_knn_free(struct tr_sparse_knn *ix)
{
	if (!ix)
		return;
	tr_free(ix->row_start), tr_free(ix->col), tr_free(ix->val);
	tr_free(ix->start), tr_free(ix->prow), tr_free(ix->pval);
	tr_free(ix->common), tr_free(ix->rn), tr_free(ix->by_rn);
	tr_free(ix);
}

/* qsort has no context argument: per thread, since kNN grid points build their indexes in parallel threads
 * (a shared one was a data race, found by make tsan) */
static _Thread_local const double *sort_key;
static int by_key_desc(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	double kx = sort_key[x], ky = sort_key[y];
	if (kx != ky)
		return kx > ky ? -1 : 1;
	return (x > y) - (x < y);
}

int tr_sparse_knn_new(const struct tr_node *nodes, size_t n_nodes, size_t n_rows, int dim, struct tr_sparse_knn **out)
{
	*out = NULL;
	size_t ends = 0;
	for (size_t j = 0; j < n_nodes; j++)
		ends += nodes[j].index == -1;
	if (ends != n_rows || n_nodes == 0 || nodes[n_nodes - 1].index != -1 || n_rows > UINT32_MAX || dim < 0)
		return -1;
	struct tr_sparse_knn *ix = tr_calloc(1, sizeof *ix);
	size_t d = (size_t)dim + 2, nr = n_rows ? n_rows : 1, nn = n_nodes;
	if (!ix)
		return -1;
	ix->n = n_rows, ix->dim = dim, ix->nonneg = 1;
	ix->row_start = tr_malloc((n_rows + 1) * sizeof *ix->row_start);
	ix->col = tr_malloc(nn * sizeof *ix->col);
	ix->val = tr_malloc(nn * sizeof *ix->val);
	ix->start = tr_calloc(d, sizeof *ix->start);
	ix->common = tr_calloc(d, 1);
	ix->rn = tr_calloc(nr, sizeof *ix->rn);
	ix->by_rn = tr_malloc(nr * sizeof *ix->by_rn);
	size_t *df = tr_calloc(d, sizeof *df);
	if (!ix->row_start || !ix->col || !ix->val || !ix->start || !ix->common || !ix->rn || !ix->by_rn || !df)
		goto oom;
	/* rows as compact columns (features outside 1..dim dropped, as tr_sparse_index_build drops them) */
	size_t m = 0, j = 0;
	for (size_t r = 0; r < n_rows; r++) {
		ix->row_start[r] = m;
		double nrm = 0;
		for (; nodes[j].index != -1; j++)
			if (nodes[j].index > 0 && nodes[j].index <= dim) {
				ix->col[m] = (uint32_t)nodes[j].index;
				ix->val[m++] = nodes[j].value;
				df[nodes[j].index]++;
				ix->nonneg &= nodes[j].value >= 0;
				nrm += nodes[j].value * nodes[j].value;
			}
		j++;
		if (sqrt(nrm) > ix->max_norm)
			ix->max_norm = sqrt(nrm);
	}
	ix->row_start[n_rows] = m;
	double cut = TR_KNN_COMMON_SHARE * (double)n_rows;
	for (int f = 1; f <= dim; f++)
		ix->common[f] = df[f] > 0 && (double)df[f] >= cut;
	size_t np = 0;
	for (int f = 1; f <= dim; f++) {
		ix->start[f] = np;
		np += ix->common[f] ? 0 : df[f];
	}
	ix->start[dim + 1] = np;
	ix->prow = tr_malloc((np ? np : 1) * sizeof *ix->prow);
	ix->pval = tr_malloc((np ? np : 1) * sizeof *ix->pval);
	if (!ix->prow || !ix->pval)
		goto oom;
	memcpy(df, ix->start, d * sizeof *df); /* now the fill position of each list */
	for (size_t r = 0; r < n_rows; r++) {
		double c2 = 0;
		for (size_t t = ix->row_start[r]; t < ix->row_start[r + 1]; t++) {
			uint32_t f = ix->col[t];
			if (ix->common[f]) {
				c2 += ix->val[t] * ix->val[t];
			} else {
				ix->prow[df[f]] = (uint32_t)r;
				ix->pval[df[f]++] = ix->val[t];
			}
		}
		ix->rn[r] = sqrt(c2);
		ix->by_rn[r] = (uint32_t)r;
	}
	sort_key = ix->rn;
	qsort(ix->by_rn, n_rows, sizeof *ix->by_rn, by_key_desc);
	tr_free(df);
	*out = ix;
	return 0;
oom:
	tr_free(df);
	tr_sparse_knn_free(ix);
	return -1;
}

size_t tr_sparse_knn_rows(const struct tr_sparse_knn *ix)
{
	return ix->n;
}

void tr_sparse_knn_scratch_free(struct tr_sparse_knn_scratch *s)
{
	if (!s)
		return;
	tr_free(s->qd), tr_free(s->acc), tr_free(s->mark), tr_free(s->done), tr_free(s->touched);
	tr_free(s->heap_ub), tr_free(s->heap_row);
	tr_free(s);
}

struct tr_sparse_knn_scratch *tr_sparse_knn_scratch_new(const struct tr_sparse_knn *ix, int k)
{
	struct tr_sparse_knn_scratch *s = tr_calloc(1, sizeof *s);
	size_t n = ix->n ? ix->n : 1, kk = k > 0 ? (size_t)k : 1;
	if (!s)
		return NULL;
	s->n = ix->n, s->dim = ix->dim, s->cap_k = kk;
	s->qd = tr_calloc((size_t)ix->dim + 1, sizeof *s->qd);
	s->acc = tr_calloc(n, sizeof *s->acc);
	s->mark = tr_calloc(n, sizeof *s->mark);
	s->done = tr_calloc(n, sizeof *s->done);
	/* one spare: the branch-free append writes touched[nt] before it knows whether the row is new, so
	 * with every row touched a repeated row writes (and does not keep) touched[n] */
	s->touched = tr_malloc((n + 1) * sizeof *s->touched);
	s->heap_ub = tr_malloc(2 * kk * sizeof *s->heap_ub);
	s->heap_row = tr_malloc(2 * kk * sizeof *s->heap_row);
	if (!s->qd || !s->acc || !s->mark || !s->done || !s->touched || !s->heap_ub || !s->heap_row) {
		tr_sparse_knn_scratch_free(s);
		return NULL;
	}
	return s;
}

size_t tr_sparse_knn_scratch_evaluated(const struct tr_sparse_knn_scratch *s)
{
	return s->evaluated;
}

/* The ranked top list: similarity descending, then row ascending (a full scan's insertion order). */
struct top {
	uint32_t *row;
	double *sim;
	size_t have, k;
};

static int ranks_before(double s, uint32_t r, double ts, uint32_t tr)
{
	return s > ts || (s == ts && r < tr);
}

/* Offers row r; 1 when it entered the list. */
static int top_offer(struct top *t, uint32_t r, double s)
{
	if (t->have == t->k && !ranks_before(s, r, t->sim[t->k - 1], t->row[t->k - 1]))
		return 0;
	size_t pos = t->have < t->k ? t->have++ : t->k - 1;
	while (pos > 0 && ranks_before(s, r, t->sim[pos - 1], t->row[pos - 1])) {
		t->sim[pos] = t->sim[pos - 1], t->row[pos] = t->row[pos - 1];
		pos--;
	}
	t->sim[pos] = s, t->row[pos] = r;
	return 1;
}

/* Offers row r and says whether the caller's stop rule is now met by a full list. */
static int offer_until(struct top *t, uint32_t r, double s, const struct tr_knn_stop *stop)
{
	return top_offer(t, r, s) && stop && t->have == t->k && stop->enough(t->sim, t->k, stop->arg);
}

/* The full dot product of the scattered query with row r, in ascending feature order. */
static double row_dot(const struct tr_sparse_knn *ix, const double *qd, uint32_t r)
{
	double s = 0;
	for (size_t t = ix->row_start[r]; t < ix->row_start[r + 1]; t++)
		s += qd[ix->col[t]] * ix->val[t];
	return s;
}

/* min-heap of (bound, row) keeping the k largest bounds */
static void heap_push(struct tr_sparse_knn_scratch *s, size_t *h, size_t k, double ub, uint32_t r)
{
	double *u = s->heap_ub;
	uint32_t *w = s->heap_row;
	size_t i;
	if (*h < k) {
		i = (*h)++;
		while (i > 0 && u[(i - 1) / 2] > ub) {
			u[i] = u[(i - 1) / 2], w[i] = w[(i - 1) / 2];
			i = (i - 1) / 2;
		}
	} else if (ub > u[0]) {
		i = 0;
		for (;;) {
			size_t c = 2 * i + 1;
			if (c >= k)
				break;
			if (c + 1 < k && u[c + 1] < u[c])
				c++;
			if (u[c] >= ub)
				break;
			u[i] = u[c], w[i] = w[c];
			i = c;
		}
	} else {
		return;
	}
	u[i] = ub, w[i] = r;
}

/* A new search's stamp for mark/done (when the stamps wrap, every row's is cleared first). */
static uint32_t next_generation(const struct tr_sparse_knn *ix, struct tr_sparse_knn_scratch *s)
{
	if (++s->gen == 0) {
		memset(s->mark, 0, ix->n * sizeof *s->mark);
		memset(s->done, 0, ix->n * sizeof *s->done);
		s->gen = 1;
	}
	return s->gen;
}

/* Zeroes the query's entries of the scattered query qd, ready for the next search. */
static void unscatter(const struct tr_sparse_knn *ix, const struct tr_node *q, double *qd)
{
	for (const struct tr_node *p = q; p->index != -1; p++)
		if (p->index > 0 && p->index <= ix->dim)
			qd[p->index] = 0;
}

size_t tr_sparse_knn_top(const struct tr_sparse_knn *ix, const struct tr_node *q, int k, size_t skip,
			 struct tr_sparse_knn_scratch *s, uint32_t *rows, double *sims)
{
	return tr_sparse_knn_top_until(ix, q, k, skip, NULL, s, rows, sims, NULL);
}

size_t tr_sparse_knn_top_until(const struct tr_sparse_knn *ix, const struct tr_node *q, int k, size_t skip,
			       const struct tr_knn_stop *stop, struct tr_sparse_knn_scratch *s, uint32_t *rows,
			       double *sims, int *stopped)
{
	int early = 0;
	if (stopped)
		*stopped = 0;
	if (k < 1 || ix->n == 0)
		return 0;
	struct top t = {rows, sims, 0, (size_t)k};
	double *qd = s->qd, qc2 = 0, qn2 = 0;
	int nonneg = ix->nonneg;
	for (const struct tr_node *p = q; p->index != -1; p++)
		if (p->index > 0 && p->index <= ix->dim) {
			qd[p->index] = p->value;
			nonneg &= p->value >= 0;
			qn2 += p->value * p->value;
			if (ix->common[p->index])
				qc2 += p->value * p->value;
		}
	if (!nonneg) { /* no bound holds: every row in full */
		for (uint32_t r = 0; r < ix->n && !early; r++)
			if (r != skip) {
				s->evaluated++;
				early = offer_until(&t, r, row_dot(ix, qd, r), stop);
			}
		goto out;
	}
	uint32_t gen = next_generation(ix, s), *restrict mark = s->mark, *restrict touched = s->touched;
	double *restrict acc = s->acc; /* zero outside the rows touched, between searches */
	const uint32_t *restrict prow = ix->prow;
	const double *restrict pval = ix->pval;
	size_t nt = 0;
	for (const struct tr_node *p = q; p->index != -1; p++) {
		if (p->index <= 0 || p->index > ix->dim || ix->common[p->index])
			continue;
		double v = p->value;
		for (size_t j = ix->start[p->index], end = ix->start[p->index + 1]; j < end; j++) {
			uint32_t r = prow[j];
			touched[nt] = r; /* kept when r is new (branch-free: these lists are long) */
			nt += mark[r] != gen;
			mark[r] = gen;
			acc[r] += v * pval[j];
		}
	}
	double qc = sqrt(qc2);
	/* far above the rounding of any of these sums (relative 1e-9 of the largest possible dot product) */
	double slack = 1e-9 * (sqrt(qn2) * ix->max_norm) + 1e-300;
	/* the touched rows with the k largest bounds first, so the k-th best similarity rises early */
	size_t kk = (size_t)k < s->cap_k ? (size_t)k : s->cap_k, h = 0;
	for (size_t i = 0; i < nt; i++) {
		uint32_t r = s->touched[i];
		if (r != skip)
			heap_push(s, &h, kk, acc[r] + qc * ix->rn[r], r);
	}
	for (size_t i = 0; i < h && !early; i++) {
		uint32_t r = s->heap_row[i];
		s->done[r] = gen;
		s->evaluated++;
		early = offer_until(&t, r, row_dot(ix, qd, r), stop);
	}
	for (size_t i = 0; i < nt && !early; i++) {
		uint32_t r = s->touched[i];
		if (r == skip || s->done[r] == gen)
			continue;
		if (t.have == t.k && acc[r] + qc * ix->rn[r] < t.sim[t.k - 1] - slack)
			continue;
		s->evaluated++;
		early = offer_until(&t, r, row_dot(ix, qd, r), stop);
	}
	/* untouched rows: their dot product is the common part alone, at most qc * rn */
	for (size_t i = 0; i < ix->n && !early; i++) {
		uint32_t r = ix->by_rn[i];
		if (t.have == t.k && qc * ix->rn[r] < t.sim[t.k - 1] - slack)
			break;
		if (r == skip || s->mark[r] == gen)
			continue;
		s->evaluated++;
		early = offer_until(&t, r, row_dot(ix, qd, r), stop);
	}
	for (size_t i = 0; i < nt; i++)
		acc[touched[i]] = 0;
out:
	unscatter(ix, q, qd);
	if (stopped)
		*stopped = early;
	return t.have;
}

size_t tr_sparse_knn_probe(const struct tr_sparse_knn *ix, const struct tr_node *q, int k, size_t skip,
			   const struct tr_knn_stop *stop, struct tr_sparse_knn_scratch *s, uint32_t *rows,
			   double *sims)
{
	if (k < 1 || ix->n == 0)
		return 0;
	struct top t = {rows, sims, 0, (size_t)k};
	size_t kk = (size_t)k < s->cap_k ? (size_t)k : s->cap_k, m = 2 * kk, h = 0, nt = 0;
	size_t cut = (size_t)(TR_KNN_PROBE_SHARE * (double)ix->n) + 1;
	uint32_t gen = next_generation(ix, s);
	for (const struct tr_node *p = q; p->index != -1; p++) {
		if (p->index <= 0 || p->index > ix->dim)
			continue;
		s->qd[p->index] = p->value;
		size_t j = ix->start[p->index], end = ix->start[p->index + 1];
		if (ix->common[p->index] || end - j > cut)
			continue;
		for (; j < end; j++) {
			uint32_t r = ix->prow[j];
			s->touched[nt] = r;
			nt += s->mark[r] != gen;
			s->mark[r] = gen;
			s->acc[r] += p->value * ix->pval[j];
		}
	}
	for (size_t i = 0; i < nt; i++) {
		uint32_t r = s->touched[i];
		if (r != skip)
			heap_push(s, &h, m, s->acc[r], r);
		s->acc[r] = 0;
	}
	/* the candidates by their partial sums, largest first (then row), so a stop rule is met early */
	double *u = s->heap_ub;
	uint32_t *w = s->heap_row;
	for (size_t i = 1; i < h; i++) {
		double ub = u[i];
		uint32_t r = w[i];
		size_t j = i;
		for (; j > 0 && ranks_before(ub, r, u[j - 1], w[j - 1]); j--)
			u[j] = u[j - 1], w[j] = w[j - 1];
		u[j] = ub, w[j] = r;
	}
	int early = 0;
	for (size_t i = 0; i < h && !early; i++) {
		s->evaluated++;
		early = offer_until(&t, w[i], row_dot(ix, s->qd, w[i]), stop);
	}
	unscatter(ix, q, s->qd);
	return t.have;
}
