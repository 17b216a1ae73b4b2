/*
 * jsonl.c - users' trace files: the reference tool's JSONL with its key aliases, and the export.
 */
#include "data.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tr_input_keys[] = {"input", "query", "text", "prompt", "question", NULL};
const char *const tr_label_keys[] = {"teacher", "teacher_output", "label", "intent", "output", "answer", NULL};

static json_t *first_key(json_t *obj, const char *const *keys, const char **which)
{
	for (int i = 0; keys[i]; i++) {
		json_t *v = json_object_get(obj, keys[i]);
		if (v) {
			*which = keys[i];
			return v;
		}
	}
	return NULL;
}

/* A label or id value as text: strings as they are, integers in decimal. NULL for anything else. */
static char *scalar_text(json_t *v)
{
	if (json_is_string(v))
		return tr_strndup(json_string_value(v), json_string_length(v));
	if (json_is_integer(v)) {
		char buf[32];
		snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return tr_strdup(buf);
	}
	return NULL;
}

struct pending {
	struct tr_rows rows;
	char **teacher, **gold; /* label text per row until the label space is known */
	size_t *line;		/* line of each row */
	size_t n_text;		/* entries of teacher and gold (rows.n until the rows move out) */
	size_t cap_t, cap_g, cap_l;
};

static void pending_free(struct pending *pd)
{
	for (size_t i = 0; i < pd->n_text; i++) {
		tr_free(pd->teacher[i]);
		tr_free(pd->gold[i]);
	}
	tr_free(pd->teacher);
	tr_free(pd->gold);
	tr_free(pd->line);
	tr_rows_free(&pd->rows);
}

/* Parses one non-blank line into pd. Returns 0, or -1 with e set. */
static int parse_line(const char *path, size_t lineno, const char *s, size_t len, struct pending *pd,
		      struct tr_err *e)
{
	json_error_t jerr;
	json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return tr_fail(e, "%s:%zu: malformed JSON: %s", path, lineno, jerr.text);
	int rc = -1;
	const char *ik = NULL, *lk = NULL;
	json_t *in = NULL, *lab = NULL;
	char *teacher = NULL, *gold = NULL;
	struct tr_trace t = {.teacher = -1, .gold = -1};
	if (!json_is_object(o)) {
		tr_fail(e, "%s:%zu: expected a JSON object", path, lineno);
		goto out;
	}
	if (!(in = first_key(o, tr_input_keys, &ik))) {
		tr_fail(e, "%s:%zu: missing input (one of \"input\", \"query\", \"text\", \"prompt\", \"question\")",
			path, lineno);
		goto out;
	}
	if (!json_is_string(in)) {
		tr_fail(e, "%s:%zu: \"%s\" is not a string", path, lineno, ik);
		goto out;
	}
	if (!(lab = first_key(o, tr_label_keys, &lk))) {
		tr_fail(e, "%s:%zu: missing teacher label (one of \"teacher\", \"teacher_output\", \"label\", "
			   "\"intent\", \"output\", \"answer\")", path, lineno);
		goto out;
	}
	if (json_is_null(lab) || (json_is_string(lab) && json_string_length(lab) == 0)) {
		tr_fail(e, "%s:%zu: \"%s\" is %s", path, lineno, lk, json_is_null(lab) ? "null" : "empty");
		goto out;
	}
	if (!json_is_string(lab) && !json_is_integer(lab)) {
		tr_fail(e, "%s:%zu: \"%s\" is not a string or an integer", path, lineno, lk);
		goto out;
	}
	json_t *gt = json_object_get(o, "ground_truth"), *id = json_object_get(o, "id");
	json_t *b = json_object_get(o, "input_b"), *grp = json_object_get(o, "group");
	if (gt && !json_is_null(gt) && !json_is_string(gt) && !json_is_integer(gt)) {
		tr_fail(e, "%s:%zu: \"ground_truth\" is not a string or an integer", path, lineno);
		goto out;
	}
	if (b && !json_is_null(b) && !json_is_string(b)) {
		tr_fail(e, "%s:%zu: \"input_b\" is not a string", path, lineno);
		goto out;
	}
	if ((id && !json_is_null(id) && !json_is_string(id) && !json_is_integer(id)) ||
	    (grp && !json_is_null(grp) && !json_is_string(grp) && !json_is_integer(grp))) {
		tr_fail(e, "%s:%zu: \"%s\" is not a string or an integer", path, lineno,
			id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id) ? "id" : "group");
		goto out;
	}
	char idbuf[32];
	snprintf(idbuf, sizeof idbuf, "line:%zu", lineno);
	t.id = id && !json_is_null(id) ? scalar_text(id) : tr_strdup(idbuf);
	t.input = tr_strndup(json_string_value(in), json_string_length(in));
	int oom = !t.id || !t.input;
	if (b && json_is_string(b))
		oom |= !(t.input_b = tr_strndup(json_string_value(b), json_string_length(b)));
	if (grp && !json_is_null(grp))
		oom |= !(t.group = scalar_text(grp));
	oom |= !(teacher = scalar_text(lab));
	if (gt && !json_is_null(gt))
		oom |= !(gold = scalar_text(gt));
	if (oom || tr_grow(&pd->teacher, &pd->cap_t, pd->rows.n + 1, sizeof *pd->teacher) ||
	    tr_grow(&pd->gold, &pd->cap_g, pd->rows.n + 1, sizeof *pd->gold) ||
	    tr_grow(&pd->line, &pd->cap_l, pd->rows.n + 1, sizeof *pd->line)) {
		tr_fail(e, "%s:%zu: out of memory", path, lineno);
		goto out;
	}
	pd->teacher[pd->rows.n] = teacher;
	pd->gold[pd->rows.n] = gold;
	pd->line[pd->rows.n] = lineno;
	pd->n_text = pd->rows.n + 1;
	teacher = gold = NULL;
	if (tr_rows_push(&pd->rows, t)) {
		memset(&t, 0, sizeof t);
		tr_free(pd->teacher[pd->rows.n]);
		tr_free(pd->gold[pd->rows.n]);
		pd->n_text = pd->rows.n;
		tr_fail(e, "%s:%zu: out of memory", path, lineno);
		goto out;
	}
	memset(&t, 0, sizeof t);
	rc = 0;
