/*
 * softmax.c - one multinomial logistic regression over all labels (instead of one-vs-rest problems),
 * L2-regularised like liblinear's: minimise C * sum_i -log p(y_i | x_i) + |W|^2 / 2, the bias a
 * regularised feature of value 1. Loss and gradient are two matrix products (dense rows: BLAS sgemm
 * through GSL's CBLAS, linked to OpenBLAS, in single precision like the float32 embeddings themselves,
 * the rest in double; sparse rows: loops over the non-zeros), minimised by
 * limited-memory BFGS from W = 0. Deterministic: no random draw, one BLAS thread.
 *
 * Only labels present in the training rows get a column (others get probability 0), and sparse rows
 * are optimised over the features that occur in the training rows only (the others' weights are
 * exactly 0 at the optimum); the saved model holds the full (dim + 1) x labels weight matrix.
 */
#include <gsl/gsl_cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "surrogate.h"

#define SM_EPS 1e-2	  /* stop when |gradient| <= SM_EPS * |gradient at the start| */
#define SM_MAX_ITER 2000  /* L-BFGS iterations at most */
#define SM_MEM 10	  /* L-BFGS correction pairs at most... */
#define SM_MEM_MIN 3	  /* ...and at least, */
#define SM_MEM_BYTES (64.0 * (1 << 20)) /* as many as this many bytes hold (tf-idf: millions of weights) */
#define SM_BLOCK 512	  /* rows per product when predicting */

struct sm_model {
	int K, Kc, dim;
	int *label; /* Kc global labels, ascending */
	double *W;  /* (dim + 1) x Kc, row-major; row dim is the bias */
};

static void sm_free(void *model)
{
	struct sm_model *m = model;
	if (!m)
		return;
	tr_free(m->label), tr_free(m->W);
	tr_free(m);
}

/* Row-wise softmax of z (n x Kc) in place; returns sum_i log-normaliser - z_i,y_i when y is given. */
static double softmax_rows(double *z, size_t n, int Kc, const int *y)
{
	double loss = 0;
	for (size_t i = 0; i < n; i++) {
		double *r = z + i * (size_t)Kc, mx = r[0], s = 0;
		for (int c = 1; c < Kc; c++)
			if (r[c] > mx)
				mx = r[c];
		double zy = y ? r[y[i]] : 0;
		for (int c = 0; c < Kc; c++)
			s += r[c] = exp(r[c] - mx);
		for (int c = 0; c < Kc; c++)
			r[c] /= s;
		if (y)
			loss += mx + log(s) - zy;
	}
	return loss;
}

/* The training problem: rows over d compact features (+ bias), labels 0..Kc-1. */
struct sm_prob {
	size_t n;
	int d, Kc;
	const float *X;		      /* dense: n x d in single precision, or NULL */
	struct tr_node *const *rows;  /* sparse rows (indices 1-based, global) */
	const int *col;		      /* sparse: global feature index - 1 -> compact feature */
	const int *y;		      /* compact labels */
	double C;
	double *Z;		      /* work space: scores, then P - Y; n x Kc (sparse) or one row (dense) */
	float *Zf, *Wf;		      /* dense: n x Kc scores, then P - Y; W, then the gradient */
};

/* Z = X W + b for the problem's sparse rows (W is (d + 1) x Kc, the last row the bias). */
static void scores(const struct sm_prob *p, const double *W, double *Z)
{
	size_t Kc = (size_t)p->Kc;
	for (size_t i = 0; i < p->n; i++)
		memcpy(Z + i * Kc, W + (size_t)p->d * Kc, Kc * sizeof *Z);
	for (size_t i = 0; i < p->n; i++)
		for (const struct tr_node *x = p->rows[i]; x->index != -1; x++) {
			const double *w = W + (size_t)p->col[x->index - 1] * Kc;
			double *z = Z + i * Kc;
			for (size_t c = 0; c < Kc; c++)
				z[c] += x->value * w[c];
		}
}

/* Plain loops for the level-1 algebra: BLAS level-1 kernels are picked by CPU model at run time, and a
 * different pick (another machine, valgrind) would change the model's last bits. */
