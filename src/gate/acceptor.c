/*
 * acceptor.c - the acceptor: scores, per input, how likely the surrogate's answer equals the teacher's,
 * from four features of the surrogate's probability row. A logistic regression (the liblinear family,
 * C = 1) on standardised features, trained on the validation rows.
 */
#include "gate.h"

#include <math.h>
#include <string.h>

void tr_acceptor_features(const double *p, int K, double f[TR_ACC_NFEAT])
{
	double t1 = 0, t2 = 0, h = 0;
	for (int k = 0; k < K; k++) {
		double v = p[k];
		if (v > t1)
			t2 = t1, t1 = v;
		else if (v > t2)
			t2 = v;
		if (v > 0)
			h -= v * log(v);
	}
	f[0] = t1;
	f[1] = t2;
	f[2] = t1 - t2;
	f[3] = K > 1 ? h / log((double)K) : 0;
}

/* Standardised feature rows as dense tr_feats (nodes and the dense copy). */
static int standardised(const struct tr_acceptor *a, const double *proba, size_t n, int K, struct tr_feats *X)
{
	memset(X, 0, sizeof *X);
	X->n = n;
	X->dim = TR_ACC_NFEAT;
	X->dense = tr_malloc(n * TR_ACC_NFEAT * sizeof *X->dense);
	X->pool = tr_malloc(n * (TR_ACC_NFEAT + 1) * sizeof *X->pool);
	X->rows = tr_malloc(n * sizeof *X->rows);
	if (!X->dense || !X->pool || !X->rows) {
		tr_feats_free(X);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		double f[TR_ACC_NFEAT];
		tr_acceptor_features(proba + i * (size_t)K, K, f);
		struct tr_node *row = X->pool + i * (TR_ACC_NFEAT + 1);
		for (int j = 0; j < TR_ACC_NFEAT; j++) {
			double z = (f[j] - a->mean[j]) / a->sd[j];
			X->dense[i * TR_ACC_NFEAT + (size_t)j] = z;
			row[j] = (struct tr_node){j + 1, z};
		}
		row[TR_ACC_NFEAT] = (struct tr_node){-1, 0};
		X->rows[i] = row;
	}
	return 0;
}

int tr_acceptor_fit(const double *proba, const int *agree, size_t n, int K, uint64_t seed,
		    struct tr_acceptor *out, struct tr_err *e)
{
	memset(out, 0, sizeof *out);
	size_t ones = 0;
	for (size_t i = 0; i < n; i++)
		ones += agree[i] != 0;
	for (int j = 0; j < TR_ACC_NFEAT; j++)
		out->sd[j] = 1;
	if (ones == 0 || ones == n)
		return 0; /* one outcome only: the score is top-1 */
	for (size_t i = 0; i < n; i++) {
		double f[TR_ACC_NFEAT];
		tr_acceptor_features(proba + i * (size_t)K, K, f);
		for (int j = 0; j < TR_ACC_NFEAT; j++)
			out->mean[j] += f[j] / (double)n;
	}
	double var[TR_ACC_NFEAT] = {0};
	for (size_t i = 0; i < n; i++) {
		double f[TR_ACC_NFEAT];
		tr_acceptor_features(proba + i * (size_t)K, K, f);
		for (int j = 0; j < TR_ACC_NFEAT; j++)
			var[j] += (f[j] - out->mean[j]) * (f[j] - out->mean[j]) / (double)n;
	}
	for (int j = 0; j < TR_ACC_NFEAT; j++)
		out->sd[j] = var[j] > 1e-24 ? sqrt(var[j]) : 1;
	struct tr_feats X;
	int *y = tr_malloc(n * sizeof *y);
	if (!y || standardised(out, proba, n, K, &X)) {
		tr_free(y);
		return tr_fail(e, "acceptor: out of memory");
	}
	for (size_t i = 0; i < n; i++)
		y[i] = agree[i] != 0;
	struct tr_grid g = {.n_hp = 1, .n_vals = {1}, .vals = {{1.0}}};
	struct tr_feats none = {0};
	int rc = tr_surrogate_fit(&tr_family_liblinear, &g, &X, y, &none, NULL, 2, seed, 1, &out->lr, NULL, NULL, e);
	tr_free(y);
	tr_feats_free(&X);
	return rc;
}

int tr_acceptor_score(const struct tr_acceptor *a, const double *proba, size_t n, int K, double *score,
		      struct tr_err *e)
{
	if (!a->lr) {
		for (size_t i = 0; i < n; i++) {
			double f[TR_ACC_NFEAT];
			tr_acceptor_features(proba + i * (size_t)K, K, f);
			score[i] = f[0];
		}
		return 0;
	}
	struct tr_feats X;
	double *p = tr_malloc(2 * n * sizeof *p);
	if (!p || standardised(a, proba, n, K, &X)) {
		tr_free(p);
		return tr_fail(e, "acceptor: out of memory");
	}
	int rc = tr_surrogate_predict(a->lr, &X, p, e);
	for (size_t i = 0; !rc && i < n; i++)
		score[i] = p[2 * i + 1];
	tr_free(p);
	tr_feats_free(&X);
	return rc;
}

void tr_acceptor_free(struct tr_acceptor *a)
{
	tr_surrogate_free(a->lr);
	a->lr = NULL;
}
