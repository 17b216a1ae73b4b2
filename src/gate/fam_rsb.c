/*
 * fam_rsb.c - the two-stage family: where l2d deploys a rejecting stage-1 threshold
 * t1, a second surrogate learns on the rows stage 1 rejects; stage 1 answers above t1, stage 2 answers
 * what stage 1 rejects when its own acceptor clears the gate's threshold, the teacher the rest.
 */
#include "fit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Stage 2 of rsb for one stage-1 threshold (cached: several targets may share a threshold). */
struct stage2 {
	double t1;
	int tried;
	char why[160]; /* why not tried */
	struct tr_surrogate *s;
	struct tr_acceptor acc;
	double *cal_score, *val_score; /* combined policy scores (+INFINITY: stage 1 handles it) */
	int *cal_agree, *val_agree;
	size_t rtr, rva, rca; /* rejected rows */
};

#define STAGE2_CACHE 64

/* Second stages built so far, one per stage-1 threshold (several targets may share one). */
struct cache {
	struct stage2 *v[STAGE2_CACHE];
	int n;
};

static void stage2_free(struct stage2 *s)
{
	if (!s)
		return;
	tr_surrogate_free(s->s);
	tr_acceptor_free(&s->acc);
	tr_free(s->cal_score), tr_free(s->val_score), tr_free(s->cal_agree), tr_free(s->val_agree);
	tr_free(s);
}

/* Rows of list `pos` whose stage-1 score is below t1. */
static size_t rejected(const struct tr_fit *f, const size_t *pos, size_t m, double t1, size_t *out)
{
	size_t r = 0;
	for (size_t i = 0; i < m; i++)
		if (f->sc1[pos[i]] < t1)
			out[r++] = pos[i];
	return r;
}

static int build_stage2(struct tr_fit *f, double t1, struct stage2 **out, struct tr_err *e)
{
	struct stage2 *s = tr_calloc(1, sizeof *s);
	size_t *rtr = tr_malloc(f->n * sizeof *rtr), *rva = tr_malloc(f->n * sizeof *rva),
	       *rca = tr_malloc(f->n * sizeof *rca);
	double *pva = NULL, *pca = NULL, *sva = NULL, *sca = NULL;
	int *ava = NULL, *aca = NULL, *seen = tr_calloc((size_t)f->K, sizeof *seen), rc = -1;
	if (!s || !rtr || !rva || !rca || !seen) {
		tr_fail(e, "out of memory");
		goto out;
	}
	s->t1 = t1;
	s->rtr = rejected(f, f->tr, f->ntr, t1, rtr);
	s->rva = rejected(f, f->va, f->nva, t1, rva);
	s->rca = rejected(f, f->ca, f->nca, t1, rca);
	int classes = 0;
	for (size_t i = 0; i < s->rtr; i++)
		if (!seen[f->y[rtr[i]]]++)
			classes++;
	if (s->rtr < 50 || s->rva < 20 || s->rca < 20 || classes < 2) {
		snprintf(s->why, sizeof s->why,
			 "not tried: stage 1 rejects %zu train, %zu validation, %zu calibration rows in %d classes "
			 "(needs 50, 20, 20, 2)",
			 s->rtr, s->rva, s->rca, classes);
		rc = 0;
		goto out;
	}
	s->tried = 1;
	size_t K = (size_t)f->K;
	pva = tr_malloc(s->rva * K * sizeof *pva), pca = tr_malloc(s->rca * K * sizeof *pca);
	sva = tr_malloc(s->rva * sizeof *sva), sca = tr_malloc(s->rca * sizeof *sca);
	ava = tr_malloc(s->rva * sizeof *ava), aca = tr_malloc(s->rca * sizeof *aca);
	s->cal_score = tr_malloc(f->nca * sizeof *s->cal_score);
	s->cal_agree = tr_malloc(f->nca * sizeof *s->cal_agree);
	s->val_score = tr_malloc(f->nva * sizeof *s->val_score);
	s->val_agree = tr_malloc(f->nva * sizeof *s->val_agree);
	if (!pva || !pca || !sva || !sca || !ava || !aca || !s->cal_score || !s->cal_agree || !s->val_score ||
	    !s->val_agree) {
		tr_fail(e, "out of memory");
		goto out;
	}
	/* stage 2 keeps stage 1's hyperparameters: the rejected rows are too few to select on twice */
	struct tr_grid one = {.n_hp = f->grid.n_hp};
	for (int k = 0; k < one.n_hp; k++)
		one.n_vals[k] = 1, one.vals[k][0] = f->s1->hp[k];
	if (tr_fit_train(f, &one, rtr, s->rtr, rva, s->rva, &s->s, e) || tr_fit_predict(f, s->s, rva, s->rva, pva, e) ||
	    tr_fit_predict(f, s->s, rca, s->rca, pca, e))
		goto out;
	tr_fit_agree(f, pva, rva, s->rva, ava);
	tr_fit_agree(f, pca, rca, s->rca, aca);
	if (tr_acceptor_fit(pva, ava, s->rva, f->K, f->o->seed + 2, &s->acc, e) ||
	    tr_acceptor_score(&s->acc, pva, s->rva, f->K, sva, e) ||
	    tr_acceptor_score(&s->acc, pca, s->rca, f->K, sca, e))
		goto out;
	/* the combined policy: stage 1 handles its accepted rows, stage 2 scores the rest */
	for (size_t i = 0, r = 0; i < f->nca; i++) {
		size_t j = f->ca[i];
		if (f->sc1[j] >= t1) {
			s->cal_score[i] = INFINITY, s->cal_agree[i] = f->a1[j];
		} else {
			s->cal_score[i] = sca[r], s->cal_agree[i] = aca[r];
			r++;
		}
	}
	for (size_t i = 0, r = 0; i < f->nva; i++) {
		int first = f->sc1[f->va[i]] >= t1;
		s->val_score[i] = first ? INFINITY : sva[r];
		s->val_agree[i] = first ? f->a1[f->va[i]] : ava[r];
		r += !first;
	}
	rc = 0;
out:
	tr_free(rtr), tr_free(rva), tr_free(rca), tr_free(seen);
	tr_free(pva), tr_free(pca), tr_free(sva), tr_free(sca), tr_free(ava), tr_free(aca);
	if (rc) {
		stage2_free(s);
		return -1;
	}
	*out = s;
	return 0;
}