static double dot(const double *x, const double *y, size_t n)
{
	double s = 0;
	for (size_t j = 0; j < n; j++)
		s += x[j] * y[j];
	return s;
}

static void axpy(double a, const double *x, double *y, size_t n)
{
	for (size_t j = 0; j < n; j++)
		y[j] += a * x[j];
}

/*
 * The objective at W, scaled by 1/(C n) (the same minimiser): mean cross-entropy + |W|^2 / (2 C n),
 * and its gradient X^T (P - Y) / n + W / (C n) into g. Two matrix products.
 */
static double objective(struct sm_prob *p, const double *W, double *g, size_t np)
{
	size_t Kc = (size_t)p->Kc, n = p->n;
	double inv = 1.0 / (double)n, reg = 1.0 / (p->C * (double)n), loss = 0;
	const double *wb = W + (size_t)p->d * Kc;
	double *gb = g + (size_t)p->d * Kc;
	memcpy(g, W, np * sizeof *g);
	if (p->X) { /* row by row in double between the two single-precision products: no n x Kc doubles */
		for (size_t j = 0; j < (size_t)p->d * Kc; j++)
			p->Wf[j] = (float)W[j];
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, p->Kc, p->d, 1.0f, p->X, p->d, p->Wf,
			    p->Kc, 0.0f, p->Zf, p->Kc);
		for (size_t c = 0; c < Kc; c++)
			gb[c] *= reg;
		for (size_t i = 0; i < n; i++) {
			double *r = p->Z;
			float *zf = p->Zf + i * Kc;
			for (size_t c = 0; c < Kc; c++)
				r[c] = wb[c] + zf[c];
			loss += softmax_rows(r, 1, p->Kc, p->y + i);
			r[p->y[i]] -= 1;
			for (size_t c = 0; c < Kc; c++) {
				gb[c] += inv * r[c];
				zf[c] = (float)r[c];
			}
		}
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->d, p->Kc, (int)n, 1.0f, p->X, p->d, p->Zf,
			    p->Kc, 0.0f, p->Wf, p->Kc);
		for (size_t j = 0; j < (size_t)p->d * Kc; j++)
			g[j] = g[j] * reg + inv * p->Wf[j];
		return loss * inv + dot(W, W, np) * reg / 2;
	}
	scores(p, W, p->Z);
	loss = softmax_rows(p->Z, n, p->Kc, p->y);
	for (size_t i = 0; i < n; i++)
		p->Z[i * Kc + (size_t)p->y[i]] -= 1;
	for (size_t j = 0; j < (size_t)p->d * Kc; j++)
		g[j] *= reg;
	for (size_t i = 0; i < n; i++)
		for (const struct tr_node *x = p->rows[i]; x->index != -1; x++) {
			double *gr = g + (size_t)p->col[x->index - 1] * Kc;
			const double *r = p->Z + i * Kc;
			for (size_t c = 0; c < Kc; c++)
				gr[c] += inv * x->value * r[c];
		}
	for (size_t c = 0; c < Kc; c++)
		gb[c] *= reg;
	for (size_t i = 0; i < n; i++)
		for (size_t c = 0; c < Kc; c++)
			gb[c] += inv * p->Z[i * Kc + c];
	return loss * inv + dot(W, W, np) * reg / 2;
}

/*
 * Limited-memory BFGS (mem correction pairs, two-loop recursion) with a backtracking Armijo line
 * search, from the W given (zeros, or a warm start) to |gradient| <= SM_EPS * |gradient at the start|
 * or SM_MAX_ITER iterations. Neither GSL nor any other library we link has L-BFGS (GSL's vector_bfgs2
 * keeps only the last step and needed ~2.5 evaluations per iteration and 3-5x the iterations here).
 */
