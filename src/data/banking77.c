/*
 * banking77.c - Banking77 (PolyAI) with the gold teacher and the cached GPT-4o zero-shot labels.
 *
 * The label space is categories.json. GPT-4o's `extracted_labels` is an index into those names sorted
 * case-insensitively; anything else (not an integer, out of range) is an invalid teacher answer.
 */
#include "loaders.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const header[] = {"text", "category", NULL};
static const char *const gpt_header[] = {"documents", "llm_responses", "actual_labels", "complete_responses",
					 "extracted_labels", NULL};

static int load_categories(const char *path, struct tr_labels *l, struct tr_err *e)
{
	json_t *j;
	if (tr_load_json(path, &j, e))
		return -1;
	size_t n = json_is_array(j) ? json_array_size(j) : 0;
	const char **names = tr_malloc(n * sizeof *names);
	int rc = -1;
	if (!json_is_array(j) || n == 0)
		tr_fail(e, "%s: expected a non-empty JSON list of category names", path);
	else if (!names)
		tr_fail(e, "%s: out of memory", path);
	else {
		size_t i;
		for (i = 0; i < n; i++)
			if (!(names[i] = json_string_value(json_array_get(j, i))))
				break;
		if (i < n)
			tr_fail(e, "%s: category %zu is not a string", path, i);
		else if (tr_labels_build(l, names, n, e) == 0) {
			rc = 0;
			if ((size_t)l->n != n) {
				tr_labels_free(l);
				rc = tr_fail(e, "%s: duplicated category names", path);
			}
		}
	}
	tr_free(names);
	json_decref(j);
	return rc;
}

/* Reads a `text,category` file into rows with gold = teacher = category. */
static int load_split(const char *path, const char *idprefix, const struct tr_labels *l, struct tr_rows *out,
		      struct tr_err *e)
{
	struct tr_csv csv;
	if (tr_load_csv(path, &csv, e))
		return -1;
	int rc = tr_csv_check_header(path, &csv, header, e);
	for (size_t i = 1; i < csv.n && !rc; i++) {
		const struct tr_csv_row *r = &csv.rows[i];
		if (r->nf != 2) {
			rc = tr_fail(e, "%s:%zu: expected 2 fields, got %zu", path, r->line, r->nf);
			break;
		}
		int y = tr_labels_find(l, r->f[1]);
		if (y < 0) {
			rc = tr_fail(e, "%s:%zu: unknown category \"%s\"", path, r->line, r->f[1]);
			break;
		}
		struct tr_trace t;
		if (tr_trace_make(&t, idprefix, i - 1, r->f[0], NULL, y, y) || tr_rows_push(out, t))
			rc = tr_fail(e, "%s: out of memory", path);
	}
	tr_csv_free(&csv);
	return rc;
}

/* paths: categories.json, train.csv, test.csv */
int tr_build_banking77_gold(char *const *paths, struct tr_traceset *ts, struct tr_err *e)
{
	if (load_categories(paths[0], &ts->labels, e))
		return -1;
	if (load_split(paths[1], "train:%zu", &ts->labels, &ts->part[TR_PART_TRACES], e) ||
	    load_split(paths[2], "test:%zu", &ts->labels, &ts->part[TR_PART_TEST], e))
		return -1;
	return 0;
}

static int cmp_ci(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* Parses a whole decimal integer; 0 on success. */
static int parse_index(const char *s, long *v)
{
	char *end;
	if (!*s)
		return -1;
	*v = strtol(s, &end, 10);
	return *end ? -1 : 0;
}

/* paths: categories.json, test.csv, the GPT-4o CSV */
int tr_build_banking77_gpt4o(char *const *paths, struct tr_traceset *ts, struct tr_err *e)
{
	struct tr_rows test = {0}, all = {0};
	struct tr_csv gpt = {0};
	const char **ci = NULL;
	int rc = -1;
	if (load_categories(paths[0], &ts->labels, e) ||
	    load_split(paths[1], "test:%zu", &ts->labels, &test, e) || tr_load_csv(paths[2], &gpt, e) ||
	    tr_csv_check_header(paths[2], &gpt, gpt_header, e))
		goto out;
	if (gpt.n - 1 != test.n) {
		tr_fail(e, "%s: %zu data rows, but %s has %zu", paths[2], gpt.n - 1, paths[1], test.n);
		goto out;
	}
	/* extracted_labels indexes the category names sorted case-insensitively */
	int k = ts->labels.n;
	if (!(ci = tr_malloc((size_t)k * sizeof *ci))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	memcpy(ci, ts->labels.names, (size_t)k * sizeof *ci);
	qsort(ci, (size_t)k, sizeof *ci, cmp_ci);
	size_t valid = 0, agree = 0;
	for (size_t i = 0; i < test.n; i++) {
		const struct tr_csv_row *r = &gpt.rows[i + 1];
		if (r->nf != 5) {
			tr_fail(e, "%s:%zu: expected 5 fields, got %zu", paths[2], r->line, r->nf);
			goto out;
		}
		if (strcmp(r->f[0], test.v[i].input) != 0) {
			tr_fail(e, "%s:%zu: document differs from test row %zu of %s", paths[2], r->line, i, paths[1]);
			goto out;
		}
		long idx;
		if (parse_index(r->f[4], &idx) || idx < 0 || idx >= k) {
			ts->n_invalid++;
			continue;
		}
		struct tr_trace t = test.v[i];
		memset(&test.v[i], 0, sizeof test.v[i]);
		t.teacher = tr_labels_find(&ts->labels, ci[idx]);
		valid++;
		agree += t.teacher == t.gold;
		if (tr_rows_push(&all, t)) {
			tr_fail(e, "out of memory");
			goto out;
		}
	}
	tr_set_note_source(ts, "teachers/banking77-test.gpt-4o-2024-08-06.csv", test.n, valid, agree);
	rc = tr_set_split_traffic(ts, &all, e);
out:
	tr_free(ci);
	tr_csv_free(&gpt);
	tr_rows_free(&test);
	tr_rows_free(&all);
	return rc;
}
