/*
 * gate.h - the parity gate: acceptor, threshold rules, policy families, fitted policies.
 *
 * A policy answers an input with the surrogate when its acceptor score clears a threshold, and defers
 * to the teacher otherwise. The threshold is picked on calibration rows so that agreement with the
 * teacher on the handled rows reaches the target α; when no threshold does, nothing deploys.
 */
#ifndef TR_GATE_H
#define TR_GATE_H

#include "../surrogate/surrogate.h"

/* ---- threshold rules: the table (rules.c) and one file per rule (rule_*.c) ---- */

struct tr_gate_input;
struct tr_gate_result;

/*
 * A gate rule is a row of the rule table. Everything that lists rules (usage texts, spec and cell
 * validation, PAPER.md tables, the audit, the plots' legends through the tables) reads the table, so a
 * new rule is one file defining a `const struct tr_rule` plus one line in the table in rules.c (or a
 * call to tr_rule_register).
 */
struct tr_rule {
	const char *name;      /* as in --gate, specs, cells and tables */
	const char *stat;      /* JSON key of the deciding statistic ("agreement", "lower_bound", "p_value") */
	const char *guarantee; /* the proven statement with its assumption; NULL: only measured */
	/* Picks a threshold (only accept-all with accept_all); fills out (reason, steps). */
	int (*run)(const struct tr_gate_input *in, int accept_all, struct tr_gate_result *out, struct tr_err *e);
	/* Whether one threshold accepting n calibration rows, k of them agreeing, passes at alpha (delta:
	 * the family's level). The audit's nearest miss (tr_gate_shortfall) is derived from it. */
	int (*passes)(size_t n, size_t k, double alpha, double delta);
	/* Optional: one more number the audit records under `param` (NULL: none), and the audit's prose
	 * about the rule (", one-sided Clopper-Pearson at 90% confidence"). */
	const char *param;
	double (*param_value)(size_t n_cal, double alpha, double delta);
	void (*describe)(struct tr_buf *b, double delta, double delta_per_family, double param);
	/* Optional: the rule plans on validation rows (tr_ltt_plan) and the fit tests only the family whose
	 * plan predicts the most coverage, at the full δ (rule_ltt_plan.c). */
	int plans;
};

extern const struct tr_rule tr_rule_point, tr_rule_cp_holdout, tr_rule_ltt, tr_rule_ltt_plan;
int tr_rule_count(void);
const struct tr_rule *tr_rule_at(int i);
const struct tr_rule *tr_rule_find(const char *name); /* NULL when unknown */
/* Adds a rule to the table (tests, extensions); -1 when the name is taken or the table is full. */
int tr_rule_register(const struct tr_rule *r);
/* "point, cp-holdout, ltt": the table's names joined by sep (static storage, rebuilt per call). */
const char *tr_rule_list(const char *sep);

/* Calibration data for one family: a row is handled when score >= threshold. */
struct tr_gate_input {
	size_t n;
	const double *score; /* acceptor score per calibration row (+INFINITY: always handled) */
	const int *agree;    /* 1 when the policy's answer equals the teacher's */
	const int *strat;    /* teacher label (cp-holdout's 70/30 split) */
	const char *const *group;
	size_t n_val;
	const double *val_score; /* validation scores: ltt's candidate thresholds, fixed before calibration */
	const int *val_agree;	 /* validation agreement flags: ltt-plan's plan (NULL for the other rules) */
	double alpha;
	double delta; /* ltt: level of this family's test (δ divided among the competing families) */
	uint64_t seed;
};

/* One threshold examined: enough to re-derive the decision by hand. */
struct tr_gate_step {
	double level;	  /* ltt: target coverage of the candidate (from validation); else NAN */
	double threshold; /* -INFINITY = accept all */
	size_t n, k;	  /* calibration rows accepted, and agreeing with the teacher */
	double stat;	  /* point: agreement; cp-holdout: Clopper-Pearson lower bound; ltt: p-value */
	int part;	  /* cp-holdout: 0 = the 70% part, 1 = the 30% check; else 0 */
	int pass;
	double budget;	  /* ltt-plan: the level this step was tested at (fallback procedure); else 0 */
};

