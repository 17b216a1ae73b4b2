/*
 * cli.h - the verb table of the `tracer` command. Each verb lives in its own cmd_*.c file.
 *
 * Exit codes: 0 success, 1 a data error (bad input, failed check), 2 a usage error.
 * Data goes to stdout; logs and errors to stderr.
 */
#ifndef TR_CLI_H
#define TR_CLI_H

#include <stdio.h>

#include "../common/common.h"
#include "../common/progress.h"

enum { TR_EXIT_OK = 0, TR_EXIT_DATA = 1, TR_EXIT_USAGE = 2 };

struct tr_verb {
	const char *name;
	const char *summary;
	const char *usage; /* printed by `tracer VERB --help` */
	const char *exits; /* what exit status 1 means for this verb, printed under the usage by --help */
	int (*run)(int argc, char **argv);
};

extern const struct tr_verb tr_verbs[];

int cmd_help(int argc, char **argv);
int cmd_datasets(int argc, char **argv);
int cmd_traces(int argc, char **argv);
int cmd_train_surrogate(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_route(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_collect(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_update(int argc, char **argv);

extern const char cmd_help_usage[], cmd_datasets_usage[], cmd_traces_usage[], cmd_train_surrogate_usage[],
	cmd_fit_usage[], cmd_route_usage[], cmd_eval_usage[], cmd_sweep_usage[], cmd_collect_usage[],
	cmd_audit_usage[], cmd_replay_usage[], cmd_monitor_usage[], cmd_serve_usage[], cmd_scan_usage[], cmd_update_usage[];

/*
 * The one argument parser of every verb (args.c). spec lists the verb's options separated by spaces, a
 * name ending in '=' taking a value ("--out= --force"); both `--opt value` and `--opt=value` are read.
 * Positional arguments fill pos[0..n_pos-1] in order (each must start NULL), or, when pos is NULL, come
 * back as TR_ARG_POS with the argument in val. "-" alone is positional (stdin).
 *
 *	struct tr_args a = {.verb = "eval", .spec = "--json --embeddings=", .pos = (const char **[]){&dir, &test},
 *			    .n_pos = 2};
 *	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT)
 *		if (tr_args_is(&a, "--json")) ...
 *	if (k < 0) return TR_EXIT_USAGE;
 *
 * tr_args_next returns TR_ARG_OPT (opt holds the name, val the value or NULL), TR_ARG_POS, TR_ARG_END,
 * or -1 after printing the usage error (an unknown option is named as unknown, a missing value as missing).
 */
enum { TR_ARG_END = 0, TR_ARG_OPT = 1, TR_ARG_POS = 2 };
struct tr_args {
	const char *verb, *spec;
	const char **const *pos;
	int n_pos;
	int i;		/* the next argv index (0: start) */
	char opt[64];
	const char *val;
};
int tr_args_next(struct tr_args *a, int argc, char **argv);
int tr_args_is(const struct tr_args *a, const char *name);

/*
 * A policy directory named by the user: 0 when DIR is a directory with a manifest.json, else -1 with one
 * message in the style of every missing file ("DIR: cannot open: No such file or directory", "DIR: not a
 * policy directory (...)"). tr_cli_policy_load checks, then loads (tr_policy_load).
 */
struct tr_policy;
struct tr_traceset;
int tr_cli_policy_check(const char *dir, struct tr_err *e);
int tr_cli_policy_load(const char *dir, struct tr_policy **p, struct tr_err *e);
/* For the routing verbs: per-batch and per-request buffers stay in the heap (main.c says why). */
void tr_cli_steady_heap(void);

/*
 * Misuse of a policy on traffic (traffic.c), checked by eval and audit on the rows r of ts they judge:
 * the traffic is the policy's own trace file (same SHA-256 as an input in manifest.json, when all its rows
 * are judged) or more than TR_TRAFFIC_SEEN_SHARE of its rows are among the traces the policy kept (same
 * id, input and input_b); rows with input_b for a single-text policy, or rows without it for a pair
 * policy; fewer than TR_TRAFFIC_LABEL_SHARE of the rows with a teacher label the policy knows. Fills w
 * with one-line warnings (none: w->n 0); -1 only when the policy's kept traces cannot be read.
 */
#define TR_TRAFFIC_SEEN_SHARE 0.05
#define TR_TRAFFIC_LABEL_SHARE 0.5
#define TR_TRAFFIC_WARN_MAX 4
struct tr_traffic_warnings {
	int n;
	char msg[TR_TRAFFIC_WARN_MAX][400];
};
struct tr_rows;
int tr_traffic_check(const char *dir, const struct tr_policy *p, const struct tr_traceset *ts,
		     const struct tr_rows *r, struct tr_traffic_warnings *w, struct tr_err *e);
/* Prints each warning as "tracer VERB: warning: ..." on stderr. */
void tr_traffic_warn(const char *verb, const struct tr_traffic_warnings *w);

/*
 * Progress on stderr for long work (progress_term.c): NULL with quiet, else a reporter to pass to the
 * library (tr_fit_options.progress) or to feed from the verb. tr_cli_progress_end ends its line (ok: with
 * "VERB: done in N s"); tr_cli_data_error ends a line drawn in place before it prints.
 */
struct tr_progress *tr_cli_progress(const char *verb, int quiet);
void tr_cli_progress_end(struct tr_progress *p, int ok);
void tr_cli_progress_break(void);

/* Prints "tracer: msg" on stderr and returns TR_EXIT_DATA. */
int tr_cli_data_error(const struct tr_err *e);
/* Prints a usage error and the verb's usage on stderr; returns TR_EXIT_USAGE. */
int tr_cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a number strictly inside (lo, hi) / a non-negative whole number; 0 or -1. */
int tr_cli_number(const char *s, double lo, double hi, double *out);
int tr_cli_count(const char *s, unsigned long long *out);
struct tr_fit_options;
/* --calibration oof|holdout|crossfit into o (fit and scan): 0, or a usage error's exit code. */
int tr_cli_calibration(const char *verb, const char *v, struct tr_fit_options *o);
/*
 * Prints a verb's usage text, where {backends}, {rules} and {families} stand for the names in the
 * surrogate-family, gate-rule and policy-family tables.
 */
void tr_cli_print_usage(FILE *f, const char *usage);
/* 1 when argv[i] is -h or --help. */
int tr_cli_is_help(const char *arg);
/* Writes buf to path atomically, or to stdout when path is NULL or "-". */
int tr_cli_output(const char *path, const char *buf, size_t len, struct tr_err *e);

/*
 * --out DIR: 0 when DIR may be written (absent, or a tracer artifact, or force); else -1 with a message
 * that says how to proceed.
 */
int tr_cli_out_check(const char *dir, int force, struct tr_err *e);

/*
 * Keeps the traces part of ts in the policy (written as traces.jsonl.zst) and records the --grid given
 * (null: the family's default) in its manifest, so `tracer update` can refit under the same settings.
 */
int tr_cli_keep_traces(struct tr_policy *p, const struct tr_traceset *ts, const char *grid, struct tr_err *e);
/* `tracer audit NEW TRAFFIC --compare OLD` (audit_compare.c): prints what changed, as Markdown. */
int tr_cli_audit_compare(const char *newdir, const char *olddir, const char *traffic, int top, struct tr_err *e);

#endif
