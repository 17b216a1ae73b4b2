/*
 * surrogate.h - interchangeable surrogate families behind one interface.
 *
 * A family is a table entry (struct tr_family): its name, what it can do, its hyperparameters with a
 * default grid, and train / predict / save / load / free. Adding a family is one new file defining a
 * `const struct tr_family` and one line in the table in surrogate.c.
 *
 * Labels are indices into the caller's global label space of K labels. Probabilities are n × K rows that
 * sum to 1; a label absent from the training rows gets probability 0. Model selection is generic: the
 * caller gives training and validation rows, every grid point is trained on the training rows and the
 * one with the best macro-F1 against the teacher on the validation rows is kept (ties: first in grid).
 */
#ifndef TR_SURROGATE_H
#define TR_SURROGATE_H

#include "../feat/feat.h"

enum { TR_CAP_PROBA = 1, TR_CAP_SPARSE = 2, TR_CAP_DENSE = 4 };
#define TR_MAX_HP 3
#define TR_MAX_GRID 16

struct tr_hparam {
	const char *name;
	const char *grid; /* default values, comma-separated */
	double min, max;  /* allowed range, inclusive */
	int integer;	  /* 1 if values must be whole numbers */
	int dense_only;	  /* 1 if it only matters for dense features (then sparse fits use its first value) */
};

struct tr_family {
	const char *name;
	unsigned caps;
	const char *about;
	const struct tr_hparam *hparams; /* ended by a NULL name */
	int thread_safe; /* 1 if grid points may train in parallel threads (no shared global state) */
	/* Trains on rows X with labels y (0..K-1); hp holds one value per hparam. */
	int (*train)(const struct tr_feats *X, const int *y, int K, const double *hp, uint64_t seed,
		     void **model, struct tr_err *e);
	/* Fills proba (X->n × K). */
	int (*predict)(const void *model, const struct tr_feats *X, double *proba, struct tr_err *e);
	int (*save)(const void *model, struct tr_buf *out);
	/* Reads a model saved for K labels (the header's K: a model of another K is corrupt). */
	int (*load)(const char *what, struct tr_cursor *in, int K, void **model, struct tr_err *e);
	void (*free)(void *model);
};

extern const struct tr_family *const tr_families[];
const struct tr_family *tr_family_find(const char *name);
/* The families' names joined by sep (a thread-local buffer, valid until the next call). */
const char *tr_family_list(const char *sep);

/* A hyperparameter grid: for each hparam of the family, the values to try. */
struct tr_grid {
	int n_hp;
	int n_vals[TR_MAX_HP];
	double vals[TR_MAX_HP][TR_MAX_GRID];
};
/*
 * Parses "name=v1,v2;name2=v3" (NULL or "" = the family's defaults; unnamed hparams keep theirs).
 * Unknown names, values out of range, non-integers where integers are needed: an error naming them.
 */
int tr_grid_parse(const struct tr_family *fam, const char *spec, struct tr_grid *g, struct tr_err *e);

/* A trained surrogate: the family, its chosen hyperparameters, and the family's model. */
struct tr_surrogate {
	const struct tr_family *fam;
	int K;
	double hp[TR_MAX_HP];
	double val_f1;	  /* macro-F1 on the validation rows for the chosen point (NAN if none) */
	int const_label;  /* >= 0 when the training rows had a single label: the model predicts it */
	void *model;
};

struct tr_progress;
/*
 * Trains every grid point on (X, y), picks by validation macro-F1 on (Xv, yv) when Xv has rows, and
 * returns the chosen model. `log` (may be NULL) receives one line per grid point. Grid points train in
 * up to `threads` parallel threads for thread-safe families (0: the online cores); the result does
 * not depend on the number of threads. `progress` (may be NULL), when two or more points are trained,
 * gets a phase "surrogate FAMILY grid search over N points" and a step per point trained (points done / total;
 * from the training thread, never two at once), each worth a log line; its log_steps is restored after.
 */
int tr_surrogate_fit(const struct tr_family *fam, const struct tr_grid *grid, const struct tr_feats *X,
		     const int *y, const struct tr_feats *Xv, const int *yv, int K, uint64_t seed, int threads,
		     struct tr_surrogate **out, struct tr_buf *log, struct tr_progress *progress, struct tr_err *e);
int tr_surrogate_predict(const struct tr_surrogate *s, const struct tr_feats *X, double *proba,
			 struct tr_err *e);
/* Threads for `jobs` independent trainings of family fam: 1 unless it is thread-safe and there are two
 * jobs or more; else `threads` (0: the online cores), at most one per job. */
int tr_surrogate_threads(const struct tr_family *fam, size_t jobs, int threads);
/*
 * Runs run(ctx, i) for i = 0..n-1 on up to `threads` threads (1 or less: in order, in this thread), each
 * job taken by the next free thread; after each job a progress step (jobs done / n; from the thread that
 * ran it, under a lock: never two at once). The jobs must not depend on one another's order.
 */
void tr_surrogate_jobs(size_t n, int threads, void (*run)(void *ctx, size_t i), void *ctx,
		       struct tr_progress *progress);
/* Binary serialisation behind a text header line "tracer-surrogate 2 FAMILY" (format 2: sparse nodes
 * field by field, TR_NODE_BYTES each). */
int tr_surrogate_save(const struct tr_surrogate *s, struct tr_buf *out, struct tr_err *e);
int tr_surrogate_load(const char *what, const char *data, size_t len, struct tr_surrogate **out,
		      struct tr_err *e);
void tr_surrogate_free(struct tr_surrogate *s);

/* Index of the largest entry of each row (ties: lowest index). */
void tr_argmax_rows(const double *proba, size_t n, int K, int *pred);
/* Macro-F1 over the labels present in y or pred. */
double tr_macro_f1(const int *y, const int *pred, size_t n, int K);

/* Tests only: 1 makes libsvm train sparse rows in one svm_train call on the whole n² Gram matrix (the
 * reference that the pair-by-pair training must equal bit for bit). */
extern int tr_libsvm_whole_gram;
/* Tests only: 1 makes libsvm predict sparse rows with its own svm_predict_probability through the support
 * vectors, one row at a time (the reference that the blocked prediction must equal bit for bit). */
extern int tr_libsvm_kernel_predict;
/* Tests only: 1 makes liblinear predict every row with its own predict_probability, one at a time (the
 * reference that the feature-by-feature blocks must equal bit for bit). */
extern int tr_liblinear_row_predict;

/* The families (one file each). */
extern const struct tr_family tr_family_liblinear, tr_family_libsvm, tr_family_knn, tr_family_softmax;

#endif
