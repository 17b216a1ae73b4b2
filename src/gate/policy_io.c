/*
 * policy_io.c - a fitted policy on disk. The directory holds manifest.json, frontier.json,
 * gate_audit.json, report.md, featurizer.txt, stageN.model.zst and acceptorN.model.zst for each deployed
 * stage, and ood.bin.zst. It is written into a private temporary directory beside DIR and renamed into
 * place, so a reader never sees half a policy; manifest.json, written last, carries the SHA-256 of every
 * other file, and loading checks them all before reading any.
 */
#define _GNU_SOURCE
#include "gate.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- acceptor files: "tracer-acceptor 1\n", mean, sd, has-model flag, surrogate bytes ---- */

static int acceptor_save(const struct tr_acceptor *a, struct tr_buf *b, struct tr_err *e)
{
	int32_t has = a->lr != NULL;
	if (tr_buf_puts(b, "tracer-acceptor 1\n") || tr_buf_add(b, a->mean, sizeof a->mean) ||
	    tr_buf_add(b, a->sd, sizeof a->sd) || tr_buf_add(b, &has, sizeof has))
		return tr_fail(e, "out of memory");
	return has ? tr_surrogate_save(a->lr, b, e) : 0;
}

static int acceptor_load(const char *what, const char *data, size_t len, struct tr_acceptor *a, struct tr_err *e)
{
	static const char magic[] = "tracer-acceptor 1\n";
	memset(a, 0, sizeof *a);
	struct tr_cursor c = {data, data + len};
	int32_t has;
	if (len < sizeof magic - 1 || memcmp(data, magic, sizeof magic - 1) != 0)
		return tr_fail(e, "%s:1: not a tracer acceptor (format 1)", what);
	c.p += sizeof magic - 1;
	if (tr_cursor_take(&c, a->mean, sizeof a->mean) || tr_cursor_take(&c, a->sd, sizeof a->sd) ||
	    tr_cursor_take(&c, &has, sizeof has))
		return tr_fail(e, "%s: truncated acceptor", what);
	if (!has)
		return 0;
	if (tr_surrogate_load(what, c.p, (size_t)(c.end - c.p), &a->lr, e))
		return -1;
	/* what training writes (acceptor.c): liblinear on two labels; scoring reads two probabilities a row */
	if (a->lr->fam != &tr_family_liblinear || a->lr->K != 2) {
		tr_fail(e, "%s: the acceptor must be a liblinear model of 2 labels, not %s of %d", what, a->lr->fam->name,
			a->lr->K);
		tr_surrogate_free(a->lr);
		a->lr = NULL;
		return -1;
	}
	return 0;
}

/* ---- writing ---- */

static int put(const char *dir, const char *name, const char *data, size_t len, int compress, struct tr_err *e)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (!compress)
		return tr_write_atomic(path, data, len, e);
	char *z;
	size_t zn;
	if (tr_zstd_compress(data, len, &z, &zn, e))
		return -1;
	int rc = tr_write_atomic(path, z, zn, e);
	tr_free(z);
	return rc;
}

static int put_json(const char *dir, const char *name, const json_t *j, struct tr_err *e)
{
	char *s = tr_json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (!s)
		return tr_fail(e, "%s: cannot serialise", name);
	size_t n = strlen(s);
	int rc = -1;
	char *t = tr_malloc(n + 2);
	if (t) {
		memcpy(t, s, n);
		t[n] = '\n';
		rc = put(dir, name, t, n + 1, 0, e);
		tr_free(t);
	} else {
		tr_fail(e, "out of memory");
	}
	free(s);
	return rc;
}

static int write_files(const struct tr_policy *p, const char *tmp, struct tr_err *e)
{
	if (put_json(tmp, "frontier.json", p->frontier, e) || put_json(tmp, "gate_audit.json", p->audit, e) ||
	    put(tmp, "report.md", p->report, strlen(p->report), 0, e))
		return -1;
	struct tr_buf b = {0};
	int rc = 0;
	if (p->fz) {
		rc = tr_featurizer_save(p->fz, &b) ? tr_fail(e, "out of memory") : put(tmp, "featurizer.txt", b.data, b.len, 0, e);
		tr_buf_free(&b);
	}
	for (int s = 0; s < p->n_stages && !rc; s++) {
		char name[32];
		snprintf(name, sizeof name, "stage%d.model.zst", s + 1);
		rc = tr_surrogate_save(p->st[s].s, &b, e) || put(tmp, name, b.data, b.len, 1, e);
		tr_buf_free(&b);
		snprintf(name, sizeof name, "acceptor%d.model.zst", s + 1);
		rc = rc || acceptor_save(&p->st[s].acc, &b, e) || put(tmp, name, b.data, b.len, 1, e);
		tr_buf_free(&b);
	}
	if (!rc && p->traces)
		rc = put(tmp, "traces.jsonl.zst", p->traces, p->traces_len, 1, e);
	if (!rc && p->ood) {
		rc = tr_ood_save(p->ood, &b) ? tr_fail(e, "out of memory") : put(tmp, "ood.bin.zst", b.data, b.len, 1, e);
		tr_buf_free(&b);
	}
	if (rc)
		return -1;
	/* the manifest last, with every other file's SHA-256 (on a shallow copy: p stays as it was) */
	json_t *m = json_copy(p->manifest);
	if (!m)
		return tr_fail(e, "out of memory");
	rc = tr_dir_write_manifest(tmp, m, e);
	json_decref(m);
	return rc;
}

