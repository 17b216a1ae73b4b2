/*
 * progress_term.c - the command line's view of struct tr_progress: on a terminal one line on stderr,
 * redrawn in place (at most ten times a second); otherwise one line per phase (and per step where the
 * work asks for it: a sweep's cells); nothing with --quiet.
 */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

static struct {
	struct tr_progress p;
	int tty, open; /* open: a line is drawn in place and not ended yet */
	double last;
} term;

static void show(void *ctx, const struct tr_progress *p, int phase_changed)
{
	(void)ctx;
	char line[400];
	double now = tr_now();
	if (!term.tty) {
		if (phase_changed || p->log_steps) {
			tr_progress_line(p, line, sizeof line);
			fprintf(stderr, "%s\n", line);
		}
		return;
	}
	if (!phase_changed && now - term.last < 0.1)
		return;
	term.last = now;
	tr_progress_line(p, line, sizeof line);
	/* a finished phase keeps its line; the new one is drawn below it */
	fprintf(stderr, "%s\r\033[K%s", phase_changed && term.open ? "\n" : "", line);
	fflush(stderr);
	term.open = 1;
}

struct tr_progress *tr_cli_progress(const char *verb, int quiet)
{
	if (quiet)
		return NULL;
	term.tty = isatty(STDERR_FILENO);
	term.open = 0;
	term.last = 0;
	tr_progress_init(&term.p, verb);
	term.p.show = show;
	return &term.p;
}

void tr_cli_progress_end(struct tr_progress *p, int ok)
{
	if (!p)
		return;
	if (term.open)
		fputc('\n', stderr);
	term.open = 0;
	if (ok)
		fprintf(stderr, "%s: done in %.1f s\n", p->what, tr_now() - p->start);
}

void tr_cli_progress_break(void)
{
	if (term.open)
		fputc('\n', stderr);
	term.open = 0;
}
