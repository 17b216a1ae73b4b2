/*
 * mnli.c - MultiNLI validation_matched pairs with the gold teacher and the cached Phi-3-small outputs.
 *
 * The Phi-3 outputs are not in prompt order: each output string begins with exactly one of the 1,024
 * prompts, and the model's answer is the first whole word 0/1/2/entailment/neutral/contradiction
 * (case-insensitive) after it. No such word means an invalid teacher answer.
 */
#include "loaders.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const nli_names[3] = {"entailment", "neutral", "contradiction"}; /* 0, 1, 2 */

static int nli_labels(struct tr_labels *l, struct tr_err *e)
{
	return tr_labels_build(l, nli_names, 3, e);
}

/* Reads dev_matched.jsonl: line k is GLUE idx k. Rows have gold = teacher = label. */
static int load_dev(const char *path, const struct tr_labels *l, struct tr_rows *out, struct tr_err *e)
{
	char *text;
	size_t len;
	if (tr_read_file(path, &text, &len, e))
		return -1;
	size_t lineno = 0, pos = 0;
	int rc = 0;
	while (pos < len && !rc) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		const char *s = text + pos;
		pos += n + (nl != NULL);
		lineno++;
		json_error_t jerr;
		json_t *o = json_loadb(s, n, 0, &jerr);
		const char *p = json_string_value(json_object_get(o, "premise"));
		const char *h = json_string_value(json_object_get(o, "hypothesis"));
		const char *y = json_string_value(json_object_get(o, "label"));
		int yi = y ? tr_labels_find(l, y) : -1;
		struct tr_trace t;
		if (!o)
			rc = tr_fail(e, "%s:%zu: malformed JSON: %s", path, lineno, jerr.text);
		else if (!p || !h || !y)
			rc = tr_fail(e, "%s:%zu: missing string \"%s\"", path, lineno,
				     !p ? "premise" : !h ? "hypothesis" : "label");
		else if (yi < 0)
			rc = tr_fail(e, "%s:%zu: unknown label \"%s\"", path, lineno, y);
		else if (tr_trace_make(&t, "dev:%zu", lineno - 1, p, h, yi, yi) || tr_rows_push(out, t))
			rc = tr_fail(e, "out of memory");
		json_decref(o);
	}
	tr_free(text);
	return rc;
}

/* paths: dev_matched.jsonl */
int tr_build_mnli_gold(char *const *paths, struct tr_traceset *ts, struct tr_err *e)
{
	struct tr_rows all = {0};
	ts->pairs = 1;
	int rc = -1;
	if (!nli_labels(&ts->labels, e) && !load_dev(paths[0], &ts->labels, &all, e))
		rc = tr_set_split_traffic(ts, &all, e);
	tr_rows_free(&all);
	return rc;
}

/* The label of the first whole word of s that names one, or -1. */
static int first_label_word(const char *s, const struct tr_labels *l)
{
	static const char *const words[6] = {"0", "1", "2", "entailment", "neutral", "contradiction"};
	while (*s) {
		while (*s && !isalnum((unsigned char)*s))
			s++;
		const char *w = s;
		while (*s && isalnum((unsigned char)*s))
			s++;
		size_t n = (size_t)(s - w);
		for (int k = 0; k < 6; k++)
			if (n == strlen(words[k]) && strncasecmp(w, words[k], n) == 0)
				return tr_labels_find(l, nli_names[k % 3]);
	}
	return -1;
}

static const char *const prompt_header[] = {"label", "idx", "prompt_text", NULL};

