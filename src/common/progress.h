/*
 * progress.h - how far long work has got (fit, sweep, audit, scan). Library code reports through a
 * struct tr_progress the caller owns and never prints: the caller's show() decides what reaches the
 * user (the command line draws it on stderr). A NULL progress reports nothing.
 */
#ifndef TR_PROGRESS_H
#define TR_PROGRESS_H

#include <stddef.h>

struct tr_progress {
	/* called after every change; `phase_changed` is 1 on the first call of a phase */
	void (*show)(void *ctx, const struct tr_progress *p, int phase_changed);
	void *ctx;
	const char *what; /* the verb: "fit" */
	int log_steps;	  /* every step is worth a line of its own in a log (a sweep's cells) */
	char phase[160];
	size_t done, total; /* steps of the phase; total 0: not counted */
	double start, phase_start;
};

/* Starts the clock of p (what names the work). */
void tr_progress_init(struct tr_progress *p, const char *what);
/* A new phase, named by a printf format; its steps are not counted until tr_progress_step. */
void tr_progress_phase(struct tr_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* done of total steps of the current phase. */
void tr_progress_step(struct tr_progress *p, size_t done, size_t total);
/*
 * The line to show, e.g. "fit: gate ltt-plan: 3/7 (2.1 s elapsed, ETA 2.8 s)": the phase, its counts,
 * the time since tr_progress_init and, when steps are counted, the remaining time at the phase's rate.
 */
void tr_progress_line(const struct tr_progress *p, char *buf, size_t size);

#endif
