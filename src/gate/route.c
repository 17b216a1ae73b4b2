/*
 * route.c - what a policy does with inputs: stage 1 answers when its acceptor score clears the
 * threshold; for rsb, stage 2 answers what stage 1 rejects when its own score clears its threshold;
 * the OOD guard defers handled inputs far from every training trace; everything else is deferred.
 */
#include "gate.h"

#include <math.h>
#include <string.h>

int tr_policy_route(const struct tr_policy *p, const struct tr_trace *rows, const size_t *idx, size_t n,
		    const double *emb, size_t emb_rows, int emb_dim, struct tr_decision *out, struct tr_err *e)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (struct tr_decision){.label = -1, .score = NAN, .top1 = -1};
	if (p->kind == TR_POL_REFUSED || n == 0)
		return 0;
	struct tr_feats X;
	int dense = tr_featurizer_kind(p->fz) == TR_FEAT_NPY;
	if (dense && !emb)
		return tr_fail(e, "this policy was fitted on embeddings: inputs need an \"embedding\"");
	if (dense ? tr_feat_transform_dense(p->fz, emb, emb_rows, emb_dim, idx, n, &X, e)
		  : tr_feat_transform_text(p->fz, rows, idx, n, &X, e))
		return -1;
	size_t K = (size_t)p->labels.n;
	double *proba = tr_malloc(n * K * sizeof *proba), *score = tr_malloc(n * sizeof *score);
	int *pred = tr_malloc(n * sizeof *pred), rc = -1;
	if (!proba || !score || !pred) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (int s = 0; s < p->n_stages; s++) {
		const struct tr_stage *st = &p->st[s];
		if (tr_surrogate_predict(st->s, &X, proba, e) || tr_acceptor_score(&st->acc, proba, n, (int)K, score, e))
			goto out;
		tr_argmax_rows(proba, n, (int)K, pred);
		for (size_t i = 0; i < n; i++) {
			if (s == 0)
				out[i].top1 = pred[i];
			if (out[i].handled)
				continue;
			out[i].score = score[i];
			if (score[i] >= st->threshold) {
				out[i].handled = 1;
				out[i].label = pred[i];
				out[i].stage = s + 1;
			}
		}
	}
	if (p->ood) {
		int *flag = tr_malloc(n * sizeof *flag);
		for (size_t i = 0; flag && i < n; i++)
			pred[i] = out[i].label;
		if (!flag || tr_ood_flags(p->ood, &X, pred, flag, e)) {
			tr_free(flag);
			if (!flag)
				tr_fail(e, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			if (out[i].handled && flag[i]) {
				out[i].ood = 1;
				out[i].handled = 0;
				out[i].label = -1;
				out[i].stage = 0;
			}
		tr_free(flag);
	}
	rc = 0;
out:
	tr_free(proba), tr_free(score), tr_free(pred);
	tr_feats_free(&X);
	return rc;
}
