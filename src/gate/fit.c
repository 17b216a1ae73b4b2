/*
 * fit.c - one fit, step by step: the split, the features, stage 1 (surrogate and acceptor), then every
 * policy family of the table under a gate rule at every target. tr_policy_fit (policy.c) deploys from
 * it; experiment cells (src/exp/cell.c) evaluate it on test traffic.
 *
 * Splits: the traces (after the optional cap) are split per teacher label into train / validation /
 * calibration, 60/20/20, keeping group keys on one side. The surrogate learns on train and picks its
 * hyperparameter on validation; the acceptor learns on validation; only the gate looks at calibration.
 */
#include "fit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct tr_trace *row(const struct tr_fit *f, size_t j)
{
	return &f->ts->part[TR_PART_TRACES].v[f->use[j]];
}

void tr_fit_agree(const struct tr_fit *f, const double *proba, const size_t *pos, size_t m, int *agree)
{
	for (size_t i = 0; i < m; i++) {
		int pred;
		tr_argmax_rows(proba + i * (size_t)f->K, 1, f->K, &pred);
		agree[i] = pred == f->y[pos[i]];
	}
}

int tr_fit_predict(const struct tr_fit *f, const struct tr_surrogate *s, const size_t *pos, size_t m, double *out,
		   struct tr_err *e)
{
	struct tr_feats X;
	if (tr_feats_view(&f->F, pos, m, &X))
		return tr_fail(e, "out of memory");
	int rc = tr_surrogate_predict(s, &X, out, e);
	tr_feats_view_free(&X);
	return rc;
}

/* Features and labels of rows pos[0..m): a view of the fit's features (free with tr_feats_view_free). */
static int rows_view(const struct tr_fit *f, const size_t *pos, size_t m, struct tr_feats *X, int **y)
{
	if (!(*y = tr_malloc((m ? m : 1) * sizeof **y)))
		return -1;
	if (tr_feats_view(&f->F, pos, m, X)) {
		tr_free(*y);
		return -1;
	}
	for (size_t i = 0; i < m; i++)
		(*y)[i] = f->y[pos[i]];
	return 0;
}

int tr_fit_train(struct tr_fit *f, const struct tr_grid *grid, const size_t *tr, size_t ntr, const size_t *va,
		 size_t nva, struct tr_surrogate **out, struct tr_err *e)
{
	struct tr_feats Xt, Xv;
	int *yt, *yv;
	if (rows_view(f, tr, ntr, &Xt, &yt))
		return tr_fail(e, "out of memory");
	if (rows_view(f, va, nva, &Xv, &yv)) {
		tr_feats_view_free(&Xt);
		tr_free(yt);
		return tr_fail(e, "out of memory");
	}
	int rc = tr_surrogate_fit(f->fam, grid, &Xt, yt, &Xv, yv, f->K, f->o->seed, f->o->threads, out, &f->log, e);
	tr_feats_view_free(&Xt), tr_feats_view_free(&Xv);
	tr_free(yt), tr_free(yv);
	return rc;
}

static int split_rows(struct tr_fit *f, struct tr_err *e)
{
	const struct tr_rows *r = &f->ts->part[TR_PART_TRACES];
	size_t N = r->n;
	int *part = tr_malloc(N * sizeof *part), rc = -1;
	f->use = tr_malloc(N * sizeof *f->use);
	if (!part || !f->use) {
		tr_fail(e, "out of memory");
		goto out;
	}
	f->n = 0;
	if (f->o->cap && N > f->o->cap) {
		double frac[2] = {(double)f->o->cap / (double)N, 1 - (double)f->o->cap / (double)N};
		if (tr_split_traces(r->v, NULL, N, frac, 2, f->o->seed ^ 0x9e3779b97f4a7c15ull, 0, part, e))
			goto out;
		for (size_t i = 0; i < N; i++)
			if (part[i] == 0)
				f->use[f->n++] = i;
	} else {
		for (size_t i = 0; i < N; i++)
			f->use[f->n++] = i;
	}
	static const double frac3[3] = {0.6, 0.2, 0.2};
	if (tr_split_traces(r->v, f->use, f->n, frac3, 3, f->o->seed, 1, part, e))
		goto out;
	f->tr = tr_malloc(f->n * sizeof *f->tr);
	f->va = tr_malloc(f->n * sizeof *f->va);
	f->ca = tr_malloc(f->n * sizeof *f->ca);
	f->y = tr_malloc(f->n * sizeof *f->y);
	if (!f->tr || !f->va || !f->ca || !f->y) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < f->n; j++) {
		f->y[j] = r->v[f->use[j]].teacher;
		if (part[j] == 0)
			f->tr[f->ntr++] = j;
		else if (part[j] == 1)
			f->va[f->nva++] = j;
		else
			f->ca[f->nca++] = j;
	}
	rc = 0;
