/*
 * csv.c - RFC 4180 CSV through libcsv, with the line each record starts on for error messages.
 *
 * libcsv is fed one physical line at a time so that we know which line a record ends on; the start
 * line is that minus the newlines inside the record's quoted fields.
 */
#include "data.h"

#include <csv.h>
#include <string.h>

struct csv_state {
	struct tr_csv *out;
	struct tr_csv_row cur;
	size_t cap;	 /* capacity of cur.f */
	size_t line;	 /* line being fed */
	size_t inner_nl; /* newlines inside the current record's fields */
	int oom;
};

static void on_field(void *s, size_t len, void *data)
{
	struct csv_state *st = data;
	if (st->oom)
		return;
	const char *p = s ? s : "";
	if (!s)
		len = 0;
	for (size_t i = 0; i < len; i++)
		st->inner_nl += p[i] == '\n';
	char *f = tr_strndup(p, len);
	if (!f || tr_grow(&st->cur.f, &st->cap, st->cur.nf + 1, sizeof *st->cur.f)) {
		tr_free(f);
		st->oom = 1;
		return;
	}
	st->cur.f[st->cur.nf++] = f;
}

static void free_row(struct tr_csv_row *r)
{
	for (size_t i = 0; i < r->nf; i++)
		tr_free(r->f[i]);
	tr_free(r->f);
	memset(r, 0, sizeof *r);
}

static void on_row(int c, void *data)
{
	(void)c;
	struct csv_state *st = data;
	if (st->oom)
		return;
	st->cur.line = st->line - st->inner_nl;
	if (tr_grow(&st->out->rows, &st->out->cap, st->out->n + 1, sizeof *st->out->rows)) {
		st->oom = 1;
		return;
	}
	st->out->rows[st->out->n++] = st->cur;
	memset(&st->cur, 0, sizeof st->cur);
	st->cap = 0;
	st->inner_nl = 0;
}

int tr_csv_parse(const char *path, const char *data, size_t len, struct tr_csv *out, struct tr_err *e)
{
	memset(out, 0, sizeof *out);
	struct csv_parser p;
	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
		return tr_fail(e, "%s: cannot start the CSV parser", path);
	csv_set_realloc_func(&p, tr_realloc);
	csv_set_free_func(&p, tr_free);
	struct csv_state st = {.out = out};
	if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
		data += 3, len -= 3;
	size_t pos = 0;
	int rc = 0;
	while (pos < len && !rc) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t chunk = nl ? (size_t)(nl - (data + pos)) + 1 : len - pos;
		st.line++;
		if (memchr(data + pos, '\0', chunk))
			rc = tr_fail(e, "%s:%zu: NUL byte in CSV", path, st.line);
		else if (!tr_utf8_valid(data + pos, chunk))
			rc = tr_fail(e, "%s:%zu: invalid UTF-8", path, st.line);
		else if (csv_parse(&p, data + pos, chunk, on_field, on_row, &st) != chunk)
			rc = tr_fail(e, "%s:%zu: malformed CSV: %s", path, st.line, csv_strerror(csv_error(&p)));
		else if (st.oom)
			rc = tr_fail(e, "%s:%zu: out of memory", path, st.line);
		pos += chunk;
	}
	if (!rc && csv_fini(&p, on_field, on_row, &st) != 0)
		rc = tr_fail(e, "%s:%zu: malformed CSV at end of file: %s", path, st.line,
			     csv_strerror(csv_error(&p)));
	if (!rc && st.oom)
		rc = tr_fail(e, "%s: out of memory", path);
	csv_free(&p);
	free_row(&st.cur);
	if (rc)
		tr_csv_free(out);
	return rc;
}

void tr_csv_free(struct tr_csv *c)
{
	for (size_t i = 0; i < c->n; i++)
		free_row(&c->rows[i]);
	tr_free(c->rows);
	memset(c, 0, sizeof *c);
}