/* paths: dev_matched.jsonl, prompts CSV, Phi-3 output JSON */
int tr_build_mnli_phi3(char *const *paths, struct tr_traceset *ts, struct tr_err *e)
{
	struct tr_rows dev = {0}, all = {0};
	struct tr_csv pr = {0};
	json_t *out = NULL;
	int *owner = NULL; /* prompt -> output index */
	int rc = -1;
	ts->pairs = 1;
	if (nli_labels(&ts->labels, e) || load_dev(paths[0], &ts->labels, &dev, e) ||
	    tr_load_csv(paths[1], &pr, e) || tr_csv_check_header(paths[1], &pr, prompt_header, e) ||
	    tr_load_json(paths[2], &out, e))
		goto out;
	json_t *outs = json_array_get(out, 0);
	size_t np = pr.n - 1;
	if (!json_is_array(outs) || json_array_size(outs) != np) {
		tr_fail(e, "%s: expected [outputs, timestamps] with %zu outputs", paths[2], np);
		goto out;
	}
	if (!(owner = tr_malloc(np * sizeof *owner))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	for (size_t p = 0; p < np; p++) {
		const struct tr_csv_row *r = &pr.rows[p + 1];
		char *end;
		long idx = r->nf == 3 ? strtol(r->f[1], &end, 10) : -1;
		if (r->nf != 3 || *end || idx < 0 || (size_t)idx >= dev.n) {
			tr_fail(e, "%s:%zu: expected label,idx,prompt_text with idx in 0..%zu", paths[1], r->line,
				dev.n - 1);
			goto out;
		}
		long lab = strtol(r->f[0], &end, 10);
		if (*end || lab < 0 || lab > 2 ||
		    tr_labels_find(&ts->labels, nli_names[lab]) != dev.v[idx].gold) {
			tr_fail(e, "%s:%zu: label \"%s\" disagrees with %s line %ld", paths[1], r->line, r->f[0],
				paths[0], idx + 1);
			goto out;
		}
		owner[p] = -1;
	}
	for (size_t o = 0; o < np; o++) {
		const char *s = json_string_value(json_array_get(outs, o));
		if (!s) {
			tr_fail(e, "%s: output %zu is not a string", paths[2], o);
			goto out;
		}
		size_t match = np;
		for (size_t p = 0; p < np; p++) {
			const char *q = pr.rows[p + 1].f[2];
			if (strncmp(s, q, strlen(q)) != 0)
				continue;
			if (match != np) {
				tr_fail(e, "%s: output %zu starts with two prompts (%s lines %zu and %zu)", paths[2], o,
					paths[1], pr.rows[match + 1].line, pr.rows[p + 1].line);
				goto out;
			}
			match = p;
		}
		if (match == np || owner[match] >= 0) {
			tr_fail(e, "%s: output %zu %s", paths[2], o,
				match == np ? "starts with no prompt" : "repeats a prompt already answered");
			goto out;
		}
		owner[match] = (int)o;
	}
	size_t valid = 0, agree = 0;
	for (size_t p = 0; p < np; p++) {
		const char *s = json_string_value(json_array_get(outs, (size_t)owner[p]));
		int y = first_label_word(s + strlen(pr.rows[p + 1].f[2]), &ts->labels);
		if (y < 0) {
			ts->n_invalid++;
			continue;
		}
		const struct tr_trace *d = &dev.v[strtol(pr.rows[p + 1].f[1], NULL, 10)];
		struct tr_trace t = {0};
		if (!(t.id = tr_strdup(d->id)) || !(t.input = tr_strdup(d->input)) ||
		    !(t.input_b = tr_strdup(d->input_b))) {
			tr_free(t.id), tr_free(t.input), tr_free(t.input_b);
			tr_fail(e, "out of memory");
			goto out;
		}
		t.teacher = y;
		t.gold = d->gold;
		valid++;
		agree += y == d->gold;
		if (tr_rows_push(&all, t)) {
			tr_fail(e, "out of memory");
			goto out;
		}
	}
	tr_set_note_source(ts, "teachers/mnli-dev1k.phi-3-small-8k-instruct.output.json", np, valid, agree);
	rc = tr_set_split_traffic(ts, &all, e);
out:
	tr_free(owner);
	json_decref(out);
	tr_csv_free(&pr);
	tr_rows_free(&dev);
	tr_rows_free(&all);
	return rc;
}
