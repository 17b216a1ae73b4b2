/*
 * clinc150.c - CLINC150 "full" (150 in-scope intents plus out-of-scope items) with the gold teacher and
 * the cached Llama-3.2-1B LoRA predictions on val and test (aligned by position).
 */
#include "loaders.h"

#include <string.h>

/* The [text, intent] items of one key of data_full.json; NULL with e set when malformed. */
static json_t *items(const char *path, json_t *root, const char *key, struct tr_err *e)
{
	json_t *a = json_object_get(root, key);
	if (!json_is_array(a)) {
		tr_fail(e, "%s: missing list \"%s\"", path, key);
		return NULL;
	}
	size_t i;
	json_t *it;
	json_array_foreach(a, i, it)
	{
		if (!json_is_array(it) || json_array_size(it) != 2 || !json_is_string(json_array_get(it, 0)) ||
		    !json_is_string(json_array_get(it, 1))) {
			tr_fail(e, "%s: %s[%zu]: expected [text, intent]", path, key, i);
			return NULL;
		}
	}
	return a;
}

static const char *item_text(json_t *a, size_t i)
{
	return json_string_value(json_array_get(json_array_get(a, i), 0));
}

static const char *item_intent(json_t *a, size_t i)
{
	return json_string_value(json_array_get(json_array_get(a, i), 1));
}

/* Label space = the intents of the in-scope train items. */
static int build_labels(const char *path, json_t *train, struct tr_labels *l, struct tr_err *e)
{
	size_t n = json_array_size(train);
	const char **names = tr_malloc(n * sizeof *names);
	if (!names)
		return tr_fail(e, "out of memory");
	for (size_t i = 0; i < n; i++)
		names[i] = item_intent(train, i);
	int rc = tr_labels_build(l, names, n, e);
	tr_free(names);
	if (!rc && tr_labels_find(l, "oos") >= 0)
		rc = tr_fail(e, "%s: \"oos\" among the in-scope train intents", path);
	return rc;
}

/* Appends in-scope items as gold-teacher traces; every intent must be in the label space. */
static int add_items(const char *path, json_t *a, const char *key, const struct tr_labels *l,
		     struct tr_rows *out, struct tr_err *e)
{
	char idfmt[64];
	snprintf(idfmt, sizeof idfmt, "%s:%%zu", key);
	for (size_t i = 0; i < json_array_size(a); i++) {
		int y = l ? tr_labels_find(l, item_intent(a, i)) : -1;
		if (l && y < 0)
			return tr_fail(e, "%s: %s[%zu]: unknown intent \"%s\"", path, key, i, item_intent(a, i));
		struct tr_trace t;
		if (tr_trace_make(&t, idfmt, i, item_text(a, i), NULL, y, y) || tr_rows_push(out, t))
			return tr_fail(e, "out of memory");
	}
	return 0;
}

/* paths: data_full.json */
int tr_build_clinc150_gold(char *const *paths, struct tr_traceset *ts, struct tr_err *e)
{
	const char *path = paths[0];
	json_t *root, *tr, *va, *te;
	if (tr_load_json(path, &root, e))
		return -1;
	int rc = -1;
	static const char *const oos_keys[] = {"oos_train", "oos_val", "oos_test"};
	if (!(tr = items(path, root, "train", e)) || !(va = items(path, root, "val", e)) ||
	    !(te = items(path, root, "test", e)) || build_labels(path, tr, &ts->labels, e) ||
	    add_items(path, tr, "train", &ts->labels, &ts->part[TR_PART_TRACES], e) ||
	    add_items(path, va, "val", &ts->labels, &ts->part[TR_PART_TRACES], e) ||
	    add_items(path, te, "test", &ts->labels, &ts->part[TR_PART_TEST], e))
		goto out;
	for (int k = 0; k < 3; k++) {
		json_t *a = items(path, root, oos_keys[k], e);
		if (!a || add_items(path, a, oos_keys[k], NULL, &ts->part[TR_PART_EXTRA], e))
			goto out;
	}
	if (!(ts->extra_label = tr_strdup("oos"))) {
		tr_fail(e, "out of memory");
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/*
 * Reads one LoRA prediction file aligned with the data_full items `a`; valid rows are appended to all.
 */
static int add_lora(struct tr_traceset *ts, const char *path, const char *file, json_t *a, const char *key,
		    struct tr_rows *all, struct tr_err *e)
{
	char *text;
	size_t len;
	if (tr_read_file(path, &text, &len, e))
		return -1;
	size_t lineno = 0, valid = 0, agree = 0, pos = 0;
	int rc = 0;
	char idfmt[64];
	snprintf(idfmt, sizeof idfmt, "%s:%%zu", key);
	while (pos < len && !rc) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		const char *s = text + pos;
		pos += n + (nl != NULL);
		if (n == 0)
			continue;
		size_t i = lineno++;
		if (i >= json_array_size(a)) {
			rc = tr_fail(e, "%s:%zu: more predictions than %s items (%zu)", path, lineno, key,
				     json_array_size(a));
			break;
		}
		json_error_t jerr;
		json_t *o = json_loadb(s, n, 0, &jerr);
		json_t *pred = json_object_get(o, "predicted_label");
		if (!o || !json_is_string(pred)) {
			rc = tr_fail(e, "%s:%zu: %s", path, lineno,
				     o ? "missing string \"predicted_label\"" : jerr.text);
			json_decref(o);
			break;
		}
		int y = tr_labels_find(&ts->labels, item_intent(a, i));
		int t = tr_labels_find(&ts->labels, json_string_value(pred));
		json_decref(o);
		if (y < 0) {
			rc = tr_fail(e, "%s: %s[%zu]: unknown intent \"%s\"", path, key, i, item_intent(a, i));
			break;
		}
		if (t < 0) {
			ts->n_invalid++;
			continue;
		}
		valid++;
		agree += t == y;
		struct tr_trace tr;
		if (tr_trace_make(&tr, idfmt, i, item_text(a, i), NULL, t, y) || tr_rows_push(all, tr))
			rc = tr_fail(e, "out of memory");
	}
	if (!rc && lineno != json_array_size(a))
		rc = tr_fail(e, "%s:%zu: %zu predictions for %zu %s items", path, lineno, lineno,
			     json_array_size(a), key);
	if (!rc)
		tr_set_note_source(ts, file, lineno, valid, agree);
	tr_free(text);
	return rc;
}

/* paths: data_full.json, val predictions, test predictions */
int tr_build_clinc150_lora(char *const *paths, struct tr_traceset *ts, struct tr_err *e)
{
	json_t *root, *tr, *va, *te;
	struct tr_rows all = {0};
	if (tr_load_json(paths[0], &root, e))
		return -1;
	int rc = -1;
	if (!(tr = items(paths[0], root, "train", e)) || !(va = items(paths[0], root, "val", e)) ||
	    !(te = items(paths[0], root, "test", e)) || build_labels(paths[0], tr, &ts->labels, e) ||
	    add_lora(ts, paths[1], "teachers/clinc150-val.llama-3.2-1b-lora.jsonl", va, "val", &all, e) ||
	    add_lora(ts, paths[2], "teachers/clinc150-test.llama-3.2-1b-lora.jsonl", te, "test", &all, e))
		goto out;
	rc = tr_set_split_traffic(ts, &all, e);
out:
	tr_rows_free(&all);
	json_decref(root);
	return rc;
}