static int minimise(struct sm_prob *p, double *W, struct tr_err *e)
{
	size_t np = ((size_t)p->d + 1) * (size_t)p->Kc;
	double fit = SM_MEM_BYTES / (16.0 * (double)np);
	int mem = fit >= SM_MEM ? SM_MEM : fit <= SM_MEM_MIN ? SM_MEM_MIN : (int)fit;
	double *buf = tr_malloc((4 + 2 * (size_t)mem) * np * sizeof *buf);
	if (!buf)
		return tr_fail(e, "softmax: out of memory for %zu weights", np);
	double *g = buf, *Wn = g + np, *gn = Wn + np, *d = gn + np, *S = d + np, *Y = S + (size_t)mem * np;
	double rho[SM_MEM], al[SM_MEM];
	int m = 0, head = 0; /* pairs stored, slot of the next one */
	double f = objective(p, W, g, np), g0 = sqrt(dot(g, g, np));
	for (int it = 0; it < SM_MAX_ITER && sqrt(dot(g, g, np)) > SM_EPS * g0; it++) {
		/* d = -H g, H the L-BFGS inverse Hessian from the stored pairs, newest first */
		for (size_t j = 0; j < np; j++)
			d[j] = -g[j];
		for (int k = 0; k < m; k++) {
			int s = (head - 1 - k + mem) % mem;
			al[s] = rho[s] * dot(S + s * np, d, np);
			axpy(-al[s], Y + s * np, d, np);
		}
		if (m > 0) {
			int s = (head - 1 + mem) % mem;
			double yy = dot(Y + s * np, Y + s * np, np), gamma = 1 / (rho[s] * yy);
			for (size_t j = 0; j < np; j++)
				d[j] *= gamma;
		} else {
			double gg = sqrt(dot(g, g, np));
			for (size_t j = 0; j < np; j++)
				d[j] /= gg; /* a first step of length 1 */
		}
		for (int k = m - 1; k >= 0; k--) {
			int s = (head - 1 - k + mem) % mem;
			double b = rho[s] * dot(Y + s * np, d, np);
			axpy(al[s] - b, S + s * np, d, np);
		}
		double gd = dot(g, d, np);
		if (!(gd < 0)) { /* not a descent direction (rounding): restart from the gradient */
			m = 0;
			for (size_t j = 0; j < np; j++)
				d[j] = -g[j];
			gd = -dot(g, g, np);
		}
		double t = 1, fn = f;
		int ok = 0;
		for (int ls = 0; ls < 40 && !ok; ls++, t *= 0.5) {
			for (size_t j = 0; j < np; j++)
				Wn[j] = W[j] + t * d[j];
			fn = objective(p, Wn, gn, np);
			ok = fn <= f + 1e-4 * t * gd;
		}
		if (!ok) /* no decrease left in double precision */
			break;
		double *s = S + (size_t)head * np, *yv = Y + (size_t)head * np;
		for (size_t j = 0; j < np; j++)
			s[j] = Wn[j] - W[j], yv[j] = gn[j] - g[j];
		double sy = dot(s, yv, np);
		if (sy > 1e-12 * sqrt(dot(s, s, np) * dot(yv, yv, np))) { /* keep curvature pairs only */
			rho[head] = 1 / sy;
			head = (head + 1) % mem;
			if (m < mem)
				m++;
		}
		memcpy(W, Wn, np * sizeof *W);
		memcpy(g, gn, np * sizeof *g);
		f = fn;
	}
	tr_free(buf);
	return 0;
}