out:
	tr_free(part);
	return rc;
}

static int featurize(struct tr_fit *f, struct tr_err *e)
{
	const struct tr_rows *r = &f->ts->part[TR_PART_TRACES];
	if (f->o->dense) {
		if (f->o->emb_rows != r->n)
			return tr_fail(e, "embeddings: %zu rows, but %s has %zu traces", f->o->emb_rows, f->ts->name, r->n);
		return tr_feat_fit_dense(f->o->emb_dim, &f->fz, e) ||
		       tr_feat_transform_dense(f->fz, f->o->emb, f->o->emb_rows, f->o->emb_dim, f->use, f->n, &f->F, e);
	}
	size_t *trace_idx = tr_malloc((f->ntr ? f->ntr : 1) * sizeof *trace_idx);
	if (!trace_idx)
		return tr_fail(e, "out of memory");
	for (size_t i = 0; i < f->ntr; i++)
		trace_idx[i] = f->use[f->tr[i]];
	struct tr_tfidf_params p = TR_TFIDF_DEFAULTS;
	int rc = tr_feat_fit_tfidf(r->v, trace_idx, f->ntr, &p, &f->fz, e) ||
		 tr_feat_transform_text(f->fz, r->v, f->use, f->n, &f->F, e);
	tr_free(trace_idx);
	return rc;
}

/* Stage 1 on every used row: probabilities, agreement, acceptor scores. */
static int stage1(struct tr_fit *f, struct tr_err *e)
{
	size_t *all = tr_malloc(f->n * sizeof *all);
	double *pv = tr_malloc(f->nva * (size_t)f->K * sizeof *pv + 1);
	int *av = tr_malloc(f->nva * sizeof *av + 1);
	f->p1 = tr_malloc(f->n * (size_t)f->K * sizeof *f->p1);
	f->sc1 = tr_malloc(f->n * sizeof *f->sc1);
	f->a1 = tr_malloc(f->n * sizeof *f->a1);
	int rc = -1;
	if (!all || !pv || !av || !f->p1 || !f->sc1 || !f->a1) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < f->n; j++)
		all[j] = j;
	if (tr_fit_train(f, &f->grid, f->tr, f->ntr, f->va, f->nva, &f->s1, e) ||
	    tr_fit_predict(f, f->s1, all, f->n, f->p1, e))
		goto out;
	tr_fit_agree(f, f->p1, all, f->n, f->a1);
	for (size_t i = 0; i < f->nva; i++) {
		memcpy(pv + i * (size_t)f->K, f->p1 + f->va[i] * (size_t)f->K, (size_t)f->K * sizeof *pv);
		av[i] = f->a1[f->va[i]];
	}
	if (tr_acceptor_fit(pv, av, f->nva, f->K, f->o->seed, &f->acc1, e) ||
	    tr_acceptor_score(&f->acc1, f->p1, f->n, f->K, f->sc1, e))
		goto out;
	rc = 0;
out:
	tr_free(all), tr_free(pv), tr_free(av);
	return rc;
}

/* The calibration rows' stage-1 view, shared by every rule and target. */
static int calib_build(const struct tr_fit *f, struct tr_calib *c, struct tr_err *e)
{
	c->score = tr_malloc(f->nca * sizeof *c->score);
	c->val_score = tr_malloc((f->nva ? f->nva : 1) * sizeof *c->val_score);
	c->agree = tr_malloc(f->nca * sizeof *c->agree);
	c->strat = tr_malloc(f->nca * sizeof *c->strat);
	c->group = tr_malloc(f->nca * sizeof *c->group);
	if (!c->score || !c->val_score || !c->agree || !c->strat || !c->group)
		return tr_fail(e, "out of memory");
	for (size_t i = 0; i < f->nca; i++) {
		c->score[i] = f->sc1[f->ca[i]];
		c->agree[i] = f->a1[f->ca[i]];
		c->strat[i] = f->y[f->ca[i]];
		c->group[i] = tr_trace_group(row(f, f->ca[i]));
	}
	for (size_t i = 0; i < f->nva; i++)
		c->val_score[i] = f->sc1[f->va[i]];
	return 0;
}

