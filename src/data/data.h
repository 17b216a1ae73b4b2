/*
 * data.h - trace sets: the benchmark mirror, cached LLM teacher labels, users' trace files, splits.
 *
 * A trace is one (input, teacher label) pair, with an optional second text (the hypothesis of an NLI
 * pair), a gold label when one is known and a group key. Labels are indices into the set's label space.
 * A trace set holds the label space and up to three parts: the traces a policy learns from, the test
 * traffic it is judged on, and an extra part (CLINC150's out-of-scope items) kept for later use.
 */
#ifndef TR_DATA_H
#define TR_DATA_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

/* ---- label spaces ---- */

/* Label names sorted by strcmp, without duplicates. */
struct tr_labels {
	char **names;
	int n;
};
/* Builds a sorted, de-duplicated label space from n names (copied). */
int tr_labels_build(struct tr_labels *l, const char *const *names, size_t n, struct tr_err *e);
/* Index of name, or -1. */
int tr_labels_find(const struct tr_labels *l, const char *name);
void tr_labels_free(struct tr_labels *l);

/* ---- traces and trace sets ---- */

struct tr_trace {
	char *id;
	char *input;
	char *input_b; /* second text of a pair, or NULL */
	char *group;   /* explicit group key, or NULL: then the premise for pairs, the input otherwise */
	int teacher;   /* label index, -1 in the extra part */
	int gold;      /* label index, -1 when unknown */
};

/* The key that keeps rows together across splits (borrowed from the trace). */
const char *tr_trace_group(const struct tr_trace *t);

struct tr_rows {
	struct tr_trace *v;
	size_t n, cap;
};
/* Appends a trace; takes ownership of the strings in t (on failure too). */
int tr_rows_push(struct tr_rows *r, struct tr_trace t);
void tr_rows_free(struct tr_rows *r);

enum { TR_PART_TRACES, TR_PART_TEST, TR_PART_EXTRA, TR_NPARTS };
extern const char *const tr_part_names[TR_NPARTS];
int tr_part_parse(const char *name);

/* Teacher agreement figures of one upstream teacher file, as `datasets list` prints them. */
struct tr_source_stat {
	char file[96];
	size_t rows, valid, invalid, agree;
};

struct tr_input_ref {
	char path[96];
	char sha256[65];
};

struct tr_traceset {
	char *name; /* "banking77:gold", or the file a user's traces came from */
	struct tr_labels labels;
	struct tr_rows part[TR_NPARTS];
	char *extra_label; /* what the extra part's rows are ("oos"), or NULL */
	size_t n_invalid;  /* teacher answers that were not a label: counted, never mapped */
	int pairs;	   /* 1 when inputs are (input, input_b) pairs */
	uint64_t split_seed;
	struct tr_source_stat src[4];
	int n_src;
	struct tr_input_ref inputs[4]; /* the files the set was read from (provenance for artifacts) */
	int n_inputs;
};

void tr_traceset_free(struct tr_traceset *ts);
/* Agreement of teacher with gold over the traces and test parts (rows with a gold label). */
void tr_traceset_agreement(const struct tr_traceset *ts, size_t *agree, size_t *n);

/* ---- the benchmark mirror ---- */

struct tr_manifest_entry {
	char *path, *sha256, *license, *url;
	long rows;
};
struct tr_manifest {
	struct tr_manifest_entry *v;
	size_t n;
};

/* Where data lives: the mirror (TRACER_DATA), the download and trace caches (TRACER_CACHE). */
struct tr_datactx {
	char data_dir[PATH_MAX];
	char cache_dir[PATH_MAX];
	char manifest_path[PATH_MAX];
	struct tr_manifest manifest;
};

int tr_manifest_parse(const char *path, const char *text, struct tr_manifest *m, struct tr_err *e);
const struct tr_manifest_entry *tr_manifest_find(const struct tr_manifest *m, const char *path);
void tr_manifest_free(struct tr_manifest *m);

