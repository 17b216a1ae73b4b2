/*
 * cmd_sweep.c - `tracer sweep SPEC`: compute an experiment spec's cells (skipping finished ones), in
 * parallel processes; or list the cells, or run exactly one (the entry point of a cluster task).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../exp/exp.h"
#include "cli.h"

const char cmd_sweep_usage[] =
	"usage: tracer sweep SPEC [--results DIR] [--jobs N] [--quiet]   compute every unfinished cell\n"
	"       tracer sweep SPEC --list                       the cells, one per line: index, hash, what\n"
	"       tracer sweep SPEC --missing [--results DIR]    indices of the unfinished cells, comma-separated\n"
	"       tracer sweep SPEC --cell INDEX|HASH [--results DIR]   compute exactly one cell\n"
	"  --threads N: grid points of a cell trained at once (default: the online cores; 1 with --jobs > 1).\n"
	"  Cells are written to DIR/cells/NAME/HASH.json (DIR defaults to results/ in the project root);\n"
	"  finished cells are skipped, so an interrupted sweep resumes. With --jobs N, N cells run at once\n"
	"  (each single-threaded); the results do not depend on N or on the order. Progress (cells done,\n"
	"  elapsed, ETA) goes to stderr, redrawn in place on a terminal, a line per cell otherwise; --quiet\n"
	"  silences it.\n";


static void describe(const struct tr_cell *c, char *buf, size_t size)
{
	char n[24];
	if (c->traces < 0)
		snprintf(n, sizeof n, "all");
	else
		snprintf(n, sizeof n, "%ld", c->traces);
	int k = snprintf(buf, size, "%s %s %s traces=%s seed=%llu", c->set, tr_protocol_names[c->protocol], c->backend,
			 n, (unsigned long long)c->seed);
	if (c->split && k > 0 && (size_t)k < size)
		snprintf(buf + k, size - (size_t)k, " split=%d/%d/%d", c->split[0], c->split[1], c->split[2]);
}

static int run_one(const struct tr_spec *s, const struct tr_cell *c, const char *results, int threads)
{
	struct tr_err e;
	int skipped;
	if (tr_cell_run(s, c, results, threads, &skipped, &e)) {
		fprintf(stderr, "tracer: cell %s: %s\n", c->hash, e.msg);
		return TR_EXIT_DATA;
	}
	return TR_EXIT_OK;
}

static int run_all(const struct tr_spec *s, const struct tr_cell *cells, size_t n, const char *results, int jobs,
		   int threads, struct tr_progress *pr)
{
	size_t todo = 0, done = 0, failed = 0;
	size_t *pending = tr_malloc((n ? n : 1) * sizeof *pending);
	if (!pending)
		return TR_EXIT_DATA;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		tr_cell_path(results, s, &cells[i], path, sizeof path);
		if (!tr_cell_finished(path, &cells[i]))
			pending[todo++] = i;
	}
	tr_progress_phase(pr, "%s: %zu cells, %zu finished, %zu to compute with %d job%s", s->name, n, n - todo, todo,
			  jobs, jobs > 1 ? "s" : "");
	tr_progress_phase(pr, "%s: cells computed", s->name);
	if (pr)
		pr->log_steps = 1;
	if (jobs > 1 && threads == 0)
		threads = 1; /* parallel cells, not parallel grid points */
	size_t next = 0, running = 0;
	pid_t pids[64] = {0};
	size_t which[64];
	fflush(NULL);
	while (next < todo || running) {
		while (running < (size_t)jobs && next < todo) {
			pid_t pid = fork();
			if (pid < 0) {
				fprintf(stderr, "tracer: fork: %s\n", strerror(errno));
				break;
			}
			if (pid == 0)
				_exit(run_one(s, &cells[pending[next]], results, threads));
			for (int k = 0; k < 64; k++)
				if (!pids[k]) {
					pids[k] = pid, which[k] = pending[next];
					break;
				}
			running++, next++;
		}
		if (!running)
			break;
		int status;
		pid_t pid = wait(&status);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int k = 0; k < 64; k++)
			if (pids[k] == pid) {
				pids[k] = 0;
				running--, done++;
				char what[256];
				describe(&cells[which[k]], what, sizeof what);
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
					failed++;
					tr_cli_progress_break();
					fprintf(stderr, "sweep: cell %zu (%s) failed\n", which[k], what);
				}
				tr_progress_step(pr, done, todo);
			}
	}
	tr_cli_progress_end(pr, !failed && done == todo);
	tr_free(pending);
	if (failed || done < todo) {
		fprintf(stderr, "tracer: %zu of %zu cells failed or did not run\n", failed + (todo - done), todo);
		return TR_EXIT_DATA;
	}
	return TR_EXIT_OK;
}