struct tr_gate_result {
	int deployed;
	double threshold;
	size_t n, k;	  /* at the deployed threshold, all calibration rows */
	double coverage;  /* n / calibration rows */
	double agreement; /* k / n */
	double stat;	  /* the deciding statistic (bound or p-value) */
	char reason[320];
	struct tr_gate_step *steps;
	size_t n_steps, cap_steps;
};
void tr_gate_result_free(struct tr_gate_result *r);

/*
 * Picks a threshold by `rule` after checking α (and δ) lie in (0, 1). With accept_all, only the
 * accept-everything policy is tested (the global family). The result owns its steps.
 */
int tr_gate_run(const struct tr_rule *rule, const struct tr_gate_input *in, int accept_all,
		struct tr_gate_result *out, struct tr_err *e);

/* One-sided Clopper-Pearson lower bound at confidence conf (0 when k = 0). */
double tr_cp_lower(size_t k, size_t n, double conf);
/* P(Binomial(n, p) >= k). */
double tr_binom_tail(size_t k, size_t n, double p);
/*
 * How many more of the n accepted rows would have to agree (beyond k) for this threshold to pass the
 * rule at α (δ for ltt); -1 when even n of n would not pass. The audit's "nearest miss".
 */
long tr_gate_shortfall(const struct tr_rule *rule, size_t n, size_t k, double alpha, double delta);
/* ltt's first candidate coverage level: smallest c in 1..99% with c * n_cal >= 2 ln δ / ln α. */
double tr_ltt_start_level(size_t n_cal, double alpha, double delta);

/*
 * ltt-plan (rule_ltt_plan.c): the test plan, made from validation rows only. Levels are coverage
 * percents 1..100 (100 = accept all); -1 when absent.
 */
#define TR_PLAN_BACKUP 0.0 /* share of δ on a stricter backup start of the fallback sequence (0: none) */
#define TR_PLAN_SLACK 0.05 /* the start: the strictest within this share of the best predicted coverage */
struct tr_plan {
	int start;		    /* main start */
	int backup;		    /* stricter backup start, or -1 */
	double expected;	    /* predicted coverage of the plan (validation estimate) */
	int predicted_level;	    /* loosest level the walk is predicted to reach with even odds */
	double predicted_threshold; /* its threshold */
};
int tr_ltt_plan(const double *val_score, const int *val_agree, size_t n_val, size_t n_cal, double alpha,
		double delta, int accept_all, struct tr_plan *p, struct tr_err *e);
/*
 * Plans every family (fams[f].n = its calibration rows, delta = the full δ; a family whose val_agree is
 * NULL is skipped) and returns the index of the one with the highest predicted coverage (ties: the
 * first), -1 when no plan predicts anything, -2 on error. Only the chosen family may then be tested:
 * that is what lets it take the full δ.
 */
int tr_ltt_plan_choose(const struct tr_gate_input *fams, const int *accept_all, int n_fams, struct tr_plan *plans,
		       struct tr_err *e);

#define TR_CP_CONF 0.90	     /* cp-holdout's one-sided confidence */
#define TR_GATE_MIN_ACCEPT 10 /* point and cp-holdout: thresholds accepting fewer rows are skipped */

/* Building blocks for rule files (rules.c). */
/* Accepted and agreeing counts at threshold t over rows idx[0..m) (rows 0..m-1 when idx is NULL). */
void tr_gate_count(const struct tr_gate_input *in, const size_t *idx, size_t m, double t, size_t *n, size_t *k);
/* Records the deployed threshold t with its statistic (counts over all calibration rows). */
void tr_gate_deploy(struct tr_gate_result *r, const struct tr_gate_input *in, double t, double stat);
int tr_gate_add_step(struct tr_gate_result *r, struct tr_gate_step s);
/* Distinct finite scores of rows idx (all rows when NULL), descending, with -INFINITY appended. */
double *tr_gate_thresholds(const struct tr_gate_input *in, const size_t *idx, size_t m, size_t *nt);
/*
 * Walks every distinct calibration score, strictest first (only accept-all with accept_all), recording
 * each as a step, and deploys the loosest threshold that passes `rule` (rule->passes with in->delta).
 * Returns 1 if one deployed, 0 if none, -1 on error.
 */