out:
	tr_free(t.id);
	tr_free(t.input);
	tr_free(t.input_b);
	tr_free(t.group);
	tr_free(teacher);
	tr_free(gold);
	json_decref(o);
	return rc;
}

static const struct tr_trace *sort_rows; /* qsort has no context argument; loading is single-threaded */

static int cmp_id(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(sort_rows[x].id, sort_rows[y].id);
	return c ? c : (x > y) - (x < y);
}

/* Two rows with one id make every later join (decisions to inputs, audit) ambiguous: refuse them. */
static int check_ids(const char *path, const struct pending *pd, struct tr_err *e)
{
	size_t n = pd->rows.n, *ix = tr_malloc(n * sizeof *ix);
	if (!ix)
		return tr_fail(e, "%s: out of memory", path);
	for (size_t i = 0; i < n; i++)
		ix[i] = i;
	sort_rows = pd->rows.v;
	qsort(ix, n, sizeof *ix, cmp_id);
	int rc = 0;
	for (size_t i = 1; i < n && !rc; i++)
		if (strcmp(pd->rows.v[ix[i]].id, pd->rows.v[ix[i - 1]].id) == 0)
			rc = tr_fail(e, "%s:%zu: duplicated id \"%s\" (first on line %zu)", path, pd->line[ix[i]],
				     pd->rows.v[ix[i]].id, pd->line[ix[i - 1]]);
	tr_free(ix);
	return rc;
}

