/*
 * sets.c - the named trace sets (DATASET:TEACHER), their zstd cache, and helpers for the loaders.
 *
 * A set is built from checked mirror files by its loader, then cached under CACHE/traces/ in a file
 * whose name carries a key made from the sources' SHA-256 sums and the cache format version: a changed
 * source, or a changed loader (bump TR_CACHE_VERSION), builds the set anew.
 */
#include "loaders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TR_CACHE_VERSION 1

static const char *const src_b77_gold[] = {"banking77/categories.json", "banking77/train.csv",
					   "banking77/test.csv", NULL};
static const char *const src_b77_gpt[] = {"banking77/categories.json", "banking77/test.csv",
					  "teachers/banking77-test.gpt-4o-2024-08-06.csv", NULL};
static const char *const src_clinc_gold[] = {"clinc150/data_full.json", NULL};
static const char *const src_clinc_lora[] = {"clinc150/data_full.json",
					     "teachers/clinc150-val.llama-3.2-1b-lora.jsonl",
					     "teachers/clinc150-test.llama-3.2-1b-lora.jsonl", NULL};
static const char *const src_mnli_gold[] = {"mnli/dev_matched.jsonl", NULL};
static const char *const src_mnli_phi[] = {"mnli/dev_matched.jsonl", "teachers/mnli-dev1k.prompts.csv",
					   "teachers/mnli-dev1k.phi-3-small-8k-instruct.output.json", NULL};

const struct tr_setdef tr_setdefs[] = {
	{"banking77:gold", src_b77_gold, "train.csv / test.csv, teacher = gold", tr_build_banking77_gold},
	{"banking77:gpt-4o", src_b77_gpt, "test.csv with GPT-4o labels, 70/30 split", tr_build_banking77_gpt4o},
	{"clinc150:gold", src_clinc_gold, "in-scope train+val / test, teacher = gold; oos kept apart",
	 tr_build_clinc150_gold},
	{"clinc150:llama-3.2-1b-lora", src_clinc_lora, "val+test with LoRA labels, 70/30 split",
	 tr_build_clinc150_lora},
	{"mnli:gold", src_mnli_gold, "dev_matched, 70/30 split by premise, teacher = gold", tr_build_mnli_gold},
	{"mnli:phi-3-small", src_mnli_phi, "1,024 dev pairs with Phi-3 labels, 70/30 split by premise",
	 tr_build_mnli_phi3},
};
const size_t tr_n_setdefs = sizeof tr_setdefs / sizeof tr_setdefs[0];

const struct tr_setdef *tr_setdef_find(const char *name)
{
	for (size_t i = 0; i < tr_n_setdefs; i++)
		if (strcmp(tr_setdefs[i].name, name) == 0)
			return &tr_setdefs[i];
	return NULL;
}

/* ---- helpers for the loaders ---- */

int tr_load_csv(const char *path, struct tr_csv *csv, struct tr_err *e)
{
	char *text;
	size_t len;
	memset(csv, 0, sizeof *csv);
	if (tr_read_file(path, &text, &len, e))
		return -1;
	int rc = tr_csv_parse(path, text, len, csv, e);
	tr_free(text);
	return rc;
}

int tr_load_json(const char *path, json_t **out, struct tr_err *e)
{
	char *text;
	size_t len;
	*out = NULL;
	if (tr_read_file(path, &text, &len, e))
		return -1;
	json_error_t jerr;
	*out = json_loadb(text, len, 0, &jerr);
	tr_free(text);
	if (!*out)
		return tr_fail(e, "%s:%d: malformed JSON: %s", path, jerr.line, jerr.text);
	return 0;
}

int tr_csv_check_header(const char *path, const struct tr_csv *csv, const char *const *names,
			struct tr_err *e)
{
	size_t n = 0;
	while (names[n])
		n++;
	if (csv->n == 0)
		return tr_fail(e, "%s:1: empty file, expected a header", path);
	const struct tr_csv_row *h = &csv->rows[0];
	int ok = h->nf == n;
	for (size_t i = 0; ok && i < n; i++)
		ok = strcmp(h->f[i], names[i]) == 0;
	if (!ok)
		return tr_fail(e, "%s:%zu: unexpected header (want %s,...: %zu fields)", path, h->line, names[0], n);
	return 0;
}

