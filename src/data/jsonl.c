/*
 * jsonl.c - users' trace files: the reference tool's JSONL with its key aliases, and the export. One
 * line parser and one stream reader serve every command: whole files here, `route`'s standard input
 * line by line (src/cli/cmd_route.c).
 */
#include "data.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

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

/* ---- a string set (open addressing on XXH3) with a number per key ---- */

struct strmap {
	char **key;
	size_t *val;
	size_t n, cap; /* cap is 0 or a power of two */
};

static void strmap_free(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		tr_free(m->key[i]);
	tr_free(m->key), tr_free(m->val);
	memset(m, 0, sizeof *m);
}

static size_t strmap_slot(const struct strmap *m, const char *k)
{
	size_t i = (size_t)XXH3_64bits(k, strlen(k)) & (m->cap - 1);
	while (m->key[i] && strcmp(m->key[i], k) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* Finds k: returns 1 and its number in *found, or inserts a copy of k with val and returns 0; -1: no memory. */
static int strmap_put(struct strmap *m, const char *k, size_t val, size_t *found)
{
	if (2 * (m->n + 1) > m->cap) {
		struct strmap g = {.cap = m->cap ? 2 * m->cap : 64};
		g.key = tr_calloc(g.cap, sizeof *g.key);
		g.val = tr_calloc(g.cap, sizeof *g.val);
		if (!g.key || !g.val) {
			tr_free(g.key), tr_free(g.val);
			return -1;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->key[i]) {
				size_t j = strmap_slot(&g, m->key[i]);
				g.key[j] = m->key[i], g.val[j] = m->val[i];
			}
		g.n = m->n;
		tr_free(m->key), tr_free(m->val);
		*m = g;
	}
	size_t i = strmap_slot(m, k);
	if (m->key[i]) {
		*found = m->val[i];
		return 1;
	}
	if (!(m->key[i] = tr_strdup(k)))
		return -1;
	m->val[i] = val;
	m->n++;
	return 0;
}

/* ---- one line ---- */

int tr_trace_parse_line(const char *path, size_t lineno, const char *s, size_t len, int flags,
			struct tr_trace_line *out, struct tr_err *e)
{
	memset(out, 0, sizeof *out);
	out->t.teacher = out->t.gold = -1;
	json_error_t jerr;
	json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return tr_fail(e, "%s:%zu: malformed JSON: %s", path, lineno, jerr.text);
	const char *ik = NULL, *lk = NULL;
	json_t *in = NULL, *lab = NULL;
	if (!json_is_object(o)) {
		tr_fail(e, "%s:%zu: expected a JSON object", path, lineno);
		goto fail;
	}
	if (!(in = first_key(o, tr_input_keys, &ik))) {
		tr_fail(e, "%s:%zu: missing input (one of \"input\", \"query\", \"text\", \"prompt\", \"question\")",
			path, lineno);
		goto fail;
	}
	if (!json_is_string(in)) {
		tr_fail(e, "%s:%zu: \"%s\" is not a string", path, lineno, ik);
		goto fail;
	}
	json_t *gt = json_object_get(o, "ground_truth"), *id = json_object_get(o, "id");
	json_t *b = json_object_get(o, "input_b"), *grp = json_object_get(o, "group");
	if (flags & TR_LINE_LABEL) {
		if (!(lab = first_key(o, tr_label_keys, &lk))) {
			tr_fail(e, "%s:%zu: missing teacher label (one of \"teacher\", \"teacher_output\", \"label\", "
				   "\"intent\", \"output\", \"answer\")", path, lineno);
			goto fail;
		}
		if (json_is_null(lab) || (json_is_string(lab) && json_string_length(lab) == 0)) {
			tr_fail(e, "%s:%zu: \"%s\" is %s", path, lineno, lk, json_is_null(lab) ? "null" : "empty");
			goto fail;
		}
		if (!json_is_string(lab) && !json_is_integer(lab)) {
			tr_fail(e, "%s:%zu: \"%s\" is not a string or an integer", path, lineno, lk);
			goto fail;
		}
		if (gt && !json_is_null(gt) && !json_is_string(gt) && !json_is_integer(gt)) {
			tr_fail(e, "%s:%zu: \"ground_truth\" is not a string or an integer", path, lineno);
			goto fail;
		}
	}
	if (b && !json_is_null(b) && !json_is_string(b)) {
		tr_fail(e, "%s:%zu: \"input_b\" is not a string", path, lineno);
		goto fail;
	}
	if ((id && !json_is_null(id) && !json_is_string(id) && !json_is_integer(id)) ||
	    (grp && !json_is_null(grp) && !json_is_string(grp) && !json_is_integer(grp))) {
		tr_fail(e, "%s:%zu: \"%s\" is not a string or an integer", path, lineno,
			id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id) ? "id" : "group");
		goto fail;
	}
	char idbuf[32];
	snprintf(idbuf, sizeof idbuf, "line:%zu", lineno);
	struct tr_trace *t = &out->t;
	t->id = id && !json_is_null(id) ? scalar_text(id) : tr_strdup(idbuf);
	t->input = tr_strndup(json_string_value(in), json_string_length(in));
	int oom = !t->id || !t->input;
	if (b && json_is_string(b))
		oom |= !(t->input_b = tr_strndup(json_string_value(b), json_string_length(b)));
	if (grp && !json_is_null(grp))
		oom |= !(t->group = scalar_text(grp));
	if (lab) {
		oom |= !(out->teacher = scalar_text(lab));
		out->teacher_int = json_is_integer(lab);
		if (gt && !json_is_null(gt)) {
			oom |= !(out->gold = scalar_text(gt));
			out->gold_int = json_is_integer(gt);
		}
	}
	if (oom) {
		tr_fail(e, "%s:%zu: out of memory", path, lineno);
		goto fail;
	}
	if (flags & TR_LINE_KEEP_JSON)
		out->json = o;
	else
		json_decref(o);
	return 0;
fail:
	json_decref(o);
	tr_trace_line_free(out);
	return -1;
}

void tr_trace_line_free(struct tr_trace_line *l)
{
	tr_free(l->t.id), tr_free(l->t.input), tr_free(l->t.input_b), tr_free(l->t.group);
	tr_free(l->teacher), tr_free(l->gold);
	json_decref(l->json);
	memset(l, 0, sizeof *l);
	l->t.teacher = l->t.gold = -1;
}

const char *tr_trace_line_embedding(const struct tr_trace_line *l, int dim, double *out)
{
	json_t *emb = json_object_get(l->json, "embedding");
	if (!json_is_array(emb))
		return "missing \"embedding\" list";
	if (dim < 0 || json_array_size(emb) != (size_t)dim)
		return "\"embedding\" has the wrong dimension";
	for (size_t k = 0; k < json_array_size(emb); k++) {
		json_t *v = json_array_get(emb, k);
		if (!json_is_number(v) || !isfinite(json_number_value(v)))
			return "\"embedding\" holds a value that is not a finite number";
		out[k] = json_number_value(v);
	}
	return NULL;
}

/* ---- a stream of lines ---- */

struct tr_trace_reader {
	char *path;
	int flags;
	size_t lineno;
	struct strmap ids;    /* id -> line of its first use */
	struct strmap labels; /* label text -> 2 × line of its first use + 1 when it was an integer */
};

struct tr_trace_reader *tr_trace_reader_new(const char *path, int flags)
{
	struct tr_trace_reader *r = tr_calloc(1, sizeof *r);
	if (r && !(r->path = tr_strdup(path))) {
		tr_free(r);
		return NULL;
	}
	if (r)
		r->flags = flags;
	return r;
}

void tr_trace_reader_free(struct tr_trace_reader *r)
{
	if (!r)
		return;
	strmap_free(&r->ids);
	strmap_free(&r->labels);
	tr_free(r->path);
	tr_free(r);
}

size_t tr_trace_reader_lines(const struct tr_trace_reader *r)
{
	return r->lineno;
}

/* 1 and "1" would become one label: refuse it, naming both lines. */
static int check_label_type(struct tr_trace_reader *r, const char *name, int is_int, struct tr_err *e)
{
	size_t first;
	int got = strmap_put(&r->labels, name, 2 * r->lineno + (size_t)is_int, &first);
	if (got < 0)
		return tr_fail(e, "%s:%zu: out of memory", r->path, r->lineno);
	if (got == 1 && (int)(first & 1) != is_int)
		return tr_fail(e, "%s:%zu: label %s%s%s is %s here but %s on line %zu: write a label with one JSON type",
			       r->path, r->lineno, is_int ? "" : "\"", name, is_int ? "" : "\"",
			       is_int ? "an integer" : "a string", is_int ? "a string" : "an integer", first / 2);
	return 0;
}

int tr_trace_reader_line(struct tr_trace_reader *r, const char *s, size_t n, struct tr_trace_line *out, int *got,
			 struct tr_err *e)
{
	*got = 0;
	memset(out, 0, sizeof *out);
	out->t.teacher = out->t.gold = -1;
	r->lineno++;
	if (r->lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3, n -= 3;
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	size_t lead = 0;
	while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
		lead++;
	if (lead == n)
		return 0;
	if (tr_trace_parse_line(r->path, r->lineno, s + lead, n - lead, r->flags, out, e))
		return -1;
	size_t first;
	int dup = strmap_put(&r->ids, out->t.id, r->lineno, &first);
	if (dup < 0)
		tr_fail(e, "%s:%zu: out of memory", r->path, r->lineno);
	else if (dup)
		tr_fail(e, "%s:%zu: duplicated id \"%s\" (first on line %zu)", r->path, r->lineno, out->t.id, first);
	if (dup || (out->teacher && check_label_type(r, out->teacher, out->teacher_int, e)) ||
	    (out->gold && check_label_type(r, out->gold, out->gold_int, e))) {
		tr_trace_line_free(out);
		return -1;
	}
	*got = 1;
	return 0;
}

/* ---- whole files ---- */

struct pending {
	struct tr_rows rows;
	char **teacher, **gold; /* label text per row until the label space is known */
	size_t n_text;		/* entries of teacher and gold (rows.n until the rows move out) */
	size_t cap_t, cap_g;
};

static void pending_free(struct pending *pd)
{
	for (size_t i = 0; i < pd->n_text; i++) {
		tr_free(pd->teacher[i]);
		tr_free(pd->gold[i]);
	}
	tr_free(pd->teacher);
	tr_free(pd->gold);
	tr_rows_free(&pd->rows);
}

/* Moves a parsed line into pd (its strings change owner, on failure too). */
static int pending_add(const char *path, size_t lineno, struct pending *pd, struct tr_trace_line *l,
		       struct tr_err *e)
{
	if (tr_grow(&pd->teacher, &pd->cap_t, pd->rows.n + 1, sizeof *pd->teacher) ||
	    tr_grow(&pd->gold, &pd->cap_g, pd->rows.n + 1, sizeof *pd->gold)) {
		tr_trace_line_free(l);
		return tr_fail(e, "%s:%zu: out of memory", path, lineno);
	}
	pd->teacher[pd->rows.n] = l->teacher;
	pd->gold[pd->rows.n] = l->gold;
	pd->n_text = pd->rows.n + 1;
	l->teacher = l->gold = NULL;
	struct tr_trace t = l->t;
	memset(&l->t, 0, sizeof l->t);
	if (tr_rows_push(&pd->rows, t)) {
		tr_free(pd->teacher[pd->rows.n]);
		tr_free(pd->gold[pd->rows.n]);
		pd->n_text = pd->rows.n;
		return tr_fail(e, "%s:%zu: out of memory", path, lineno);
	}
	return 0;
}

int tr_traces_read_jsonl(const char *path, const char *text, size_t len, struct tr_traceset *ts,
			 struct tr_err *e)
{
	memset(ts, 0, sizeof *ts);
	struct pending pd = {0};
	const char **names = NULL;
	int rc = -1;
	struct tr_trace_reader *r = tr_trace_reader_new(path, TR_LINE_LABEL);
	if (!r) {
		tr_fail(e, "%s: out of memory", path);
		goto out;
	}
	size_t pos = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		const char *s = text + pos;
		pos += n + (nl != NULL);
		struct tr_trace_line l;
		int got;
		if (tr_trace_reader_line(r, s, n, &l, &got, e) ||
		    (got && pending_add(path, tr_trace_reader_lines(r), &pd, &l, e)))
			goto out;
	}
	if (pd.rows.n == 0) {
		size_t lines = tr_trace_reader_lines(r);
		tr_fail(e, "%s:%zu: no traces in the file", path, lines ? lines : 1);
		goto out;
	}
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
	tr_trace_reader_free(r);
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
