/*
 * fit.h - the inside of one fit, for the files of policy families (fam_*.c) and fit.c. Not a public
 * header: everything else goes through gate.h's tr_fit_* functions.
 *
 * Rows are indexed by position j in the used rows (trace index use[j]). tr, va, ca list the positions
 * of the train / validation / calibration rows.
 */
#ifndef TR_FIT_H
#define TR_FIT_H

#include "gate.h"

/* The calibration rows' stage-1 view, shared by every family, rule and target. */
struct tr_calib {
	double *score, *val_score;
	int *agree, *val_agree, *strat;
	const char **group;
};

struct tr_fit {
	const struct tr_traceset *ts;
	const struct tr_fit_options *o;
	const struct tr_family *fam;
	struct tr_grid grid;
	int K;
	size_t n, *use;
	size_t *tr, *va, *ca, ntr, nva, nca;
	int *fold; /* crossfit, oof: fold of each used row, -1 for oof's calibration rows (NULL otherwise) */
	size_t ca_dropped; /* oof: calibration rows not tested (not the first of their group) */
	int *y;	   /* teacher label per used row */
	struct tr_feats F;
	int F_borrowed; /* F.dense is the caller's o->emb_scratch (not freed with the fit) */
	struct tr_featurizer *fz;
	struct tr_surrogate *s1;
	struct tr_ood *ood; /* o->ood under crossfit and oof: fitted beside the fold models (tr_fit_ood takes it) */
	struct tr_acceptor acc1;
	double *p1, *sc1; /* stage 1's probabilities and acceptor scores per used row */
	int *a1;	  /* stage 1 agrees with the teacher */
	struct tr_calib c;
	struct tr_buf log;
	/* under the last rule run: n_targets × families results, and each family's kept state */
	const struct tr_rule *rule;
	struct tr_fam_result *res;
	int n_fam;
	void *state[TR_REGISTRY_MAX];
};

/* Writable result of family `fam` at target t (families read earlier ones: rsb reads l2d's). */
struct tr_fam_result *tr_fit_res(struct tr_fit *f, int t, int fam);
/* Trains a surrogate on rows tr (positions), selecting among the grid's points on rows va. */
int tr_fit_train(struct tr_fit *f, const struct tr_grid *grid, const size_t *tr, size_t ntr, const size_t *va,
		 size_t nva, struct tr_surrogate **out, struct tr_err *e);
/* Probabilities of `s` for rows pos[0..m) into out (m × K). */
int tr_fit_predict(const struct tr_fit *f, const struct tr_surrogate *s, const size_t *pos, size_t m, double *out,
		   struct tr_err *e);
/* agree[i] = the most probable label of proba row i equals the teacher's label of row pos[i]. */
void tr_fit_agree(const struct tr_fit *f, const double *proba, const size_t *pos, size_t m, int *agree);

/*
 * rsb's stage-1 threshold at target t: l2d's deployed threshold, or under a rule that plans (ltt-plan)
 * the threshold l2d's validation plan predicts; NAN when there is none (rsb is not tried).
 */
double tr_fit_stage1_threshold(struct tr_fit *f, int t);

/* The view of stage 1 alone (global, l2d): its calibration scores, one stage with the gate's threshold. */
void tr_fit_stage1_view(struct tr_fit *f, struct tr_family_view *v);

#endif