int tr_traces_read_jsonl(const char *path, const char *text, size_t len, struct tr_traceset *ts,
			 struct tr_err *e)
{
	memset(ts, 0, sizeof *ts);
	struct pending pd = {0};
	const char **names = NULL;
	int rc = -1;
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		text += 3, len -= 3;
	size_t lineno = 0, pos = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		const char *s = text + pos;
		pos += n + (nl != NULL);
		lineno++;
		size_t m = n;
		while (m > 0 && (s[m - 1] == '\r' || s[m - 1] == ' ' || s[m - 1] == '\t'))
			m--;
		size_t lead = 0;
		while (lead < m && (s[lead] == ' ' || s[lead] == '\t'))
			lead++;
		if (lead == m)
			continue;
		if (parse_line(path, lineno, s + lead, m - lead, &pd, e))
			goto out;
	}
	if (pd.rows.n == 0) {
		tr_fail(e, "%s:%zu: no traces in the file", path, lineno ? lineno : 1);
		goto out;
	}
	if (check_ids(path, &pd, e))
		goto out;
	names = tr_malloc(2 * pd.rows.n * sizeof *names);
	if (!names) {
		tr_fail(e, "%s: out of memory", path);
		goto out;
	}
	size_t nn = 0;
	for (size_t i = 0; i < pd.rows.n; i++) {
		names[nn++] = pd.teacher[i];
		if (pd.gold[i])
			names[nn++] = pd.gold[i];
	}
	if (tr_labels_build(&ts->labels, names, nn, e))
		goto out;
	for (size_t i = 0; i < pd.rows.n; i++) {
		struct tr_trace *t = &pd.rows.v[i];
		t->teacher = tr_labels_find(&ts->labels, pd.teacher[i]);
		t->gold = pd.gold[i] ? tr_labels_find(&ts->labels, pd.gold[i]) : -1;
		ts->pairs |= t->input_b != NULL;
	}
	if (!(ts->name = tr_strdup(path))) {
		tr_fail(e, "%s: out of memory", path);
		goto out;
	}
	ts->part[TR_PART_TRACES] = pd.rows;
	memset(&pd.rows, 0, sizeof pd.rows);
	rc = 0;
out:
	tr_free(names);
	pending_free(&pd);
	if (rc)
		tr_traceset_free(ts);
	return rc;
}

int tr_traces_load_jsonl(const char *path, struct tr_traceset *ts, struct tr_err *e)
{
	char *text;
	size_t len;
	memset(ts, 0, sizeof *ts);
	if (tr_read_file(path, &text, &len, e))
		return -1;
	int rc = tr_traces_read_jsonl(path, text, len, ts, e);
	if (rc == 0) {
		snprintf(ts->inputs[0].path, sizeof ts->inputs[0].path, "%s", path);
		tr_sha256_hex(text, len, ts->inputs[0].sha256);
		ts->n_inputs = 1;
	}
	tr_free(text);
	return rc;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
	return tr_buf_add(data, buf, size);
}

int tr_traces_write_jsonl(const struct tr_traceset *ts, int part, struct tr_buf *out, struct tr_err *e)
{
	const struct tr_rows *r = &ts->part[part];
	for (size_t i = 0; i < r->n; i++) {
		const struct tr_trace *t = &r->v[i];
		const char *teacher = t->teacher >= 0 ? ts->labels.names[t->teacher] : ts->extra_label;
		const char *gold = t->gold >= 0 ? ts->labels.names[t->gold] : ts->extra_label;
		json_t *o = json_object();
		int bad = !o || json_object_set_new(o, "id", json_string(t->id)) ||
			  json_object_set_new(o, "input", json_string(t->input)) ||
			  (t->input_b && json_object_set_new(o, "input_b", json_string(t->input_b))) ||
			  json_object_set_new(o, "teacher", teacher ? json_string(teacher) : json_null()) ||
			  json_object_set_new(o, "ground_truth", gold ? json_string(gold) : json_null()) ||
			  (t->group && json_object_set_new(o, "group", json_string(t->group))) ||
			  json_dump_callback(o, dump_cb, out, JSON_COMPACT | JSON_PRESERVE_ORDER) ||
			  tr_buf_add(out, "\n", 1);
		json_decref(o);
		if (bad)
			return tr_fail(e, "%s: cannot write trace %s (out of memory or invalid UTF-8)", ts->name,
				       t->id);
	}
	return 0;
}
