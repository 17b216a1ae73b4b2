/*
 * progress.c - phases, counts, elapsed time and ETA of long work, formatted for whoever shows them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "progress.h"

void tr_progress_init(struct tr_progress *p, const char *what)
{
	p->what = what;
	p->phase[0] = 0;
	p->done = p->total = 0;
	p->log_steps = 0;
	p->start = p->phase_start = tr_now();
}

void tr_progress_phase(struct tr_progress *p, const char *fmt, ...)
{
	if (!p)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->phase, sizeof p->phase, fmt, ap);
	va_end(ap);
	p->done = p->total = 0;
	p->phase_start = tr_now();
	if (p->show)
		p->show(p->ctx, p, 1);
}

void tr_progress_step(struct tr_progress *p, size_t done, size_t total)
{
	if (!p)
		return;
	p->done = done, p->total = total;
	if (p->show)
		p->show(p->ctx, p, 0);
}

void tr_progress_line(const struct tr_progress *p, char *buf, size_t size)
{
	double now = tr_now(), el = now - p->start, in = now - p->phase_start;
	int k = snprintf(buf, size, "%s: %s", p->what, p->phase);
	if (k < 0 || (size_t)k >= size)
		return;
	if (p->total)
		k += snprintf(buf + k, size - (size_t)k, ": %zu/%zu", p->done, p->total);
	if (k < 0 || (size_t)k >= size)
		return;
	k += snprintf(buf + k, size - (size_t)k, " (%.1f s elapsed", el);
	if (k > 0 && (size_t)k < size && p->total && p->done && p->done < p->total)
		k += snprintf(buf + k, size - (size_t)k, ", ETA %.0f s",
			      in / (double)p->done * (double)(p->total - p->done));
	if (k > 0 && (size_t)k < size)
		snprintf(buf + k, size - (size_t)k, ")");
}
