/* Fuzz target: a policy directory's manifest.json (refused policies load from the manifest alone). */
#include "../../src/gate/gate.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[128];
	snprintf(dir, sizeof dir, "/tmp/tracer-fuzz-policy-%ld", (long)getpid());
	struct tr_err e;
	if (tr_mkdirs(dir, &e))
		return 0;
	char path[200];
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct tr_policy *p;
	if (tr_policy_load(dir, &p, &e) == 0)
		tr_policy_free(p);
	return 0;
}