int tr_trace_make(struct tr_trace *t, const char *idfmt, size_t idn, const char *input,
		  const char *input_b, int teacher, int gold)
{
	char id[64];
	snprintf(id, sizeof id, idfmt, idn);
	*t = (struct tr_trace){.teacher = teacher, .gold = gold};
	t->id = tr_strdup(id);
	t->input = tr_strdup(input);
	if (input_b)
		t->input_b = tr_strdup(input_b);
	if (!t->id || !t->input || (input_b && !t->input_b)) {
		tr_free(t->id), tr_free(t->input), tr_free(t->input_b);
		return -1;
	}
	return 0;
}

void tr_set_note_source(struct tr_traceset *ts, const char *file, size_t rows, size_t valid, size_t agree)
{
	if (ts->n_src >= (int)(sizeof ts->src / sizeof ts->src[0]))
		return;
	struct tr_source_stat *s = &ts->src[ts->n_src++];
	snprintf(s->file, sizeof s->file, "%s", file);
	s->rows = rows;
	s->valid = valid;
	s->invalid = rows - valid;
	s->agree = agree;
}

int tr_set_split_traffic(struct tr_traceset *ts, struct tr_rows *all, struct tr_err *e)
{
	size_t n = all->n;
	int *part = tr_malloc((n ? n : 1) * sizeof *part);
	int rc = -1;
	ts->split_seed = TR_SET_SPLIT_SEED;
	static const double frac[2] = {0.7, 0.3};
	if (!part) {
		tr_fail(e, "out of memory");
		goto out;
	}
	if (tr_split_traces(all->v, NULL, n, frac, 2, TR_SET_SPLIT_SEED, 0, part, e))
		goto out;
	rc = 0;
	for (size_t i = 0; i < n; i++) {
		struct tr_trace t = all->v[i];
		memset(&all->v[i], 0, sizeof all->v[i]);
		if (!rc && tr_rows_push(&ts->part[part[i] == 0 ? TR_PART_TRACES : TR_PART_TEST], t))
			rc = tr_fail(e, "out of memory");
		else if (rc)
			tr_free(t.id), tr_free(t.input), tr_free(t.input_b), tr_free(t.group);
	}
out:
	tr_free(part);
	tr_rows_free(all);
	return rc;
}

/* ---- cache ---- */

static int dump_cb(const char *buf, size_t size, void *data)
{
	return tr_buf_add(data, buf, size);
}

static int cache_serialize(const struct tr_traceset *ts, struct tr_buf *b)
{
	json_t *h = json_pack("{s:s, s:i, s:s, s:[], s:I, s:b, s:I, s:[]}", "format", "tracer-traceset",
			      "version", TR_CACHE_VERSION, "name", ts->name, "labels", "invalid",
			      (json_int_t)ts->n_invalid, "pairs", ts->pairs, "split_seed",
			      (json_int_t)ts->split_seed, "sources");
	if (!h)
		return -1;
	int bad = 0;
	for (int i = 0; i < ts->labels.n; i++)
		bad |= json_array_append_new(json_object_get(h, "labels"), json_string(ts->labels.names[i]));
	for (int i = 0; i < ts->n_src; i++) {
		const struct tr_source_stat *s = &ts->src[i];
		bad |= json_array_append_new(json_object_get(h, "sources"),
					     json_pack("{s:s, s:I, s:I, s:I}", "file", s->file, "rows",
						       (json_int_t)s->rows, "valid", (json_int_t)s->valid,
						       "agree", (json_int_t)s->agree));
	}
	if (ts->extra_label)
		bad |= json_object_set_new(h, "extra_label", json_string(ts->extra_label));
	bad |= json_dump_callback(h, dump_cb, b, JSON_COMPACT | JSON_PRESERVE_ORDER) || tr_buf_add(b, "\n", 1);
	json_decref(h);
	for (int p = 0; p < TR_NPARTS && !bad; p++)
		for (size_t i = 0; i < ts->part[p].n && !bad; i++) {
			const struct tr_trace *t = &ts->part[p].v[i];
			json_t *o = json_pack("{s:i, s:s, s:s, s:i, s:i}", "part", p, "id", t->id, "input", t->input,
					      "teacher", t->teacher, "gold", t->gold);
			bad |= !o || (t->input_b && json_object_set_new(o, "input_b", json_string(t->input_b))) ||
			       json_dump_callback(o, dump_cb, b, JSON_COMPACT | JSON_PRESERVE_ORDER) ||
			       tr_buf_add(b, "\n", 1);
			json_decref(o);
		}
	return bad ? -1 : 0;
}