/* Fills ctx from the environment and reads the manifest. Free with tr_data_close. */
int tr_data_open(struct tr_datactx *ctx, struct tr_err *e);
void tr_data_close(struct tr_datactx *ctx);

/*
 * Finds a manifest file in the mirror or in the download cache and checks its SHA-256.
 * On success writes its path to `path` (PATH_MAX bytes) and its sum to `sha`.
 */
int tr_data_locate(const struct tr_datactx *ctx, const char *rel, char *path, char sha[65],
		   struct tr_err *e);

/* ---- named trace sets (DATASET:TEACHER) ---- */

struct tr_setdef {
	const char *name;
	const char *const *sources; /* manifest paths, NULL-terminated */
	const char *about;
	/* Builds the set from the located source files (same order as sources). */
	int (*build)(char *const *paths, struct tr_traceset *ts, struct tr_err *e);
};
extern const struct tr_setdef tr_setdefs[];
extern const size_t tr_n_setdefs;
const struct tr_setdef *tr_setdef_find(const char *name);

/* Loads a named set: from the zstd cache when its key (the sources' sums) matches, else builds it. */
int tr_traceset_load(const struct tr_datactx *ctx, const char *name, struct tr_traceset *ts,
		     struct tr_err *e);
/* Loads a named set when `spec` contains ':' and is a known set, else reads `spec` as trace JSONL. */
int tr_traceset_open(const char *spec, struct tr_traceset *ts, struct tr_err *e);

/* The seed of the fixed 70/30 traces/test splits of the sets without an official test split. */
#define TR_SET_SPLIT_SEED 20260414u

/* ---- users' trace files (JSONL) ---- */

/*
 * Reads trace JSONL (the reference tool's format and its key aliases) into ts->part[TR_PART_TRACES];
 * the label space is every teacher and ground-truth label seen, sorted.
 */
int tr_traces_read_jsonl(const char *path, const char *text, size_t len, struct tr_traceset *ts,
			 struct tr_err *e);
int tr_traces_load_jsonl(const char *path, struct tr_traceset *ts, struct tr_err *e);
/* The accepted keys of the input text and of the teacher label, in order of preference (NULL-ended). */
extern const char *const tr_input_keys[], *const tr_label_keys[];

/*
 * One line of trace JSON, as every reader sees it (fit, eval, audit, traces, and route's stdin): a JSON
 * object (duplicate keys refused) with the input under one of tr_input_keys, optional "input_b", "id"
 * and "group" (string or integer); with TR_LINE_LABEL also the teacher label under one of tr_label_keys
 * and an optional "ground_truth" (string or integer, not null or empty). Errors name PATH:LINENO.
 */
enum {
	TR_LINE_LABEL = 1,     /* the teacher label is required (traces); without it labels are ignored */
	TR_LINE_KEEP_JSON = 2, /* keep the parsed object in .json (route reads "embedding" and its fallback) */
};
struct tr_trace_line {
	struct tr_trace t;	   /* id ("line:N" when absent), input, input_b, group (owned); labels -1 */
	char *teacher, *gold;	   /* label text (decimal for integers), or NULL (owned) */
	int teacher_int, gold_int; /* 1 when that label was a JSON integer */
	void *json;		   /* the line's json_t object (one reference) with TR_LINE_KEEP_JSON */
};
/* Parses s[0..len) (one line without its newline) into out; on failure out holds nothing. */
int tr_trace_parse_line(const char *path, size_t lineno, const char *s, size_t len, int flags,
			struct tr_trace_line *out, struct tr_err *e);
void tr_trace_line_free(struct tr_trace_line *l);
/*
 * Route's embedding: the "embedding" list of a line kept with TR_LINE_KEEP_JSON, dim finite numbers,
 * into out[0..dim). Returns NULL, or why not (a message without the line, static).
 */
const char *tr_trace_line_embedding(const struct tr_trace_line *l, int dim, double *out);

