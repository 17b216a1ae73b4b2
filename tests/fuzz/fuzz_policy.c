/*
 * Fuzz target: a whole policy directory - manifest.json, featurizer.txt, the stage and acceptor models
 * and the OOD guard - loaded, then asked to route a few inputs.
 *
 * The input holds the files in the order of `files_` below, separated by SEP; an empty or missing
 * section means that the file is absent. The manifest's checksums of the files are made to match (see
 * put_manifest), so that mutated models get past the SHA-256 check to their parsers. Sections of the .zst files hold their content uncompressed: the target compresses them,
 * so that mutations reach the model parsers instead of zstd's frame checks. The files go to a private
 * directory (mkdtemp, on /dev/shm when there is one) that is emptied before each input and removed at
 * exit. tests/fuzz/policy-seed.sh makes a seed from a policy directory.
 */
#include <sys/stat.h>
#include <zstd.h>

#include <jansson.h>

#include "../../src/gate/gate.h"
#include "fuzz.h"

#define SEP "\n@@@@ tracer-fuzz next file @@@@\n"

static const char *const files_[] = {"manifest.json",	   "featurizer.txt",	  "stage1.model.zst", "acceptor1.model.zst",
				    "stage2.model.zst", "acceptor2.model.zst", "ood.bin.zst"};
#define NFILES (sizeof files_ / sizeof *files_)

static char dir[64];
static int verbose;

static void clear(void)
{
	char path[128];
	for (size_t i = 0; i < NFILES; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files_[i]);
		unlink(path);
	}
}

static void cleanup(void)
{
	clear();
	rmdir(dir);
}

/* Writes dir/name; .zst files compressed at level 1 (the fuzzer's time goes to the loaders). */
static void put(const char *name, const uint8_t *data, size_t size, char sha[65])
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	char *z = NULL;
	size_t l = strlen(name);
	if (l > 4 && strcmp(name + l - 4, ".zst") == 0) {
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
	tr_sha256_hex((const char *)data, size, sha);
	free(z);
}

/*
 * The manifest as the input has it, except that the checksum in "files" of each file the input holds
 * is made true (the fuzzer decides which files are listed, not their sums), and the entries of the
 * policy's other files (frontier, gate audit, report: not loaded, not in the input) are dropped. A
 * manifest that is not a JSON object goes to disk as it is.
 */
static void put_manifest(const uint8_t *data, size_t size, char sha[][65], const int *have)
{
	json_t *m = json_loadb((const char *)data, size, 0, NULL), *files = json_object_get(m, "files");
	char *text = NULL;
	if (json_is_object(files)) {
		json_object_del(files, "frontier.json");
		json_object_del(files, "gate_audit.json");
		json_object_del(files, "report.md");
		for (size_t i = 1; i < NFILES; i++)
			if (have[i] && json_object_get(files, files_[i]))
				json_object_set_new(files, files_[i], json_string(sha[i]));
		text = json_dumps(m, JSON_COMPACT);
	}
	char unused[65];
	if (text)
		put(files_[0], (const uint8_t *)text, strlen(text), unused);
	else
		put(files_[0], data, size, unused);
	free(text);
	json_decref(m);
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
	const uint8_t *p = data, *end = data + size, *sec[NFILES] = {0};
	size_t len[NFILES] = {0};
	for (size_t i = 0; i < NFILES && p <= end; i++) {
		const uint8_t *q = p;
		while (q + sizeof SEP - 1 <= end && memcmp(q, SEP, sizeof SEP - 1) != 0)
			q++;
		if (q + sizeof SEP - 1 > end)
			q = end;
		sec[i] = p, len[i] = (size_t)(q - p);
		p = q + sizeof SEP - 1;
	}
	char sha[NFILES][65];
	int have[NFILES] = {0};
	for (size_t i = 1; i < NFILES; i++)
		if (len[i] > 0) {
			put(files_[i], sec[i], len[i], sha[i]);
			have[i] = 1;
		}
	if (len[0] > 0)
		put_manifest(sec[0], len[0], sha, have);
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