/* Reads a cache file; any problem means "no cache" (the set is rebuilt), so errors are not reported. */
static int cache_read(const char *path, struct tr_traceset *ts)
{
	char *z, *text = NULL;
	size_t zn, len;
	struct tr_err e;
	memset(ts, 0, sizeof *ts);
	if (!tr_file_exists(path) || tr_read_file(path, &z, &zn, &e))
		return -1;
	int rc = tr_zstd_decompress(z, zn, path, &text, &len, &e);
	tr_free(z);
	if (rc)
		return -1;
	rc = -1;
	char *line = text, *nl;
	json_t *h = NULL;
	if (!(nl = strchr(line, '\n')))
		goto out;
	h = json_loadb(line, (size_t)(nl - line), 0, NULL);
	json_t *labels = json_object_get(h, "labels"), *srcs = json_object_get(h, "sources");
	if (!h || json_integer_value(json_object_get(h, "version")) != TR_CACHE_VERSION ||
	    !json_is_array(labels) || !json_is_array(srcs))
		goto out;
	size_t nl_ = json_array_size(labels);
	const char **names = tr_malloc(nl_ * sizeof *names);
	if (!names)
		goto out;
	for (size_t i = 0; i < nl_; i++)
		names[i] = json_string_value(json_array_get(labels, i));
	for (size_t i = 0; i < nl_; i++)
		if (!names[i])
			nl_ = 0;
	int bad = nl_ == 0 || tr_labels_build(&ts->labels, names, nl_, NULL) || (size_t)ts->labels.n != nl_;
	tr_free(names);
	if (bad)
		goto out;
	ts->n_invalid = (size_t)json_integer_value(json_object_get(h, "invalid"));
	ts->pairs = json_is_true(json_object_get(h, "pairs"));
	ts->split_seed = (uint64_t)json_integer_value(json_object_get(h, "split_seed"));
	const char *xl = json_string_value(json_object_get(h, "extra_label"));
	if (!(ts->name = tr_strdup(json_string_value(json_object_get(h, "name")))) ||
	    (xl && !(ts->extra_label = tr_strdup(xl))))
		goto out;
	for (size_t i = 0; i < json_array_size(srcs); i++) {
		json_t *s = json_array_get(srcs, i);
		size_t rows = (size_t)json_integer_value(json_object_get(s, "rows"));
		size_t valid = (size_t)json_integer_value(json_object_get(s, "valid"));
		tr_set_note_source(ts, json_string_value(json_object_get(s, "file")) ? json_string_value(json_object_get(s, "file")) : "?", rows, valid,
				   (size_t)json_integer_value(json_object_get(s, "agree")));
	}
	for (line = nl + 1; *line; line = nl + 1) {
		if (!(nl = strchr(line, '\n')))
			goto out;
		json_t *o = json_loadb(line, (size_t)(nl - line), 0, NULL);
		json_int_t p = json_integer_value(json_object_get(o, "part"));
		json_int_t t = json_integer_value(json_object_get(o, "teacher"));
		json_int_t g = json_integer_value(json_object_get(o, "gold"));
		const char *id = json_string_value(json_object_get(o, "id"));
		const char *in = json_string_value(json_object_get(o, "input"));
		const char *b = json_string_value(json_object_get(o, "input_b"));
		struct tr_trace tr;
		int ok = o && id && in && p >= 0 && p < TR_NPARTS && t >= -1 && t < ts->labels.n && g >= -1 &&
			 g < ts->labels.n && tr_trace_make(&tr, "%zu", 0, in, b, (int)t, (int)g) == 0;
		if (ok) {
			tr_free(tr.id);
			ok = (tr.id = tr_strdup(id)) != NULL;
			if (!ok)
				tr_free(tr.input), tr_free(tr.input_b);
		}
		json_decref(o);
		if (!ok || tr_rows_push(&ts->part[p], tr))
			goto out;
	}
	rc = 0;
out:
	json_decref(h);
	tr_free(text);
	if (rc)
		tr_traceset_free(ts);
	return rc;
}

