/* Fuzz target: .npy embedding matrices. */
#include "../../src/feat/feat.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double *m;
	size_t r;
	int d;
	struct tr_err e;
	if (tr_npy_parse("fuzz.npy", (const char *)data, size, &m, &r, &d, &e) == 0)
		tr_free(m);
	return 0;
}