int tr_gate_loosest_passing(const struct tr_rule *rule, const struct tr_gate_input *in, int accept_all,
			    double (*stat)(size_t k, size_t n), struct tr_gate_result *r, struct tr_err *e);

/* ---- acceptor (acceptor.c) ---- */

#define TR_ACC_NFEAT 4
/* top-1, top-2, margin, entropy / ln K of one probability row. */
void tr_acceptor_features(const double *proba, int K, double f[TR_ACC_NFEAT]);

/* Logistic regression on standardised features predicting "surrogate agrees with the teacher". */
struct tr_acceptor {
	double mean[TR_ACC_NFEAT], sd[TR_ACC_NFEAT];
	struct tr_surrogate *lr; /* NULL: the score is top-1 (validation had a single outcome) */
};
/* Trains on n probability rows with their agreement flags. */
int tr_acceptor_fit(const double *proba, const int *agree, size_t n, int K, uint64_t seed,
		    struct tr_acceptor *out, struct tr_err *e);
/* Scores of n probability rows (probability of agreement). */
int tr_acceptor_score(const struct tr_acceptor *a, const double *proba, size_t n, int K, double *score,
		      struct tr_err *e);
void tr_acceptor_free(struct tr_acceptor *a);

/* ---- out-of-distribution guard (ood.c) ---- */

/*
 * For each input: mean cosine distance to its k nearest training rows. An input whose distance is above
 * the 99.5th percentile of the training rows' own (leave-one-out) distances - per predicted label when
 * that label has >= 10 training rows, else over all rows - is flagged and deferred.
 */
struct tr_ood;
#define TR_OOD_K 5
#define TR_OOD_PCT 0.995
int tr_ood_fit(const struct tr_feats *X, const int *y, int K, struct tr_ood **out, struct tr_err *e);
/* tr_ood_fit, the guard taking X's dense rows (X->dense is NULL after, whatever the outcome) instead of a copy. */
int tr_ood_fit_take(struct tr_feats *X, const int *y, int K, struct tr_ood **out, struct tr_err *e);
/* dist[i]: row i's mean cosine distance to its k nearest training rows, for the rows with need[i] != 0
 * (need NULL: every row); NAN for the others. */
int tr_ood_distances(const struct tr_ood *o, const struct tr_feats *X, const int *need, double *dist,
		     struct tr_err *e);
/*
 * For routing, the same verdicts for less work: dist[i] for the rows with need[i] != 0 (NAN for the
 * others) is either the distance tr_ood_distances gives or, when some training rows found on the way
 * (a few sharing the row's rarest features, or the exact search's first) already put it within the
 * limit of label[i], an upper bound of that distance that is within the limit. So tr_ood_far(o,
 * label[i], dist[i]) is exactly what it is with tr_ood_distances.
 */
int tr_ood_check(const struct tr_ood *o, const struct tr_feats *X, const int *need, const int *label, double *dist,
		 struct tr_err *e);
/* Whether distance d is beyond the guard's limit for label `label` (-1: the global limit). */
int tr_ood_far(const struct tr_ood *o, int label, double d);
int tr_ood_save(const struct tr_ood *o, struct tr_buf *out);
int tr_ood_load(const char *what, const char *data, size_t len, struct tr_ood **out, struct tr_err *e);
void tr_ood_free(struct tr_ood *o);

/* ---- policies: families (families.c, fam_*.c), fit (fit.c, policy.c), files (policy_io.c), routing (route.c) ---- */

/* 2: manifest.json lists every file with its SHA-256; 3: an infinite threshold is null with a companion
 * "<key>_inf" (tr_threshold_set), never the string "+inf" */
#define TR_POLICY_FORMAT 3
#define TR_MIN_COVERAGE 0.05 /* a family covering less does not deploy */
#define TR_MAX_STAGES 2	     /* surrogate + acceptor stages a deployed policy chains */
#define TR_MAX_TARGETS 16

struct json_t; /* jansson's (opaque here): the JSON files of a fitted policy */

