/* Fuzz target: the text formats - experiment specs, the dataset manifest, featurizer files. */
#include "../../src/exp/exp.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_text(data, size);
	struct tr_err e;
	struct tr_spec spec;
	struct tr_manifest m;
	struct tr_featurizer *f;
	if (!s)
		return 0;
	if (tr_spec_parse("fuzz.spec", s, &spec, &e) == 0)
		tr_spec_free(&spec);
	if (tr_manifest_parse("fuzz.tsv", s, &m, &e) == 0)
		tr_manifest_free(&m);
	if (tr_featurizer_load("fuzz.txt", s, &f, &e) == 0)
		tr_featurizer_free(f);
	free(s);
	return 0;
}