static int sm_train(const struct tr_feats *X, const int *y, int K, const double *hp, uint64_t seed,
		    void **model, struct tr_err *e)
{
	(void)seed; /* nothing random */
	tr_gsl_init();
	struct sm_model *m = tr_calloc(1, sizeof *m);
	int *cls = tr_malloc((size_t)K * sizeof *cls), *yc = tr_malloc(X->n * sizeof *yc);
	int *col = NULL, *feat = NULL, d = X->dim, rc = -1;
	double *W = NULL, *Z = NULL;
	float *Xf = NULL, *Zf = NULL, *Wf = NULL;
	if (!m || !cls || !yc)
		goto oom;
	*m = (struct sm_model){.K = K, .dim = X->dim};
	for (int c = 0; c < K; c++)
		cls[c] = -1;
	for (size_t i = 0; i < X->n; i++)
		cls[y[i]] = 0;
	for (int c = 0; c < K; c++)
		if (cls[c] == 0)
			cls[c] = m->Kc++;
	if (!(m->label = tr_malloc((size_t)m->Kc * sizeof *m->label)))
		goto oom;
	for (int c = 0; c < K; c++)
		if (cls[c] >= 0)
			m->label[cls[c]] = c;
	for (size_t i = 0; i < X->n; i++)
		yc[i] = cls[y[i]];
	if (!X->dense) { /* compact the features that occur in the training rows */
		if (!(col = tr_malloc((size_t)X->dim * sizeof *col + 1)) ||
		    !(feat = tr_malloc((size_t)X->dim * sizeof *feat + 1)))
			goto oom;
		for (int j = 0; j < X->dim; j++)
			col[j] = -1;
		for (size_t i = 0; i < X->n; i++)
			for (const struct tr_node *x = X->rows[i]; x->index != -1; x++)
				col[x->index - 1] = 0;
		d = 0;
		for (int j = 0; j < X->dim; j++)
			if (col[j] == 0)
				feat[d] = j, col[j] = d++;
	}
	size_t Kc = (size_t)m->Kc;
	W = tr_calloc(((size_t)d + 1) * Kc, sizeof *W);
	Z = tr_malloc((X->dense ? 1 : X->n) * Kc * sizeof *Z);
	m->W = tr_calloc(((size_t)X->dim + 1) * Kc, sizeof *m->W);
	if (!W || !Z || !m->W)
		goto oom;
	if (X->dense) { /* single precision for the two products: half the time and memory of double */
		size_t nd = X->n * (size_t)d;
		if (!(Xf = tr_malloc((nd ? nd : 1) * sizeof *Xf)) || !(Zf = tr_malloc((X->n * Kc + 1) * sizeof *Zf)) ||
		    !(Wf = tr_malloc((size_t)d * Kc * sizeof *Wf)))
			goto oom;
		for (size_t j = 0; j < nd; j++)
			Xf[j] = (float)X->dense[j];
	}
	struct sm_prob p = {.n = X->n, .d = d, .Kc = m->Kc, .X = Xf, .rows = X->rows, .col = col, .y = yc,
			    .C = hp[0], .Z = Z, .Zf = Zf, .Wf = Wf};
	if (X->dense && tr_blas_begin()) {
		tr_fail(e, "out of memory while training softmax (BLAS needs %.0f MB)", TR_BLAS_BUFFER / 1e6);
		goto out;
	}
	int bad = minimise(&p, W, e);
	if (X->dense)
		tr_blas_end();
	if (bad)
		goto out;
	if (X->dense)
		memcpy(m->W, W, ((size_t)d + 1) * Kc * sizeof *W);
	else {
		for (int j = 0; j < d; j++)
			memcpy(m->W + (size_t)feat[j] * Kc, W + (size_t)j * Kc, Kc * sizeof *W);
		memcpy(m->W + (size_t)X->dim * Kc, W + (size_t)d * Kc, Kc * sizeof *W);
	}
	*model = m;
	m = NULL;
	rc = 0;
	goto out;
oom:
	tr_fail(e, "softmax: out of memory for %zu rows", X->n);
out:
	sm_free(m);
	tr_free(cls), tr_free(yc), tr_free(col), tr_free(feat), tr_free(W), tr_free(Z);
	tr_free(Xf), tr_free(Zf), tr_free(Wf);
	return rc;
}