/*
 * A threshold in the policy's JSON files: o[key] is its number when finite; JSON has no infinity, so
 * -inf (accepts every row) and +inf (accepts none: the stage is off, rsb answers with stage 1 alone)
 * are null with a companion o["<key>_inf"] = "-inf" or "+inf". tr_threshold_get reads it back: the
 * number, ±inf from the companion (null without one is -inf), NAN when key is absent or not a number.
 */
int tr_threshold_set(struct json_t *o, const char *key, double t);
double tr_threshold_get(const struct json_t *o, const char *key);
struct tr_fit; /* one fit in progress (fit.c; family files see its fields through fit.h) */

/* Stage k of a family's policy at one target: borrowed from the fit that built it. */
struct tr_stage_ref {
	struct tr_surrogate **s; /* the slot owning the surrogate (a deployment takes it) */
	struct tr_acceptor *acc;
	double threshold; /* NAN: the gate's threshold (always so for the last stage) */
};

/* What a family puts before the gate at one target, or why it is not tried. */
struct tr_family_view {
	int tried;
	char why[160];
	const double *score, *val_score; /* per calibration / validation row (+INFINITY: an earlier stage handles it) */
	const int *agree;		 /* per calibration row */
	const int *val_agree;		 /* per validation row (ltt-plan's plan) */
	int n_stages;
	struct tr_stage_ref stage[TR_MAX_STAGES];
};

/*
 * A policy family is a row of the family table: how it builds the calibration view its gate sees at
 * target index t (reading earlier families' results at that target when it builds on them, as rsb does
 * on l2d's) and the stages it deploys. A new family is one file defining a `const struct
 * tr_pol_family` plus one line in the table in families.c (or a call to tr_pol_family_register).
 * Families compete: the deployable one with the highest calibration coverage (then agreement, then
 * the earlier row) is deployed; ltt tests each at δ divided by the number of families.
 */
struct tr_pol_family {
	const char *name;
	const char *about;  /* one line for usage texts */
	int accept_all;	    /* its gate tests only the accept-everything threshold */
	int max_stages;	    /* stages its deployed policy has (files stage1..N) */
	int (*prepare)(struct tr_fit *f, int t, struct tr_family_view *v, struct tr_err *e);
	void (*state_free)(void *state); /* frees what prepare kept in tr_fit_state (NULL: nothing) */
};

extern const struct tr_pol_family tr_pol_global, tr_pol_l2d, tr_pol_rsb;
int tr_pol_family_count(void);
const struct tr_pol_family *tr_pol_family_at(int i);
int tr_pol_family_index(const struct tr_pol_family *f); /* -1 when not in the table */
const struct tr_pol_family *tr_pol_family_find(const char *name);
int tr_pol_family_register(const struct tr_pol_family *f);
/* "global, l2d, rsb" (static storage, rebuilt per call). */
const char *tr_pol_family_list(const char *sep);
/* The family's name, or "refused" for NULL. */
const char *tr_pol_family_name(const struct tr_pol_family *f);