int tr_traceset_load(const struct tr_datactx *ctx, const char *name, struct tr_traceset *ts,
		     struct tr_err *e)
{
	memset(ts, 0, sizeof *ts);
	const struct tr_setdef *def = tr_setdef_find(name);
	if (!def)
		return tr_fail(e, "unknown trace set \"%s\" (`tracer datasets list` shows them)", name);
	char paths[4][PATH_MAX], *pp[4];
	struct tr_buf key = {0};
	int n = 0, rc = -1;
	if (tr_buf_printf(&key, "tracer-traceset %d\n%s\n", TR_CACHE_VERSION, name))
		goto oom;
	for (; def->sources[n]; n++) {
		char sha[65];
		pp[n] = paths[n];
		if (tr_data_locate(ctx, def->sources[n], paths[n], sha, e))
			goto out;
		if (tr_buf_printf(&key, "%s %s\n", sha, def->sources[n]))
			goto oom;
		snprintf(ts->inputs[n].path, sizeof ts->inputs[n].path, "%s", def->sources[n]);
		memcpy(ts->inputs[n].sha256, sha, 65);
	}
	int n_inputs = n;
	char hex[65], cache[PATH_MAX], dir[PATH_MAX];
	tr_sha256_hex(key.data, key.len, hex);
	snprintf(dir, sizeof dir, "%s/traces", ctx->cache_dir);
	snprintf(cache, sizeof cache, "%s/%s.%.16s.jsonl.zst", dir, name, hex);
	for (char *c = strrchr(cache, '/'); *c; c++) /* "banking77:gold" -> "banking77_gold" */
		if (*c == ':')
			*c = '_';
	struct tr_input_ref inputs[4];
	memcpy(inputs, ts->inputs, sizeof inputs);
	if (cache_read(cache, ts) == 0 && strcmp(ts->name, name) == 0) {
		memcpy(ts->inputs, inputs, sizeof inputs);
		ts->n_inputs = n_inputs;
		rc = 0;
		goto out;
	}
	tr_traceset_free(ts);
	memcpy(ts->inputs, inputs, sizeof inputs);
	ts->n_inputs = n_inputs;
	if (!(ts->name = tr_strdup(name)))
		goto oom;
	if (def->build(pp, ts, e))
		goto out;
	/* The cache is an optimisation: failing to write it (read-only tree) is not an error. */
	struct tr_buf b = {0};
	char *z;
	size_t zn;
	if (cache_serialize(ts, &b) == 0 && tr_zstd_compress(b.data, b.len, &z, &zn, NULL) == 0) {
		if (tr_mkdirs(dir, NULL) == 0)
			tr_write_atomic(cache, z, zn, NULL);
		tr_free(z);
	}
	tr_buf_free(&b);
	rc = 0;
	goto out;
oom:
	tr_fail(e, "%s: out of memory", name);
out:
	tr_buf_free(&key);
	if (rc)
		tr_traceset_free(ts);
	return rc;
}

int tr_traceset_open(const char *spec, struct tr_traceset *ts, struct tr_err *e)
{
	memset(ts, 0, sizeof *ts);
	if (strchr(spec, ':') && !tr_file_exists(spec)) {
		struct tr_datactx ctx;
		if (tr_data_open(&ctx, e))
			return -1;
		int rc = tr_traceset_load(&ctx, spec, ts, e);
		tr_data_close(&ctx);
		return rc;
	}
	return tr_traces_load_jsonl(spec, ts, e);
}
