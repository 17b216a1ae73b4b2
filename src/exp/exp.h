/*
 * exp.h - experiment specs, their cells, and the runner that computes cells into results/.
 *
 * A spec (experiments/NAME.spec) lists trace sets, traffic protocols, backends, gate rules, targets,
 * trace counts and seeds. It expands into cells: set × protocol × backend × trace count × seed. A cell
 * trains once (features, surrogate, acceptor) and evaluates every rule × target on its test traffic.
 * Each finished cell is one file, RESULTS/cells/SPEC/HASH.json, written atomically, named by a hash of
 * everything that determines it; a rerun skips finished cells.
 */
#ifndef TR_EXP_H
#define TR_EXP_H

#include "../gate/gate.h"

#define TR_SPEC_MAX 16
/* 2: per-label handled counts at α = 0.90 and 0.95; 3: results with the OOD guard, "without_ood" without */
#define TR_CELL_FORMAT 3

enum tr_protocol { TR_PROTO_OFFICIAL, TR_PROTO_POOLED };

struct tr_spec {
	char name[64];
	char *sets[TR_SPEC_MAX];
	int n_sets;
	int protocols[2];
	int n_protocols;
	char *backends[TR_SPEC_MAX];
	int n_backends;
	char *grids[TR_SPEC_MAX]; /* per backend (same order), or NULL: the family's default grid */
	const struct tr_rule *gates[TR_SPEC_MAX];
	int n_gates;
	double targets[TR_MAX_TARGETS];
	int n_targets;
	long traces[TR_SPEC_MAX]; /* -1 = all */
	int n_traces;
	uint64_t seeds[64];
	int n_seeds;
	double delta;
	int splits[8][3]; /* train / validation / calibration percents to sweep; none: the fit default */
	int n_splits;
	const struct tr_rule *crossfit; /* also this rule under crossfit calibration (results' rule "crossfit") */
	const struct tr_rule *oof[TR_SPEC_MAX]; /* also these rules under oof calibration (results' rule "R-oof") */
	int n_oof;
	int oof_cal; /* oof's calibration percent (0: TR_OOF_CAL) */
	/* a trace count's subsample: 0 stratified by teacher label (each label's share of the traffic kept),
	 * 1 grouped but blind to labels (label counts vary as independent draws would make them) */
	int subsample_iid;
};

struct tr_cell {
	const char *set, *backend, *grid;
	enum tr_protocol protocol;
	long traces; /* -1 = all */
	uint64_t seed;
	const int *split; /* NULL: the fit default (and the hash of a spec without a splits line) */
	char hash[17];
};

int tr_spec_parse(const char *path, const char *text, struct tr_spec *s, struct tr_err *e);
int tr_spec_load(const char *path, struct tr_spec *s, struct tr_err *e);
void tr_spec_free(struct tr_spec *s);

/*
 * The cells of a spec in a stable order. Trace counts at or above a set's number of traces are left
 * out (only "all" stands for the whole set). The cells borrow strings from the spec.
 */
int tr_spec_cells(const struct tr_spec *s, struct tr_cell **cells, size_t *n, struct tr_err *e);
/* RESULTS/cells/SPEC/HASH.json */
void tr_cell_path(const char *results, const struct tr_spec *s, const struct tr_cell *c, char *buf, size_t size);
/*
 * 1 when path holds cell c finished: JSON that parses, format "tracer-cell" of this TR_CELL_FORMAT,
 * c's hash, and its results (a truncated or foreign file is not finished and gets recomputed).
 */
int tr_cell_finished(const char *path, const struct tr_cell *c);
/*
 * Computes one cell and writes its file (and HASH.time with the fit seconds); skips a finished one.
 * threads: grid points trained at once (0: the online cores); the cell does not depend on it.
 */
int tr_cell_run(const struct tr_spec *s, const struct tr_cell *c, const char *results, int threads, int *skipped,
		struct tr_err *e);
extern const char *const tr_protocol_names[2];
/*
 * The pooled protocol's traffic: a set's traces and test parts pooled and split 70/30 (stratified by
 * teacher label, groups kept together) with the cell seed `seed`. traces and test get shallow copies of
 * the set's rows (free only their arrays).
 */
int tr_pool_split(const struct tr_traceset *ts, uint64_t seed, struct tr_rows *traces, struct tr_rows *test,
		  struct tr_err *e);

/*
 * One cell's evaluation (cell.c): fits on the traces part of ts (tf-idf features), then, for every rule ×
 * target, routes the `test` rows through the family the gate deploys, with and without the OOD guard.
 * Returns the cell's JSON object (owned by the caller) with the splits, the hyperparameters and one
 * result per rule × target; *fit_seconds gets the time spent (kept out of the JSON, which must not
 * depend on timing).
 */
int tr_cell_evaluate(const struct tr_traceset *ts, const struct tr_rows *test, const struct tr_fit_options *o,
		     const struct tr_rule *const *rules, int n_rules, struct json_t **out, double *fit_seconds,
		     struct tr_err *e);

#endif
