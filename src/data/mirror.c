/*
 * mirror.c - the dataset manifest and finding checked files in the mirror or the download cache.
 *
 * datasets/manifest.tsv names every upstream file: path in the mirror, SHA-256, row count, license and
 * upstream URL. Nothing is loaded from a file whose sum differs from the manifest's.
 */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tr_manifest_free(struct tr_manifest *m)
{
	for (size_t i = 0; i < m->n; i++) {
		tr_free(m->v[i].path);
		tr_free(m->v[i].sha256);
		tr_free(m->v[i].license);
		tr_free(m->v[i].url);
	}
	tr_free(m->v);
	memset(m, 0, sizeof *m);
}

static int is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

int tr_manifest_parse(const char *path, const char *text, struct tr_manifest *m, struct tr_err *e)
{
	memset(m, 0, sizeof *m);
	size_t cap = 0, lineno = 0;
	const char *p = text;
	while (*p) {
		const char *end = strchr(p, '\n');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		lineno++;
		char line[2048];
		if (len >= sizeof line) {
			tr_manifest_free(m);
			return tr_fail(e, "%s:%zu: line too long", path, lineno);
		}
		memcpy(line, p, len);
		line[len] = 0;
		p = end ? end + 1 : p + len; /* advance before the CR is cut off the copy */
		if (len && line[len - 1] == '\r')
			line[--len] = 0;
		if (len == 0 || line[0] == '#')
			continue;
		char *f[5];
		int nf = 0;
		char *s = line;
		for (; nf < 5; nf++) {
			f[nf] = s;
			char *tab = strchr(s, '\t');
			if (!tab) {
				nf++;
				break;
			}
			*tab = 0;
			s = tab + 1;
		}
		char *endp = NULL;
		long rows = nf == 5 ? strtol(f[2], &endp, 10) : 0;
		const char *bad = NULL;
		if (nf != 5 || strchr(f[4], '\t'))
			bad = "expected 5 tab-separated fields (path, sha256, rows, license, url)";
		else if (!is_hex64(f[1]))
			bad = "bad sha256 (64 lowercase hex digits expected)";
		else if (*endp || endp == f[2] || rows < 0)
			bad = "bad row count";
		if (bad) {
			tr_manifest_free(m);
			return tr_fail(e, "%s:%zu: %s", path, lineno, bad);
		}
		if (tr_grow(&m->v, &cap, m->n + 1, sizeof *m->v))
			goto oom;
		struct tr_manifest_entry *en = &m->v[m->n];
		memset(en, 0, sizeof *en);
		m->n++;
		en->rows = rows;
		if (!(en->path = tr_strdup(f[0])) || !(en->sha256 = tr_strdup(f[1])) ||
		    !(en->license = tr_strdup(f[3])) || !(en->url = tr_strdup(f[4])))
			goto oom;
	}
	return 0;
oom:
	tr_manifest_free(m);
	return tr_fail(e, "%s: out of memory", path);
}

const struct tr_manifest_entry *tr_manifest_find(const struct tr_manifest *m, const char *path)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].path, path) == 0)
			return &m->v[i];
	return NULL;
}

static void env_path(const char *var, const char *def, char *out)
{
	const char *v = getenv(var);
	if (v && *v)
		snprintf(out, PATH_MAX, "%s", v); /* a user's path is relative to where they stand */
	else
		tr_root_path(def, out, PATH_MAX); /* defaults are relative to the project root */
}

int tr_data_open(struct tr_datactx *ctx, struct tr_err *e)
{
	memset(ctx, 0, sizeof *ctx);
	env_path("TRACER_DATA", "../shared/datasets", ctx->data_dir);
	env_path("TRACER_CACHE", "build/cache", ctx->cache_dir);
	env_path("TRACER_MANIFEST", "datasets/manifest.tsv", ctx->manifest_path);
	char *text;
	size_t len;
	if (tr_read_file(ctx->manifest_path, &text, &len, e))
		return -1;
	int rc = tr_manifest_parse(ctx->manifest_path, text, &ctx->manifest, e);
	tr_free(text);
	return rc;
}

void tr_data_close(struct tr_datactx *ctx)
{
	tr_manifest_free(&ctx->manifest);
}

int tr_data_locate(const struct tr_datactx *ctx, const char *rel, char *path, char sha[65],
		   struct tr_err *e)
{
	const struct tr_manifest_entry *en = tr_manifest_find(&ctx->manifest, rel);
	if (!en)
		return tr_fail(e, "%s: not in the manifest %s", rel, ctx->manifest_path);
	char fetched[PATH_MAX];
	snprintf(path, PATH_MAX, "%s/%s", ctx->data_dir, rel);
	snprintf(fetched, sizeof fetched, "%s/downloads/%s", ctx->cache_dir, rel);
	if (!tr_file_exists(path)) {
		if (!tr_file_exists(fetched))
			return tr_fail(e, "%s: missing (looked in %s and %s; `tracer datasets fetch` downloads it "
					  "when online)", rel, path, fetched);
		snprintf(path, PATH_MAX, "%s", fetched);
	}
	if (tr_sha256_file(path, sha, e))
		return -1;
	if (strcmp(sha, en->sha256) != 0)
		return tr_fail(e, "%s: sha256 mismatch: expected %s, got %s", path, en->sha256, sha);
	return 0;
}