int tr_policy_write(const struct tr_policy *p, const char *dir, int force, char *aside, size_t asize,
		    struct tr_err *e)
{
	char tmp[PATH_MAX];
	if (tr_dir_check(dir, force, e) || tr_dir_begin(dir, tmp, e))
		return -1;
	if (write_files(p, tmp, e) || tr_dir_commit(tmp, dir, force, aside, asize, e)) {
		tr_remove_tree(tmp);
		return -1;
	}
	return 0;
}

/* ---- loading ---- */

/* Reads dir/name, which the manifest's checksums must cover (tr_dir_verify checked them). */
static int get(const char *dir, json_t *m, const char *name, int compressed, char **data, size_t *len,
	       struct tr_err *e)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (!json_object_get(json_object_get(m, "files"), name))
		return tr_fail(e, "%s: not listed in manifest.json's \"files\" (no checksum)", path);
	char *raw;
	size_t n;
	if (tr_read_file(path, &raw, &n, e))
		return -1;
	if (!compressed) {
		*data = raw, *len = n;
		return 0;
	}
	int rc = tr_zstd_decompress(raw, n, path, data, len, e);
	tr_free(raw);
	return rc;
}

int tr_policy_load(const char *dir, struct tr_policy **out, struct tr_err *e)
{
	*out = NULL;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	json_error_t jerr;
	json_t *m = json_load_file(path, 0, &jerr);
	if (!m)
		return tr_fail(e, "%s:%d: %s", path, jerr.line, jerr.text);
	struct tr_policy *p = tr_calloc(1, sizeof *p);
	char *data = NULL;
	size_t len;
	if (!p) {
		json_decref(m);
		return tr_fail(e, "out of memory");
	}
	p->manifest = m;
	const char *fmt = json_string_value(json_object_get(m, "format"));
	json_int_t ver = json_integer_value(json_object_get(m, "version"));
	json_t *labels = json_object_get(m, "labels"), *dep = json_object_get(m, "deployed");
	const char *kind = json_string_value(json_object_get(dep, "family"));
	if (!fmt || strcmp(fmt, "tracer-policy") != 0) {
		tr_fail(e, "%s: not a tracer policy manifest", path);
		goto fail;
	}
	if (ver != TR_POLICY_FORMAT) {
		tr_fail(e, "%s: policy format version %lld, this tracer reads version %d", path, (long long)ver,
			TR_POLICY_FORMAT);
		goto fail;
	}
	if (tr_dir_verify(dir, m, e))
		goto fail;
	if (!json_is_array(labels) || !kind) {
		tr_fail(e, "%s: missing labels or deployed family", path);
		goto fail;
	}
	size_t nl = json_array_size(labels);
	const char **names = tr_malloc((nl ? nl : 1) * sizeof *names);
	if (!names) {
		tr_fail(e, "out of memory");
		goto fail;
	}
	int bad = 0;
	for (size_t i = 0; i < nl; i++)
		bad |= !(names[i] = json_string_value(json_array_get(labels, i)));
	bad = bad || tr_labels_build(&p->labels, names, nl, e) || (size_t)p->labels.n != nl;
	tr_free(names);
	if (bad) {
		tr_fail(e, "%s: bad label list", path);
		goto fail;
	}
	p->family = tr_pol_family_find(kind);
	if (!p->family && strcmp(kind, "refused") != 0) {
		tr_fail(e, "%s: unknown policy family \"%s\" (%s)", path, kind, tr_pol_family_list(", "));
		goto fail;
	}
	p->target = json_real_value(json_object_get(m, "target"));
	p->pairs = json_is_true(json_object_get(m, "pairs"));
	if (!p->family) {
		*out = p;
		return 0;
	}
	p->n_stages = p->family->max_stages;
	snprintf(path, sizeof path, "%s/featurizer.txt", dir);
	if (get(dir, m, "featurizer.txt", 0, &data, &len, e) || tr_featurizer_load(path, data, &p->fz, e))
		goto fail;
	tr_free(data), data = NULL;
	for (int s = 0; s < p->n_stages; s++) {
		char name[32];
		snprintf(name, sizeof name, "stage%d.model.zst", s + 1);
		snprintf(path, sizeof path, "%s/%s", dir, name);
		if (get(dir, m, name, 1, &data, &len, e) || tr_surrogate_load(path, data, len, &p->st[s].s, e))
			goto fail;
		tr_free(data), data = NULL;
		if (p->st[s].s->K != p->labels.n) {
			tr_fail(e, "%s: %d labels, the manifest has %d", path, p->st[s].s->K, p->labels.n);
			goto fail;
		}
		snprintf(name, sizeof name, "acceptor%d.model.zst", s + 1);
		snprintf(path, sizeof path, "%s/%s", dir, name);
		if (get(dir, m, name, 1, &data, &len, e) || acceptor_load(path, data, len, &p->st[s].acc, e))
			goto fail;
		tr_free(data), data = NULL;
		snprintf(name, sizeof name, "stage%d_threshold", s + 1);
		p->st[s].threshold = tr_threshold_get(dep, name);
	}
	if (json_is_true(json_object_get(m, "ood"))) {
		snprintf(path, sizeof path, "%s/ood.bin.zst", dir);
		if (get(dir, m, "ood.bin.zst", 1, &data, &len, e) || tr_ood_load(path, data, len, &p->ood, e))
			goto fail;
		tr_free(data), data = NULL;
	}
	*out = p;
	return 0;
fail:
	tr_free(data);
	tr_policy_free(p);
	return -1;
}
