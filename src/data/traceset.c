/*
 * traceset.c - label spaces, rows of traces and trace sets.
 */
#include "data.h"

#include <stdlib.h>
#include <string.h>

const char *const tr_part_names[TR_NPARTS] = {"traces", "test", "extra"};

int tr_part_parse(const char *name)
{
	for (int i = 0; i < TR_NPARTS; i++)
		if (strcmp(name, tr_part_names[i]) == 0)
			return i;
	return -1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int tr_labels_build(struct tr_labels *l, const char *const *names, size_t n, struct tr_err *e)
{
	memset(l, 0, sizeof *l);
	if (n > INT32_MAX)
		return tr_fail(e, "too many labels (%zu)", n);
	const char **tmp = tr_malloc(n * sizeof *tmp);
	l->names = tr_calloc(n, sizeof *l->names);
	if (!tmp || !l->names) {
		tr_free(tmp);
		tr_labels_free(l);
		return tr_fail(e, "out of memory building a label space of %zu names", n);
	}
	memcpy(tmp, names, n * sizeof *tmp);
	qsort(tmp, n, sizeof *tmp, cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (l->n > 0 && strcmp(l->names[l->n - 1], tmp[i]) == 0)
			continue;
		if (!(l->names[l->n] = tr_strdup(tmp[i]))) {
			tr_free(tmp);
			tr_labels_free(l);
			return tr_fail(e, "out of memory building a label space");
		}
		l->n++;
	}
	tr_free(tmp);
	return 0;
}

int tr_labels_find(const struct tr_labels *l, const char *name)
{
	int lo = 0, hi = l->n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int c = strcmp(l->names[mid], name);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

void tr_labels_free(struct tr_labels *l)
{
	if (l->names)
		for (int i = 0; i < l->n; i++)
			tr_free(l->names[i]);
	tr_free(l->names);
	memset(l, 0, sizeof *l);
}

const char *tr_trace_group(const struct tr_trace *t)
{
	return t->group ? t->group : t->input;
}

static void trace_free(struct tr_trace *t)
{
	tr_free(t->id);
	tr_free(t->input);
	tr_free(t->input_b);
	tr_free(t->group);
}

int tr_rows_push(struct tr_rows *r, struct tr_trace t)
{
	if (tr_grow(&r->v, &r->cap, r->n + 1, sizeof *r->v)) {
		trace_free(&t);
		return -1;
	}
	r->v[r->n++] = t;
	return 0;
}

void tr_rows_free(struct tr_rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		trace_free(&r->v[i]);
	tr_free(r->v);
	memset(r, 0, sizeof *r);
}

void tr_traceset_free(struct tr_traceset *ts)
{
	if (!ts)
		return;
	tr_free(ts->name);
	tr_free(ts->extra_label);
	tr_labels_free(&ts->labels);
	for (int i = 0; i < TR_NPARTS; i++)
		tr_rows_free(&ts->part[i]);
	memset(ts, 0, sizeof *ts);
}

void tr_traceset_agreement(const struct tr_traceset *ts, size_t *agree, size_t *n)
{
	*agree = *n = 0;
	for (int p = TR_PART_TRACES; p <= TR_PART_TEST; p++)
		for (size_t i = 0; i < ts->part[p].n; i++) {
			const struct tr_trace *t = &ts->part[p].v[i];
			if (t->gold < 0)
				continue;
			(*n)++;
			*agree += t->gold == t->teacher;
		}
}