/*
 * A stream of trace lines (a file, or route's stdin read line by line) under the rules of one trace set:
 * a UTF-8 byte order mark on line 1 and blanks around a line are ignored, blank lines skipped, an id may
 * appear once ("PATH:N: duplicated id "a" (first on line M)"), and a label's text keeps one JSON type
 * (1 and "1" are refused rather than merged: the label space is text, so they could not stay apart).
 */
struct tr_trace_reader;
struct tr_trace_reader *tr_trace_reader_new(const char *path, int flags); /* NULL: out of memory */
/*
 * Feeds the next line s[0..n) (its newline may be included). *got is 1 when it held a trace (then out
 * owns it: free with tr_trace_line_free), 0 for a blank line. Returns -1 with e naming PATH:LINE.
 */
int tr_trace_reader_line(struct tr_trace_reader *r, const char *s, size_t n, struct tr_trace_line *out, int *got,
			 struct tr_err *e);
size_t tr_trace_reader_lines(const struct tr_trace_reader *r); /* lines fed so far */
void tr_trace_reader_free(struct tr_trace_reader *r);
/* Appends one part as reference trace JSONL ({"id","input","teacher","ground_truth"}, input_b). */
int tr_traces_write_jsonl(const struct tr_traceset *ts, int part, struct tr_buf *out, struct tr_err *e);

/* ---- CSV (RFC 4180, through libcsv) ---- */

struct tr_csv_row {
	char **f;
	size_t nf;
	size_t line; /* 1-based line where the record starts */
};
struct tr_csv {
	struct tr_csv_row *rows;
	size_t n, cap;
};
int tr_csv_parse(const char *path, const char *data, size_t len, struct tr_csv *out, struct tr_err *e);
void tr_csv_free(struct tr_csv *c);

/* ---- splits ---- */

/*
 * Assigns each of n rows to one of nparts parts with the given fractions, stratified by strat[i] and
 * keeping rows with equal group keys on one side. Deterministic in seed. part[] is filled.
 * A group's stratum is that of its first row. With `tiny` set and three parts (train / validation /
 * calibration), a stratum of 1 group goes to train, 2 groups to train + calibration, 3 to one each.
 */
int tr_split_grouped(size_t n, const int *strat, const char *const *group, const double *frac,
		     int nparts, uint64_t seed, int tiny, int *part, struct tr_err *e);
/*
 * One row per group key, drawn at random: pick[i] = 1 for the row of its group whose seeded hash of its
 * position i is the smallest, else 0. The draw reads no row content (labels, order within the file), so
 * the picked rows are a label-blind choice.
 */
int tr_group_pick(size_t n, const char *const *group, uint64_t seed, unsigned char *pick, struct tr_err *e);
/*
 * The split of traces every caller uses: tr_split_grouped over rows[idx[i]] (rows[i] when idx is NULL),
 * i < n, stratified by teacher label and grouped by tr_trace_group. part[i] is the part of position i.
 */
int tr_split_traces(const struct tr_trace *rows, const size_t *idx, size_t n, const double *frac, int nparts,
		    uint64_t seed, int tiny, int *part, struct tr_err *e);
/* The same split with one stratum: grouped, blind to the labels (no tiny rule). */
int tr_split_traces_blind(const struct tr_trace *rows, const size_t *idx, size_t n, const double *frac, int nparts,
			  uint64_t seed, int *part, struct tr_err *e);
/*
 * rows[0..n) dealt into two lists by tr_split_traces (seed, no tiny rule): part 0 (share frac[0]) into a,
 * part 1 (share frac[1]) into b, or dropped when b is NULL; each keeps the rows' order. a->v (and b->v) are
 * new arrays of shallow copies (the strings stay rows'): the caller frees them, also on failure. Used by
 * `traces split`, the sweeps' pooled split and their trace-count subsamples.
 */
int tr_split_rows(const struct tr_trace *rows, size_t n, const double frac[2], uint64_t seed, struct tr_rows *a,
		  struct tr_rows *b, struct tr_err *e);

#endif
