/*
 * Fuzz target: experiment cell files (RESULTS/cells/SPEC/HASH.json) - whether sweep counts one as
 * finished, and collect's reading of it into table rows (then written as TSV). The cell is written to
 * a private directory (mkdtemp, on /dev/shm when there is one), removed at exit.
 */
#include <sys/stat.h>

#include "../../src/report/report.h"
#include "fuzz.h"

static const char spec_text[] = "name fuzz\nsets banking77:gold\nprotocols official pooled\nbackends liblinear\n"
				"gates point ltt\ntargets 0.9 0.95\ntraces 500 all\nseeds 0 1\n";
static char dir[64], path[128], tpath[128];
static struct tr_spec spec;

static void cleanup(void)
{
	unlink(path);
	unlink(tpath);
	rmdir(dir);
	tr_spec_free(&spec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_err e;
	if (!dir[0]) {
		struct stat st;
		snprintf(dir, sizeof dir, "%s/tracer-fuzz-cell-XXXXXX",
			 stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
		if (!mkdtemp(dir) || tr_spec_parse("fuzz.spec", spec_text, &spec, &e))
			abort();
		snprintf(path, sizeof path, "%s/0123456789abcdef.json", dir);
		snprintf(tpath, sizeof tpath, "%s/0123456789abcdef.time", dir);
		FILE *t = fopen(tpath, "w");
		if (!t)
			abort();
		fputs("12.5\n", t);
		fclose(t);
		atexit(cleanup);
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	struct tr_cell c = {"banking77:gold", "liblinear", NULL, (enum tr_protocol)(size & 1), size & 2 ? -1 : 500,
			    0, NULL, "0123456789abcdef"};
	tr_cell_finished(path, &c);
	struct tr_table t = {0};
	if (tr_table_add_cell(&t, &spec, &c, path, tpath, &e) == 0) {
		struct tr_buf b = {0};
		tr_table_write_tsv(&t, spec.name, &b);
		tr_buf_free(&b);
	}
	tr_table_free(&t);
	return 0;
}
