/*
 * Fuzz target: a whole policy directory - manifest.json, featurizer.txt, the stage and acceptor models
 * and the OOD guard - loaded, then asked to route a few inputs.
 *
 * The input holds the files in the order of `files` below, separated by SEP; an empty or missing
 * section means that the file is absent. Sections of the .zst files hold their content uncompressed: the target compresses them,
 * so that mutations reach the model parsers instead of zstd's frame checks. The files go to a private
 * directory (mkdtemp, on /dev/shm when there is one) that is emptied before each input and removed at
 * exit. tests/fuzz/policy-seed.sh makes a seed from a policy directory.
 */
#include <sys/stat.h>
#include <zstd.h>

#include "../../src/gate/gate.h"
#include "fuzz.h"

#define SEP "\n@@@@ tracer-fuzz next file @@@@\n"

static const char *const files[] = {"manifest.json",	   "featurizer.txt",	  "stage1.model.zst", "acceptor1.model.zst",
				    "stage2.model.zst", "acceptor2.model.zst", "ood.bin.zst"};
#define NFILES (sizeof files / sizeof *files)

static char dir[64];
static int verbose;

static void clear(void)
{
	char path[128];
	for (size_t i = 0; i < NFILES; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
}

static void cleanup(void)
{
	clear();
	rmdir(dir);
}

static void put(const char *name, const uint8_t *data, size_t size)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	char *z = NULL;
	size_t l = strlen(name);
	if (l > 4 && strcmp(name + l - 4, ".zst") == 0) { /* level 1: the fuzzer's time goes to the loaders */
		size_t cap = ZSTD_compressBound(size);
		if (!(z = malloc(cap)))
			abort();
		size = ZSTD_compress(z, cap, data, size, 1);
		if (ZSTD_isError(size))
			abort();
		data = (const uint8_t *)z;
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	free(z);
}

static void route(const struct tr_policy *p)
{
	struct tr_trace rows[2] = {{.id = "a", .input = "w1 v2 hello", .input_b = p->pairs ? "w2" : NULL},
				   {.id = "b", .input = "", .input_b = p->pairs ? "" : NULL}};
	size_t idx[2] = {0, 1};
	struct tr_decision d[2];
	struct tr_err e;
	double *emb = NULL;
	int dim = 0;
	if (p->fz && tr_featurizer_kind(p->fz) == TR_FEAT_NPY) {
		dim = tr_featurizer_dim(p->fz);
		if (dim <= 0 || dim > 1 << 16 || !(emb = malloc(2 * (size_t)dim * sizeof *emb)))
			return;
		for (size_t i = 0; i < 2 * (size_t)dim; i++)
			emb[i] = i % 3 ? 0.25 : -1.5;
	}
	tr_policy_route(p, rows, idx, 2, emb, emb ? 2 : 0, dim, d, &e);
	free(emb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		struct stat st;
		snprintf(dir, sizeof dir, "%s/tracer-fuzz-policy-XXXXXX",
			 stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
		if (!mkdtemp(dir))
			abort();
		atexit(cleanup);
		verbose = getenv("FUZZ_VERBOSE") != NULL;
		tr_gsl_init();
	}
	clear();
	const uint8_t *p = data, *end = data + size;
	for (size_t i = 0; i < NFILES && p <= end; i++) {
		const uint8_t *q = p;
		while (q + sizeof SEP - 1 <= end && memcmp(q, SEP, sizeof SEP - 1) != 0)
			q++;
		if (q + sizeof SEP - 1 > end)
			q = end;
		if (q > p)
			put(files[i], p, (size_t)(q - p));
		p = q + sizeof SEP - 1;
	}
	struct tr_policy *pol;
	struct tr_err e;
	int rc = tr_policy_load(dir, &pol, &e);
	if (verbose) /* FUZZ_VERBOSE=1: what each input did (for checking seeds) */
		fprintf(stderr, "policy: %s\n", rc ? e.msg : "loaded");
	if (rc == 0) {
		route(pol);
		tr_policy_free(pol);
	}
	return 0;
}
