/*
 * main.c - `tracer`: dispatches to the verb table.
 */
#include <locale.h>
#include <malloc.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "../gate/gate.h"
#include "cli.h"

#define BAD "bad input (a file, a line, a policy directory; named on stderr), nothing written"
const struct tr_verb tr_verbs[] = {
	{"help", "show the verbs, or one verb's usage", cmd_help_usage, "-", cmd_help},
	{"datasets", "list, verify and fetch the benchmark files and trace sets", cmd_datasets_usage,
	 "a file missing or failing its SHA-256 (verify), a download failing (fetch)", cmd_datasets},
	{"traces", "export or split a trace set as reference trace JSONL", cmd_traces_usage,
	 BAD ", or a part the set does not have", cmd_traces},
	{"train-surrogate", "fit one surrogate family and score it on the test part", cmd_train_surrogate_usage, BAD,
	 cmd_train_surrogate},
	{"scan", "a first read of a trace set: labels, duplicates, agreement, coverage per gate rule", cmd_scan_usage, BAD,
	 cmd_scan},
	{"fit", "fit a parity-gated routing policy and write its directory", cmd_fit_usage,
	 BAD " (a refusal by the gate is a result: exit 0, written to manifest.json and report.md)", cmd_fit},
	{"update", "refit a policy on its own traces plus new ones, with lineage", cmd_update_usage,
	 BAD " (a refusal by the gate is a result: exit 0)", cmd_update},
	{"route", "route inputs (JSONL on stdin) with a fitted policy", cmd_route_usage,
	 "a bad policy, or an input line that failed (its error record is in the output; --on-error stop: the "
	 "first one stops the run)",
	 cmd_route},
	{"eval", "evaluate a fitted policy on held-out traffic", cmd_eval_usage,
	 "the contract VIOLATED (agreement on handled below the target; --no-check reports it and exits 0), "
	 "or " BAD,
	 cmd_eval},
	{"serve", "serve a policy over HTTP (route, batch, feedback, health, metrics)", cmd_serve_usage,
	 "the policy cannot be loaded or the address cannot be listened on (0: stopped by SIGTERM or SIGINT)",
	 cmd_serve},
	{"sweep", "compute an experiment spec's cells into results/", cmd_sweep_usage, BAD ", or a cell that failed",
	 cmd_sweep},
	{"collect", "summarise finished cells into tables and PAPER.md", cmd_collect_usage,
	 BAD ", or cells missing (without --partial)", cmd_collect},
	{"monitor", "feed audited answers to a policy's drift monitor, or show it", cmd_monitor_usage, BAD, cmd_monitor},
	{"replay", "stream traffic through a policy with audits and the drift monitor", cmd_replay_usage, BAD, cmd_replay},
	{"audit", "a reviewer's report on a policy's decisions, or on a sweep's plateaus", cmd_audit_usage, BAD, cmd_audit},
	{NULL, NULL, NULL, NULL, NULL},
};
#undef BAD

static const struct tr_verb *find_verb(const char *name)
{
	for (const struct tr_verb *v = tr_verbs; v->name; v++)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

const char cmd_help_usage[] = "usage: tracer help [VERB]\n";

/* `tracer VERB --help`: the usage, then what the exit status says. */
static void print_help(const struct tr_verb *v)
{
	tr_cli_print_usage(stdout, v->usage);
	if (strcmp(v->exits, "-") == 0)
		printf("exit status: 0 shown, 2 an unknown verb\n");
	else
		printf("exit status: 0 done; 1 %s; 2 a usage error (the usage is printed)\n", v->exits);
}

static void print_overview(FILE *f)
{
	fprintf(f, "usage: tracer VERB [ARGS]   (tracer VERB --help for a verb's usage)\n\n");
	for (const struct tr_verb *v = tr_verbs; v->name; v++)
		fprintf(f, "  %-14s %s\n", v->name, v->summary);
	fprintf(f, "\nenvironment: TRACER_DATA (mirror, default ../shared/datasets from the project root),\n"
		   "             TRACER_CACHE (default build/cache), TRACER_MANIFEST (default datasets/manifest.tsv)\n");
}

int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		print_overview(stdout);
		return TR_EXIT_OK;
	}
	const struct tr_verb *v = find_verb(argv[1]);
	if (!v)
		return tr_cli_usage_error("help", "unknown verb \"%s\"", argv[1]);
	print_help(v);
	return TR_EXIT_OK;
}

static const char *running = "tracer"; /* the verb being run, for messages */

/* The names of the surrogate family table, joined by sep. */
static void backend_list(FILE *f, const char *sep)
{
	for (int i = 0; tr_families[i]; i++)
		fprintf(f, "%s%s", i ? sep : "", tr_families[i]->name);
}

void tr_cli_print_usage(FILE *f, const char *usage)
{
	for (const char *p = usage; *p; p++) {
		if (strncmp(p, "{backends}", 10) == 0)
			backend_list(f, "|"), p += 9;
		else if (strncmp(p, "{rules}", 7) == 0)
			fputs(tr_rule_list("|"), f), p += 6;
		else if (strncmp(p, "{families}", 10) == 0)
			fputs(tr_pol_family_list(", "), f), p += 9;
		else
			fputc(*p, f);
	}
}