static void calib_free(struct tr_calib *c)
{
	tr_free(c->score), tr_free(c->val_score), tr_free(c->agree), tr_free(c->strat), tr_free(c->group);
	memset(c, 0, sizeof *c);
}

static void results_free(struct tr_fit *f)
{
	for (int i = 0; f->res && i < f->o->n_targets * f->n_fam; i++)
		tr_gate_result_free(&f->res[i].r);
	tr_free(f->res);
	f->res = NULL;
}

void tr_fit_free(struct tr_fit *f)
{
	if (!f)
		return;
	results_free(f);
	for (int i = 0; i < tr_pol_family_count(); i++)
		if (f->state[i] && tr_pol_family_at(i)->state_free)
			tr_pol_family_at(i)->state_free(f->state[i]);
	tr_free(f->use), tr_free(f->tr), tr_free(f->va), tr_free(f->ca), tr_free(f->y);
	tr_feats_free(&f->F);
	tr_featurizer_free(f->fz);
	tr_surrogate_free(f->s1);
	tr_acceptor_free(&f->acc1);
	tr_free(f->p1), tr_free(f->sc1), tr_free(f->a1);
	calib_free(&f->c);
	tr_buf_free(&f->log);
	tr_free(f);
}

/*
 * Checked before any training: the rows left after --cap and the split can calibrate something. The
 * message says which step emptied them: the cap (each label's share of a small cap rounds to no
 * group), or labels too small to reach calibration (one group each goes to training).
 */
static int check_split(const struct tr_fit *f, const char *spec, struct tr_err *e)
{
	size_t N = f->ts->part[TR_PART_TRACES].n;
	int capped = f->n < N; /* the cap dropped rows (with many tiny labels it may keep them all) */
	if (f->n == 0)
		return tr_fail(e, "%s: --cap %zu keeps no traces (of %zu over %d labels, each label's share rounds to "
			       "nothing): raise --cap, or --cap 0 for no cap", spec, f->o->cap, N, f->K);
	if (f->nca > 0)
		return 0;
	if (capped)
		return tr_fail(e, "%s: no calibration rows after --cap %zu (kept %zu of %zu traces, every kept label "
			       "has fewer than 2): raise --cap, or --cap 0 for no cap", spec, f->o->cap, f->n, N);
	return tr_fail(e, "%s: no calibration rows after the split (%zu traces, every label has fewer than 2)", spec,
		       f->n);
}

int tr_fit_new(const struct tr_traceset *ts, const char *spec, const struct tr_fit_options *o, struct tr_fit **out,
	       struct tr_err *e)
{
	*out = NULL;
	if (o->n_targets < 1 || o->n_targets > TR_MAX_TARGETS)
		return tr_fail(e, "%d targets (1 to %d)", o->n_targets, TR_MAX_TARGETS);
	const struct tr_family *fam = tr_family_find(o->backend);
	if (!fam)
		return tr_fail(e, "unknown backend \"%s\"", o->backend);
	if (ts->part[TR_PART_TRACES].n == 0)
		return tr_fail(e, "%s: no traces", spec);
	if (ts->labels.n < 2)
		return tr_fail(e, "%s: one label only (%s): nothing to learn, every input has the same answer", spec,
			       ts->labels.n ? ts->labels.names[0] : "none");
	struct tr_fit *f = tr_calloc(1, sizeof *f);
	if (!f)
		return tr_fail(e, "out of memory");
	*f = (struct tr_fit){.ts = ts, .o = o, .fam = fam, .K = ts->labels.n, .n_fam = tr_pol_family_count()};
	if (tr_grid_parse(fam, o->grid, &f->grid, e) || split_rows(f, e))
		goto fail;
	if (check_split(f, spec, e))
		goto fail;
	if (featurize(f, e) || stage1(f, e) || calib_build(f, &f->c, e))
		goto fail;
	*out = f;
	return 0;
fail:
	tr_fit_free(f);
	return -1;
}

