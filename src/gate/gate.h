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

/* ---- threshold rules (rules.c) ---- */

enum tr_gate_rule { TR_GATE_POINT, TR_GATE_CP_HOLDOUT, TR_GATE_LTT };
extern const char *const tr_gate_rule_names[3];
int tr_gate_rule_parse(const char *name);

/* Calibration data for one family: a row is handled when score >= threshold. */
struct tr_gate_input {
	size_t n;
	const double *score; /* acceptor score per calibration row (+INFINITY: always handled) */
	const int *agree;    /* 1 when the policy's answer equals the teacher's */
	const int *strat;    /* teacher label (cp-holdout's 70/30 split) */
	const char *const *group;
	size_t n_val;
	const double *val_score; /* validation scores: ltt's candidate thresholds, fixed before calibration */
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
 * Picks a threshold by `rule`. With accept_all, only the accept-everything policy is tested (the
 * global family). The result owns its steps.
 */
int tr_gate_run(enum tr_gate_rule rule, const struct tr_gate_input *in, int accept_all,
		struct tr_gate_result *out, struct tr_err *e);

/* One-sided Clopper-Pearson lower bound at confidence conf (0 when k = 0). */
double tr_cp_lower(size_t k, size_t n, double conf);
/* P(Binomial(n, p) >= k). */
double tr_binom_tail(size_t k, size_t n, double p);
/*
 * How many more of the n accepted rows would have to agree (beyond k) for this threshold to pass the
 * rule at α (δ for ltt); -1 when even n of n would not pass. The audit's "nearest miss".
 */
long tr_gate_shortfall(enum tr_gate_rule rule, size_t n, size_t k, double alpha, double delta);
/* ltt's first candidate coverage level: smallest c in 1..99% with c * n_cal >= 2 ln δ / ln α. */
double tr_ltt_start_level(size_t n_cal, double alpha, double delta);

#define TR_CP_CONF 0.90	     /* cp-holdout's one-sided confidence */
#define TR_GATE_MIN_ACCEPT 10 /* point and cp-holdout: thresholds accepting fewer rows are skipped */

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
/* flag[i] = 1 when row i is out of distribution for predicted label pred[i]. */
int tr_ood_flags(const struct tr_ood *o, const struct tr_feats *X, const int *pred, int *flag, struct tr_err *e);
int tr_ood_save(const struct tr_ood *o, struct tr_buf *out);
int tr_ood_load(const char *what, const char *data, size_t len, struct tr_ood **out, struct tr_err *e);
void tr_ood_free(struct tr_ood *o);

/* ---- policies (policy.c: fit; policy_io.c: files; route.c: routing) ---- */

enum tr_pol_kind { TR_POL_REFUSED, TR_POL_GLOBAL, TR_POL_L2D, TR_POL_RSB };
extern const char *const tr_pol_names[4];

#define TR_POLICY_FORMAT 2 /* 2: manifest.json lists every file with its SHA-256 */
#define TR_MIN_COVERAGE 0.05 /* a family covering less does not deploy */
#define TR_N_FAMILIES 3	     /* global, l2d, rsb compete: ltt tests each at δ/3 */

struct tr_fit_options {
	const char *backend, *grid;
	int dense;		/* features from embeddings */
	const double *emb;	/* embeddings, row i = trace i of the traces part */
	size_t emb_rows;
	int emb_dim;
	enum tr_gate_rule rule;
	double target;
	double targets[16];
	int n_targets;
	double delta;
	uint64_t seed;
	size_t cap;	/* at most this many traces are used (0: all) */
	int ood;	/* build the OOD guard */
};
#define TR_DEFAULT_TARGETS {0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99}

struct tr_stage {
	struct tr_surrogate *s;
	struct tr_acceptor acc;
	double threshold; /* -INFINITY: accept all */
};

struct tr_policy {
	struct tr_labels labels;
	struct tr_featurizer *fz;
	enum tr_pol_kind kind;
	double target;
	int n_stages; /* stages whose models are present (0 when refused) */
	struct tr_stage st[2];
	struct tr_ood *ood; /* NULL: no guard */
	int pairs;
	/* the files of a fitted policy, as JSON (owned) */
	void *manifest, *frontier, *audit; /* json_t * */
	char *report;			   /* report.md */
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

/*
 * One experiment cell: fits on the traces part of ts (tf-idf features), then, for every rule × target,
 * takes the gate's decision on the calibration rows and applies it to the `test` rows. Returns a JSON
 * object (json_t *, owned by the caller) with the splits, the hyperparameters and one result per
 * rule × target; *fit_seconds gets the time spent fitting (kept out of the JSON, which must not
 * depend on timing). The OOD guard is not used here: cells measure the gate alone.
 */
int tr_policy_cell(const struct tr_traceset *ts, const struct tr_rows *test, const struct tr_fit_options *o,
		   const enum tr_gate_rule *rules, int n_rules, void **out, double *fit_seconds, struct tr_err *e);

/* What the policy does with one input. */
struct tr_decision {
	int label;   /* policy label index when handled, else -1 */
	int handled;
	double score; /* acceptor score of the deciding stage (NAN when refused) */
	int stage;    /* 1 or 2 when handled, else 0 */
	int ood;      /* 1 when the OOD guard deferred it */
	int top1;     /* stage 1's most probable label, handled or not (-1 when refused) */
};
/*
 * Routes rows idx[0..n) of `rows` (texts) or of the embedding matrix `emb` (emb_rows × emb_dim, for
 * policies fitted on embeddings; NULL otherwise). Labels are the policy's label indices.
 */
int tr_policy_route(const struct tr_policy *p, const struct tr_trace *rows, const size_t *idx, size_t n,
		    const double *emb, size_t emb_rows, int emb_dim, struct tr_decision *out, struct tr_err *e);

#endif