int tr_cli_data_error(const struct tr_err *e)
{
	tr_cli_progress_break();
	/* most allocation sites only say "out of memory": name the step the user asked for */
	if (strstr(e->msg, "out of memory") && !strstr(e->msg, "out of memory while"))
		fprintf(stderr, "tracer: %s while running tracer %s\n", e->msg, running);
	else
		fprintf(stderr, "tracer: %s\n", e->msg);
	return TR_EXIT_DATA;
}

int tr_cli_usage_error(const char *verb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tracer %s: ", verb);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	const struct tr_verb *v = find_verb(verb);
	if (v)
		tr_cli_print_usage(stderr, v->usage);
	return TR_EXIT_USAGE;
}

int tr_cli_is_help(const char *arg)
{
	return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

/* Parses a number in (lo, hi); returns 0 or -1. */
int tr_cli_number(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || !(v > lo && v < hi))
		return -1;
	*out = v;
	return 0;
}

int tr_cli_count(const char *s, unsigned long long *out)
{
	char *end;
	if (!*s || *s == '-')
		return -1;
	*out = strtoull(s, &end, 10);
	return *end ? -1 : 0;
}

int tr_cli_calibration(const char *verb, const char *v, struct tr_fit_options *o)
{
	if (strcmp(v, "crossfit") != 0 && strcmp(v, "holdout") != 0 && strcmp(v, "oof") != 0)
		return tr_cli_usage_error(verb, "--calibration must be holdout, crossfit or oof, got \"%s\"", v);
	o->crossfit = strcmp(v, "crossfit") == 0;
	o->oof = strcmp(v, "oof") == 0;
	return 0;
}

int tr_cli_output(const char *path, const char *buf, size_t len, struct tr_err *e)
{
	if (!path || strcmp(path, "-") == 0) {
		if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0)
			return tr_fail(e, "stdout: write failed");
		return 0;
	}
	return tr_write_atomic(path, buf, len, e);
}

int tr_cli_out_check(const char *dir, int force, struct tr_err *e)
{
	if (tr_dir_check(dir, force, e) == 0)
		return 0;
	if (strstr(e->msg, "tracer did not write") || strstr(e->msg, "not a tracer artifact") ||
	    strstr(e->msg, "not a directory")) {
		size_t n = strlen(e->msg);
		snprintf(e->msg + n, sizeof e->msg - n, "; choose another --out, or add --force to move it aside intact");
	}
	return -1;
}

/*
 * OpenBLAS starts its worker threads when the library loads, before main, unless OPENBLAS_NUM_THREADS
 * is 1; each worker asks at once for a 128 MB buffer and, when the address space is short (ulimit -v),
 * retries forever, and exit() then waits for it (a hang, issue 16). We make BLAS calls from one thread,
 * so the process runs itself again once with the variable set to 1: the pool is then never created.
 * (valgrind does not follow the exec unless told to: run it with OPENBLAS_NUM_THREADS=1.)
 */
static void blas_one_thread(char **argv)
{
	const char *v = getenv("OPENBLAS_NUM_THREADS");
	if ((v && strcmp(v, "1") == 0) || setenv("OPENBLAS_NUM_THREADS", "1", 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	/* no /proc: carry on with the pool, which tr_gsl_init keeps idle */
}

/*
 * glibc raises its mmap threshold to the size of each large block freed, so that later large blocks
 * (feature matrices, a model's work space: megabytes, allocated and freed per fit) come from the heap
 * and stay resident after they are freed; one fixed threshold returns them to the system at free:
 * the dense benchmark's peak RSS fell from 128 to 99 MB. Allocation only: no result changes.
 */
#define MMAP_THRESHOLD (256 * 1024)

/*
 * Routing (route, serve) allocates and frees the same buffers for every batch or request: feature rows
 * (about 0.3-1 MB for 256 inputs) and the OOD search's scratch (about 0.2 MB on Banking77). Under the
 * fixed threshold above each was mapped, faulted in and unmapped again, or the heap top trimmed after
 * it: most of their system time. They hold no large transient memory, so these keep it in the heap.
 */
#define STEADY_THRESHOLD (64 << 20)

void tr_cli_steady_heap(void)
{
	mallopt(M_MMAP_THRESHOLD, STEADY_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, STEADY_THRESHOLD);
}

int main(int argc, char **argv)
{
	blas_one_thread(argv);
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
	setlocale(LC_ALL, "C");
	tr_gsl_init();
	if (argc < 2) {
		print_overview(stderr);
		return TR_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("tracer %s\n", TR_VERSION);
		return TR_EXIT_OK;
	}
	if (tr_cli_is_help(argv[1]))
		return cmd_help(1, argv);
	const struct tr_verb *v = find_verb(argv[1]);
	if (!v) {
		fprintf(stderr, "tracer: unknown verb \"%s\"\n", argv[1]);
		print_overview(stderr);
		return TR_EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++)
		if (tr_cli_is_help(argv[i])) {
			print_help(v);
			return TR_EXIT_OK;
		}
	running = v->name;
	return v->run(argc - 1, argv + 1);
}