struct tr_fit_options {
	const char *backend, *grid;
	int dense;		/* features from embeddings */
	const double *emb;	/* embeddings, row i = trace i of the traces part */
	double *emb_scratch;	/* NULL, or emb's buffer made writable: the fit builds its features in it (no
				 * second matrix of the traces' size), so it must outlive the fit and is overwritten */
	size_t emb_rows;
	int emb_dim;
	const struct tr_rule *rule;
	double target;
	double targets[TR_MAX_TARGETS];
	int n_targets;
	double delta;
	uint64_t seed;
	size_t cap;	/* at most this many traces are used (0: all) */
	int ood;	/* build the OOD guard */
	int threads;	/* grid points trained at once (0: the online cores) */
	int split[3];	/* train / validation / calibration percents; all 0: TR_DEFAULT_SPLIT */
	int crossfit;	/* calibration by cross-fitting (no formal guarantee; see fit.c) */
	int folds;	/* crossfit, oof: K (0: TR_CROSSFIT_FOLDS) */
	int oof;	/* calibration on a held-out part, everything else out-of-fold on the rest (fit.c) */
	int oof_cal;	/* oof: calibration percent (0: TR_OOF_CAL) */
	struct tr_progress *progress; /* phases reported here (NULL: none) */
};
#define TR_DEFAULT_TARGETS {0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99}
#define TR_DEFAULT_SPLIT {60, 20, 20} /* chosen by experiments/splits.spec (PAPER.md) */
#define TR_CROSSFIT_FOLDS 5
#define TR_OOF_CAL 30 /* oof's calibration percent (fit part 70%) */
/* Parses "60/20/20" (three positive percents summing to 100); -1 if malformed. */
int tr_split_parse(const char *text, int split[3]);
/* Parses "70/30" (fit / calibration percents, both positive, summing to 100) into *cal; -1 if malformed. */
int tr_oof_split_parse(const char *text, int *cal);
/* Why crossfit has no formal guarantee: for --help, manifest.json and report.md. */
extern const char tr_crossfit_caveat[];
/* The proven statement of ltt and ltt-plan under oof calibration (manifest, report.md, audit). */
extern const char tr_oof_guarantee[];
/* "holdout", "crossfit" or "oof": the calibration mode of o, as manifests, cells and report.md name it. */
const char *tr_calibration_name(const struct tr_fit_options *o);
/*
 * What rule promises under o's calibration: rule->guarantee (holdout), tr_oof_guarantee (oof, rules with a
 * guarantee) or tr_crossfit_caveat (crossfit: why there is none); NULL for rules that promise nothing.
 */
const char *tr_fit_guarantee(const struct tr_fit_options *o, const struct tr_rule *rule);

/* ---- one fit, step by step (fit.c): what tr_policy_fit and the experiment cells share ---- */

/* Splits the traces part of ts (train / validation / calibration), featurises, trains stage 1. */
int tr_fit_new(const struct tr_traceset *ts, const char *spec, const struct tr_fit_options *o, struct tr_fit **out,
	       struct tr_err *e);
void tr_fit_free(struct tr_fit *f);
/* The level each family's test gets: δ / families, or the full δ for a rule that plans (tests one). */
double tr_rule_family_delta(const struct tr_rule *rule, double delta, int n_fam);
/* Runs every family at every target under `rule` (replacing the results of an earlier rule). */
int tr_fit_gate(struct tr_fit *f, const struct tr_rule *rule, struct tr_err *e);

/* One family's outcome at one target under the last rule run. */
struct tr_fam_result {
	int tried, deployable;
	struct tr_plan plan; /* rules that plan (ltt-plan): this family's plan */
	struct tr_gate_result r;
	char status[200];
	struct tr_family_view v;
};
const struct tr_fam_result *tr_fit_result(const struct tr_fit *f, int t, int fam);
/* The family deployed at target index t: best deployable, -1 when none. */
int tr_fit_best(const struct tr_fit *f, int t);
/* The stage thresholds of a family's result (the last from its gate). */
double tr_fit_stage_threshold(const struct tr_fam_result *x, int k);
/* Splits and stage 1's facts: counts, hyperparameters, validation macro-F1. */
struct tr_fit_info {
	size_t used, train, validation, calibration;
	size_t calibration_dropped; /* oof: calibration rows left out (not the first of their group) */
	const struct tr_family *backend;
	const double *hp;
	double val_f1;
	const struct tr_featurizer *fz;
};
void tr_fit_info(const struct tr_fit *f, struct tr_fit_info *out);
/*
 * The OOD guard on the training rows (the guard `fit` deploys). Under crossfit and oof with o->ood it was
 * built beside the fold models and is handed over (once); otherwise it is built now.
 */
int tr_fit_ood(struct tr_fit *f, struct tr_ood **out, struct tr_err *e);
/* Per-family state a family keeps between targets (rsb's second stages), freed by its state_free. */
void **tr_fit_state(struct tr_fit *f, const struct tr_pol_family *fam);

/* ---- fitted policies ---- */

struct tr_stage {
	struct tr_surrogate *s;
	struct tr_acceptor acc;
	double threshold; /* -INFINITY: accept all */
};

