/* Fuzz target: the RFC 4180 CSV reader (libcsv) with line tracking. */
#include "../../src/data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_csv c;
	struct tr_err e;
	if (tr_csv_parse("fuzz.csv", (const char *)data, size, &c, &e) == 0)
		tr_csv_free(&c);
	return 0;
}
