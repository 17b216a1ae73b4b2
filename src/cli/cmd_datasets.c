/*
 * cmd_datasets.c - `tracer datasets list|verify|fetch`.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../data/data.h"
#include "cli.h"

const char cmd_datasets_usage[] =
	"usage: tracer datasets list     trace sets: rows (traces/test/invalid), labels, teacher agreement\n"
	"       tracer datasets verify   check the SHA-256 of every manifest file; exit 1 on a mismatch\n"
	"       tracer datasets fetch    download files missing from the mirror (online only) into\n"
	"                                $TRACER_CACHE/downloads and check their sums\n";

static int list(struct tr_datactx *ctx)
{
	printf("%-28s %7s %6s %7s %6s %6s  %s\n", "set", "traces", "test", "invalid", "extra", "labels",
	       "teacher=gold");
	struct tr_buf sources = {0};
	int rc = TR_EXIT_OK;
	for (size_t i = 0; i < tr_n_setdefs; i++) {
		struct tr_traceset ts;
		struct tr_err e;
		if (tr_traceset_load(ctx, tr_setdefs[i].name, &ts, &e)) {
			fprintf(stderr, "tracer: %s\n", e.msg);
			printf("%-28s unavailable\n", tr_setdefs[i].name);
			rc = TR_EXIT_DATA;
			continue;
		}
		size_t agree, n;
		tr_traceset_agreement(&ts, &agree, &n);
		printf("%-28s %7zu %6zu %7zu %6zu %6d  %.4f (%zu/%zu)\n", ts.name, ts.part[TR_PART_TRACES].n,
		       ts.part[TR_PART_TEST].n, ts.n_invalid, ts.part[TR_PART_EXTRA].n, ts.labels.n,
		       n ? (double)agree / (double)n : 0.0, agree, n);
		for (int s = 0; s < ts.n_src; s++) {
			const struct tr_source_stat *st = &ts.src[s];
			tr_buf_printf(&sources, "%-56s %5zu %5zu %7zu  %.4f (%zu/%zu)\n", st->file, st->rows, st->valid,
				      st->invalid, st->valid ? (double)st->agree / (double)st->valid : 0.0, st->agree,
				      st->valid);
		}
		tr_traceset_free(&ts);
	}
	printf("\n%-56s %5s %5s %7s  %s\n", "teacher file", "rows", "valid", "invalid", "agreement with gold");
	if (sources.data)
		fputs(sources.data, stdout);
	tr_buf_free(&sources);
	return rc;
}

static int verify(struct tr_datactx *ctx)
{
	int bad = 0;
	for (size_t i = 0; i < ctx->manifest.n; i++) {
		char path[PATH_MAX], sha[65];
		struct tr_err e;
		if (tr_data_locate(ctx, ctx->manifest.v[i].path, path, sha, &e)) {
			fprintf(stderr, "tracer: %s\n", e.msg);
			printf("FAIL  %s\n", ctx->manifest.v[i].path);
			bad = 1;
		} else {
			printf("ok    %s  %s\n", ctx->manifest.v[i].path, sha);
		}
	}
	return bad ? TR_EXIT_DATA : TR_EXIT_OK;
}

/* Downloads url to path with curl (if installed). Returns curl's exit status, or -1. */
static int download(const char *url, const char *path)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execlp("curl", "curl", "-fsSL", "--max-time", "60", "-o", path, url, (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int fetch(struct tr_datactx *ctx)
{
	int bad = 0;
	for (size_t i = 0; i < ctx->manifest.n; i++) {
		const struct tr_manifest_entry *en = &ctx->manifest.v[i];
		char path[PATH_MAX], sha[65], dest[PATH_MAX], tmp[PATH_MAX + 16];
		struct tr_err e;
		if (tr_data_locate(ctx, en->path, path, sha, &e) == 0) {
			printf("present  %s  (%s)\n", en->path, path);
			continue;
		}
		snprintf(dest, sizeof dest, "%s/downloads/%s", ctx->cache_dir, en->path);
		snprintf(tmp, sizeof tmp, "%s.part", dest);
		char dir[PATH_MAX];
		snprintf(dir, sizeof dir, "%s", dest);
		*strrchr(dir, '/') = 0;
		if (tr_mkdirs(dir, &e)) {
			fprintf(stderr, "tracer: %s\n", e.msg);
			bad = 1;
			continue;
		}
		int st = download(en->url, tmp);
		if (st != 0) {
			unlink(tmp);
			fprintf(stderr, "tracer: %s: missing from %s/%s and the download from %s failed (%s); "
					"offline machines need the mirror\n", en->path, ctx->data_dir, en->path, en->url,
				st == 127 ? "curl is not installed" : "no network or no such file");
			bad = 1;
			continue;
		}
		if (tr_sha256_file(tmp, sha, &e) || strcmp(sha, en->sha256) != 0) {
			unlink(tmp);
			fprintf(stderr, "tracer: %s: downloaded file has sha256 %s, expected %s\n", en->path, sha,
				en->sha256);
			bad = 1;
			continue;
		}
		if (rename(tmp, dest) != 0) {
			fprintf(stderr, "tracer: %s: cannot rename into place: %s\n", dest, strerror(errno));
			bad = 1;
			continue;
		}
		printf("fetched  %s  (%s)\n", en->path, dest);
	}
	return bad ? TR_EXIT_DATA : TR_EXIT_OK;
}

int cmd_datasets(int argc, char **argv)
{
	if (argc != 2)
		return tr_cli_usage_error("datasets", "expected one of list, verify, fetch");
	int (*fn)(struct tr_datactx *) = strcmp(argv[1], "list") == 0     ? list
					 : strcmp(argv[1], "verify") == 0 ? verify
					 : strcmp(argv[1], "fetch") == 0  ? fetch
									  : NULL;
	if (!fn)
		return tr_cli_usage_error("datasets", "unknown subcommand \"%s\"", argv[1]);
	struct tr_datactx ctx;
	struct tr_err e;
	if (tr_data_open(&ctx, &e))
		return tr_cli_data_error(&e);
	int rc = fn(&ctx);
	tr_data_close(&ctx);
	return rc;
}
