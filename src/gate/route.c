/*
 * route.c - what a policy does with inputs, and how well it did: the one routing decision (stages in
 * order, then the OOD guard) and the one set of metrics. `tracer route`, `eval`, `audit` and the
 * experiment cells all call these, so a number in PAPER.md is what `tracer route` would have done.
 */
#include "gate.h"

#include <math.h>
#include <string.h>

int tr_stage_score(const struct tr_surrogate *s, const struct tr_acceptor *a, const struct tr_feats *X,
		   double *score, int *pred, struct tr_err *e)
{
	int K = s->K;
	double *p = tr_malloc((X->n ? X->n : 1) * (size_t)K * sizeof *p);
	if (!p)
		return tr_fail(e, "out of memory");
	int rc = tr_surrogate_predict(s, X, p, e) || tr_acceptor_score(a, p, X->n, K, score, e) ? -1 : 0;
	if (!rc)
		tr_argmax_rows(p, X->n, K, pred);
	tr_free(p);
	return rc;
}

void tr_route_decide(const struct tr_stage_scores *st, int n_stages, const struct tr_ood *ood,
		     const double *ood_dist, size_t n, struct tr_decision *out)
{
	for (size_t i = 0; i < n; i++) {
		struct tr_decision d = {.label = -1, .score = NAN, .top1 = n_stages ? st[0].pred[i] : -1};
		for (int s = 0; s < n_stages && !d.handled; s++) {
			d.score = st[s].score[i];
			if (d.score >= st[s].threshold)
				d.handled = 1, d.label = st[s].pred[i], d.stage = s + 1;
		}
		if (d.handled && ood && tr_ood_far(ood, d.label, ood_dist[i]))
			d.ood = 1, d.handled = 0, d.label = -1, d.stage = 0;
		out[i] = d;
	}
}

int tr_policy_route(const struct tr_policy *p, const struct tr_trace *rows, const size_t *idx, size_t n,
		    const double *emb, size_t emb_rows, int emb_dim, struct tr_decision *out, struct tr_err *e)
{
	if (!p->family || n == 0) {
		tr_route_decide(NULL, 0, NULL, NULL, n, out);
		return 0;
	}
	struct tr_feats X;
	int dense = tr_featurizer_kind(p->fz) == TR_FEAT_NPY;
	if (dense && !emb)
		return tr_fail(e, "this policy was fitted on embeddings: inputs need an \"embedding\"");
	if (dense ? tr_feat_transform_dense(p->fz, emb, emb_rows, emb_dim, idx, n, &X, e)
		  : tr_feat_transform_text(p->fz, rows, idx, n, &X, e))
		return -1;
	struct tr_stage_scores st[TR_MAX_STAGES];
	double *score = tr_malloc((size_t)p->n_stages * n * sizeof *score);
	double *dist = p->ood ? tr_malloc(n * sizeof *dist) : NULL;
	int *need = p->ood ? tr_malloc(2 * n * sizeof *need) : NULL; /* need[0..n), then the labels */
	int *pred = tr_malloc((size_t)p->n_stages * n * sizeof *pred), rc = -1;
	if (!score || !pred || (p->ood && (!dist || !need))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (int s = 0; s < p->n_stages; s++) {
		st[s] = (struct tr_stage_scores){score + (size_t)s * n, pred + (size_t)s * n, p->st[s].threshold};
		if (tr_stage_score(p->st[s].s, &p->st[s].acc, &X, score + (size_t)s * n, pred + (size_t)s * n, e))
			goto out;
	}
	/* the guard only ever looks at handled rows: search the training rows for those alone */
	tr_route_decide(st, p->n_stages, NULL, NULL, n, out);
	if (p->ood) {
		for (size_t i = 0; i < n; i++)
			need[i] = out[i].handled, need[n + i] = out[i].label;
		if (tr_ood_check(p->ood, &X, need, need + n, dist, e))
			goto out;
		tr_route_decide(st, p->n_stages, p->ood, dist, n, out);
	}
	rc = 0;
out:
	tr_free(score), tr_free(pred), tr_free(dist), tr_free(need);
	tr_feats_free(&X);
	return rc;
}

void tr_metrics_compute(const struct tr_decision *d, const int *teacher, const int *gold, size_t n, double target,
			struct tr_metrics *m)
{
	memset(m, 0, sizeof *m);
	m->n = n;
	for (size_t i = 0; i < n; i++) {
		m->ood += d[i].ood;
		if (d[i].handled) {
			m->handled++;
			m->agree += d[i].label == teacher[i];
		}
		if (gold && gold[i] != TR_NO_GOLD) {
			/* the answer given: the surrogate's when handled, else the teacher's (-1: unknown label) */
			int answer = d[i].handled ? d[i].label : teacher[i];
			m->gold_n++;
			m->gold_ok += answer >= 0 && answer == gold[i];
		}
	}
	m->coverage = n ? (double)m->handled / (double)n : 0;
	m->agreement = m->handled ? (double)m->agree / (double)m->handled : NAN;
	m->e2e_agreement = n ? (double)(m->agree + n - m->handled) / (double)n : 0;
	m->gold_accuracy = m->gold_n ? (double)m->gold_ok / (double)m->gold_n : NAN;
	m->violation = m->handled > 0 && m->agreement < target;
}