static int sm_predict(const void *model, const struct tr_feats *X, double *proba, struct tr_err *e)
{
	const struct sm_model *m = model;
	size_t Kc = (size_t)m->Kc, K = (size_t)m->K;
	double *Z = tr_malloc(SM_BLOCK * Kc * sizeof *Z);
	if (!Z)
		return tr_fail(e, "softmax: out of memory");
	if (X->dense && X->dim != m->dim) {
		tr_free(Z);
		return tr_fail(e, "softmax: rows of dimension %d for a model of dimension %d", X->dim, m->dim);
	}
	if (X->dense && tr_blas_begin()) {
		tr_free(Z);
		return tr_fail(e, "out of memory while predicting with softmax (BLAS needs %.0f MB)", TR_BLAS_BUFFER / 1e6);
	}
	for (size_t i0 = 0; i0 < X->n; i0 += SM_BLOCK) {
		size_t b = X->n - i0 < SM_BLOCK ? X->n - i0 : SM_BLOCK;
		for (size_t i = 0; i < b; i++)
			memcpy(Z + i * Kc, m->W + (size_t)m->dim * Kc, Kc * sizeof *Z);
		if (X->dense) {
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, m->Kc, m->dim, 1.0,
				    X->dense + i0 * (size_t)m->dim, m->dim, m->W, m->Kc, 1.0, Z, m->Kc);
		} else {
			for (size_t i = 0; i < b; i++)
				for (const struct tr_node *x = X->rows[i0 + i]; x->index != -1; x++) {
					if (x->index < 1 || x->index > m->dim)
						continue; /* a feature the model never saw has weight 0 */
					const double *w = m->W + (size_t)(x->index - 1) * Kc;
					double *z = Z + i * Kc;
					for (size_t c = 0; c < Kc; c++)
						z[c] += x->value * w[c];
				}
		}
		softmax_rows(Z, b, m->Kc, NULL);
		for (size_t i = 0; i < b; i++) {
			double *row = proba + (i0 + i) * K;
			memset(row, 0, K * sizeof *row);
			for (size_t c = 0; c < Kc; c++)
				row[m->label[c]] = Z[i * Kc + c];
		}
	}
	if (X->dense)
		tr_blas_end();
	tr_free(Z);
	return 0;
}

/* Field by field: int32 K, labels, dim; int32 label[labels]; double W[(dim + 1) x labels]. */
static int sm_save(const void *model, struct tr_buf *out)
{
	const struct sm_model *m = model;
	int32_t head[3] = {m->K, m->Kc, m->dim};
	return tr_buf_add(out, head, sizeof head) || tr_buf_add(out, m->label, (size_t)m->Kc * sizeof *m->label) ||
	       tr_buf_add(out, m->W, ((size_t)m->dim + 1) * (size_t)m->Kc * sizeof *m->W);
}

static int sm_load(const char *what, struct tr_cursor *in, int K, void **model, struct tr_err *e)
{
	int32_t head[3];
	if (tr_cursor_take(in, head, sizeof head) || head[0] != K || head[1] < 1 || head[1] > head[0] || head[2] < 0 ||
	    head[2] > TR_MAX_DIM)
		return tr_fail(e, "%s: corrupt softmax model header", what);
	double need = (double)head[1] * sizeof(int32_t) + ((double)head[2] + 1) * head[1] * sizeof(double);
	if (need > (double)(in->end - in->p))
		return tr_fail(e, "%s: truncated softmax model (%.0f bytes announced)", what, need);
	struct sm_model *m = tr_calloc(1, sizeof *m);
	if (!m)
		return tr_fail(e, "%s: out of memory", what);
	*m = (struct sm_model){.K = head[0], .Kc = head[1], .dim = head[2]};
	size_t nw = ((size_t)m->dim + 1) * (size_t)m->Kc;
	m->label = tr_malloc((size_t)m->Kc * sizeof *m->label);
	m->W = tr_malloc(nw * sizeof *m->W);
	int bad = !m->label || !m->W || tr_cursor_take(in, m->label, (size_t)m->Kc * sizeof *m->label) ||
		  tr_cursor_take(in, m->W, nw * sizeof *m->W);
	for (int c = 0; !bad && c < m->Kc; c++)
		bad = m->label[c] < 0 || m->label[c] >= m->K || (c > 0 && m->label[c] <= m->label[c - 1]);
	for (size_t j = 0; !bad && j < nw; j++)
		bad = !isfinite(m->W[j]);
	if (bad) {
		sm_free(m);
		return tr_fail(e, "%s: truncated or corrupt softmax model", what);
	}
	*model = m;
	return 0;
}

static const struct tr_hparam sm_hparams[] = {
	{"C", "1,10,100", 1e-6, 1e6, 0, 0},
	{NULL, NULL, 0, 0, 0, 0},
};

const struct tr_family tr_family_softmax = {
	.name = "softmax",
	.caps = TR_CAP_PROBA | TR_CAP_SPARSE | TR_CAP_DENSE,
	.about = "multinomial logistic regression, L2-regularised, L-BFGS on BLAS products",
	.hparams = sm_hparams,
	.thread_safe = 1,
	.train = sm_train,
	.predict = sm_predict,
	.save = sm_save,
	.load = sm_load,
	.free = sm_free,
};