int cmd_sweep(int argc, char **argv)
{
	const char *spec = NULL, *cell = NULL;
	char results[4096];
	tr_root_path("results", results, sizeof results);
	int list = 0, missing = 0, quiet = 0;
	unsigned long long jobs = 1, threads = 0;
	struct tr_args a = {.verb = "sweep",
			    .spec = "--list --missing --cell= --results= --jobs= --threads= --quiet",
			    .pos = (const char **[]){&spec},
			    .n_pos = 1};
	int k;
	while ((k = tr_args_next(&a, argc, argv)) == TR_ARG_OPT) {
		const char *v = a.val;
		if (tr_args_is(&a, "--list"))
			list = 1;
		else if (tr_args_is(&a, "--quiet"))
			quiet = 1;
		else if (tr_args_is(&a, "--missing"))
			missing = 1;
		else if (tr_args_is(&a, "--cell"))
			cell = v;
		else if (tr_args_is(&a, "--results"))
			snprintf(results, sizeof results, "%s", v);
		else if (tr_args_is(&a, "--jobs")) {
			if (tr_cli_count(v, &jobs) || jobs < 1 || jobs > 64)
				return tr_cli_usage_error("sweep", "--jobs must be 1..64");
		} else if (tr_args_is(&a, "--threads")) {
			if (tr_cli_count(v, &threads) || threads < 1 || threads > 64)
				return tr_cli_usage_error("sweep", "--threads must be 1..64");
		}
	}
	if (k < 0)
		return TR_EXIT_USAGE;
	if (!spec)
		return tr_cli_usage_error("sweep", "expected a spec file");
	struct tr_spec s;
	struct tr_err e;
	struct tr_cell *cells;
	size_t n;
	if (tr_spec_load(spec, &s, &e))
		return tr_cli_data_error(&e);
	if (tr_spec_cells(&s, &cells, &n, &e)) {
		tr_spec_free(&s);
		return tr_cli_data_error(&e);
	}
	int rc = TR_EXIT_OK;
	if (list) {
		for (size_t i = 0; i < n; i++) {
			char what[256];
			describe(&cells[i], what, sizeof what);
			printf("%zu\t%s\t%s\n", i, cells[i].hash, what);
		}
	} else if (missing) {
		int first = 1;
		for (size_t i = 0; i < n; i++) {
			char path[4096];
			tr_cell_path(results, &s, &cells[i], path, sizeof path);
			if (!tr_cell_finished(path, &cells[i])) {
				printf("%s%zu", first ? "" : ",", i);
				first = 0;
			}
		}
		if (!first)
			putchar('\n');
	} else if (cell) {
		char *end;
		unsigned long long k = strtoull(cell, &end, 10);
		size_t found = n;
		for (size_t i = 0; i < n; i++)
			if (strcmp(cells[i].hash, cell) == 0 || (!*end && k == i))
				found = i;
		if (found == n)
			rc = tr_cli_usage_error("sweep", "no cell \"%s\" (0..%zu or a hash from --list)", cell, n ? n - 1 : 0);
		else
			rc = run_one(&s, &cells[found], results, (int)threads);
	} else {
		rc = run_all(&s, cells, n, results, (int)jobs, (int)threads, tr_cli_progress("sweep", quiet));
	}
	tr_free(cells);
	tr_spec_free(&s);
	return rc;
}