struct tr_policy {
	struct tr_labels labels;
	struct tr_featurizer *fz;
	const struct tr_pol_family *family; /* NULL: refused */
	double target;
	int n_stages; /* stages whose models are present (0 when refused) */
	struct tr_stage st[TR_MAX_STAGES];
	struct tr_ood *ood; /* NULL: no guard */
	int pairs;
	/* the files of a fitted policy (owned) */
	struct json_t *manifest, *frontier, *audit;
	char *report; /* report.md */
	/* the traces it was fitted on as reference trace JSONL (written as traces.jsonl.zst when set; owned;
	 * not read back by tr_policy_load: `tracer update` reads the file) */
	char *traces;
	size_t traces_len;
};

/* Fits a policy on the traces part of ts. */
int tr_policy_fit(const struct tr_traceset *ts, const char *spec, const struct tr_fit_options *o,
		  struct tr_policy **out, struct tr_err *e);
/*
 * Writes the policy directory atomically (a temporary directory renamed into place). An existing DIR is
 * replaced only when tracer wrote it; with force any other is moved aside intact (its new name in
 * aside). See tr_dir_commit.
 */
int tr_policy_write(const struct tr_policy *p, const char *dir, int force, char *aside, size_t asize,
		    struct tr_err *e);
int tr_policy_load(const char *dir, struct tr_policy **out, struct tr_err *e);
void tr_policy_free(struct tr_policy *p);

/* ---- routing and its metrics (route.c): the one decision route, eval, audit and cells share ---- */

/* What the policy does with one input. */
struct tr_decision {
	int label;   /* policy label index when handled, else -1 */
	int handled;
	double score; /* acceptor score of the deciding stage (NAN when refused) */
	int stage;    /* 1..n_stages when handled, else 0 */
	int ood;      /* 1 when the OOD guard deferred it */
	int top1;     /* stage 1's most probable label, handled or not (-1 when refused) */
};

/* One stage's view of n inputs: acceptor score and most probable label per input, and its threshold. */
struct tr_stage_scores {
	const double *score;
	const int *pred;
	double threshold;
};
/* Scores and answers of one stage (surrogate + acceptor) on rows X; score and pred hold X->n entries. */
int tr_stage_score(const struct tr_surrogate *s, const struct tr_acceptor *a, const struct tr_feats *X,
		   double *score, int *pred, struct tr_err *e);

/*
 * THE routing decision. Stage 1 answers when its score clears its threshold; each later stage answers
 * what the earlier ones left when its own score clears its threshold; then, when `ood` is given, the OOD
 * guard defers every handled input whose distance (ood_dist[i], from tr_ood_distances) is beyond the
 * guard's limit for the answered label. No stage (refused): everything is deferred.
 */
void tr_route_decide(const struct tr_stage_scores *st, int n_stages, const struct tr_ood *ood,
		     const double *ood_dist, size_t n, struct tr_decision *out);

/*
 * Routes rows idx[0..n) of `rows` (texts) or of the embedding matrix `emb` (emb_rows × emb_dim, for
 * policies fitted on embeddings; NULL otherwise): featurises, scores every stage and decides with
 * tr_route_decide. Labels are the policy's label indices.
 */
int tr_policy_route(const struct tr_policy *p, const struct tr_trace *rows, const size_t *idx, size_t n,
		    const double *emb, size_t emb_rows, int emb_dim, struct tr_decision *out, struct tr_err *e);

#define TR_NO_GOLD (-2)
/* Routing metrics against the teacher (and gold where known). */
struct tr_metrics {
	size_t n, handled, agree, ood, gold_n, gold_ok;
	double coverage;      /* handled / n (0 when n = 0) */
	double agreement;     /* agree / handled (NAN when nothing handled) */
	double e2e_agreement; /* handled answers + the teacher elsewhere, vs the teacher (0 when n = 0) */
	double gold_accuracy; /* the same answers vs gold (NAN without gold) */
	int violation;	      /* something handled and agreement below the target */
};
/*
 * THE metrics of routed decisions. teacher[i]: the teacher's label in the policy's label space (-1: a
 * label the policy never saw); gold[i] likewise, or TR_NO_GOLD (gold may be NULL: none at all).
 */
void tr_metrics_compute(const struct tr_decision *d, const int *teacher, const int *gold, size_t n, double target,
			struct tr_metrics *m);

#endif