struct tr_fam_result *tr_fit_res(struct tr_fit *f, int t, int fam)
{
	return &f->res[t * f->n_fam + fam];
}

const struct tr_fam_result *tr_fit_result(const struct tr_fit *f, int t, int fam)
{
	return &f->res[t * f->n_fam + fam];
}

void **tr_fit_state(struct tr_fit *f, const struct tr_pol_family *fam)
{
	return &f->state[tr_pol_family_index(fam)];
}

/* One family's gate at target t from its view. */
static int run_family(struct tr_fit *f, int t, int fam, struct tr_err *e)
{
	const struct tr_pol_family *pf = tr_pol_family_at(fam);
	struct tr_fam_result *x = tr_fit_res(f, t, fam);
	if (pf->prepare(f, t, &x->v, e))
		return -1;
	if (!x->v.tried)
		return 0;
	struct tr_gate_input in = {.n = f->nca,
				   .score = x->v.score,
				   .agree = x->v.agree,
				   .strat = f->c.strat,
				   .group = f->c.group,
				   .n_val = f->nva,
				   .val_score = x->v.val_score,
				   .alpha = f->o->targets[t],
				   .delta = f->o->delta / f->n_fam,
				   .seed = f->o->seed + 1};
	if (tr_gate_run(f->rule, &in, pf->accept_all, &x->r, e))
		return -1;
	x->tried = 1;
	x->deployable = x->r.deployed && x->r.coverage >= TR_MIN_COVERAGE;
	if (x->deployable)
		snprintf(x->status, sizeof x->status, "deployable");
	else if (x->r.deployed)
		snprintf(x->status, sizeof x->status, "below %.0f%% coverage (%.4f)", 100 * TR_MIN_COVERAGE,
			 x->r.coverage);
	else
		snprintf(x->status, sizeof x->status, "not deployable");
	return 0;
}

int tr_fit_gate(struct tr_fit *f, const struct tr_rule *rule, struct tr_err *e)
{
	results_free(f);
	f->rule = rule;
	if (!(f->res = tr_calloc((size_t)(f->o->n_targets * f->n_fam), sizeof *f->res)))
		return tr_fail(e, "out of memory");
	for (int i = 0; i < f->o->n_targets * f->n_fam; i++)
		f->res[i].r.threshold = NAN;
	for (int t = 0; t < f->o->n_targets; t++)
		for (int fam = 0; fam < f->n_fam; fam++) /* table order: a family may read earlier ones */
			if (run_family(f, t, fam, e))
				return -1;
	return 0;
}

int tr_fit_best(const struct tr_fit *f, int t)
{
	int best = -1;
	for (int fam = 0; fam < f->n_fam; fam++) {
		const struct tr_fam_result *x = tr_fit_result(f, t, fam), *b = best < 0 ? NULL : tr_fit_result(f, t, best);
		if (!x->deployable)
			continue;
		if (!b || x->r.coverage > b->r.coverage ||
		    (x->r.coverage == b->r.coverage && x->r.agreement > b->r.agreement))
			best = fam;
	}
	return best;
}

double tr_fit_stage_threshold(const struct tr_fam_result *x, int k)
{
	if (k == x->v.n_stages - 1 || isnan(x->v.stage[k].threshold))
		return x->r.threshold;
	return x->v.stage[k].threshold;
}

void tr_fit_info(const struct tr_fit *f, struct tr_fit_info *out)
{
	*out = (struct tr_fit_info){f->n, f->ntr, f->nva, f->nca, f->fam, f->s1->hp, f->s1->val_f1, f->fz};
}

int tr_fit_ood(const struct tr_fit *f, struct tr_ood **out, struct tr_err *e)
{
	struct tr_feats Xt;
	int *yt;
	if (rows_view(f, f->tr, f->ntr, &Xt, &yt))
		return tr_fail(e, "out of memory");
	int rc = tr_ood_fit(&Xt, yt, f->K, out, e);
	tr_feats_view_free(&Xt);
	tr_free(yt);
	return rc;
}

void tr_fit_stage1_view(struct tr_fit *f, struct tr_family_view *v)
{
	*v = (struct tr_family_view){.tried = 1, .score = f->c.score, .val_score = f->c.val_score, .agree = f->c.agree,
				     .n_stages = 1, .stage = {{&f->s1, &f->acc1, NAN}}};
}