static void cache_free(void *state)
{
	struct cache *c = state;
	for (int k = 0; c && k < c->n; k++)
		stage2_free(c->v[k]);
	tr_free(c);
}

static int rsb_prepare(struct tr_fit *f, int t, struct tr_family_view *v, struct tr_err *e)
{
	double t1 = tr_fit_stage1_threshold(f, t);
	*v = (struct tr_family_view){0};
	if (f->o->crossfit || f->o->oof) {
		snprintf(v->why, sizeof v->why, "not tried under %s calibration", tr_calibration_name(f->o));
		return 0;
	}
	if (isnan(t1)) {
		snprintf(v->why, sizeof v->why, "not tried: l2d %s no rejecting threshold here",
			 f->rule->plans ? "plans (on validation)" : "deploys");
		return 0;
	}
	void **state = tr_fit_state(f, &tr_pol_rsb);
	if (!*state && !(*state = tr_calloc(1, sizeof(struct cache))))
		return tr_fail(e, "out of memory");
	struct cache *c = *state;
	struct stage2 *s2 = NULL;
	for (int k = 0; k < c->n; k++)
		if (c->v[k]->t1 == t1)
			s2 = c->v[k];
	if (!s2) {
		if (c->n == STAGE2_CACHE)
			return tr_fail(e, "too many distinct stage-1 thresholds");
		if (build_stage2(f, t1, &s2, e))
			return -1;
		c->v[c->n++] = s2;
	}
	v->n_stages = 2;
	v->stage[0] = (struct tr_stage_ref){&f->s1, &f->acc1, s2->t1};
	v->stage[1] = (struct tr_stage_ref){&s2->s, &s2->acc, NAN};
	if (!s2->tried) {
		snprintf(v->why, sizeof v->why, "%s", s2->why);
		return 0;
	}
	v->tried = 1;
	v->score = s2->cal_score, v->agree = s2->cal_agree, v->val_score = s2->val_score, v->val_agree = s2->val_agree;
	return 0;
}

const struct tr_pol_family tr_pol_rsb = {
	.name = "rsb",
	.about = "stage 1 above l2d's threshold, a second surrogate on what it rejects",
	.accept_all = 0,
	.max_stages = 2,
	.prepare = rsb_prepare,
	.state_free = cache_free,
};
