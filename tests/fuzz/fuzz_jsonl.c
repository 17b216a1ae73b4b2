/* Fuzz target: users' trace JSONL, then the export of what was read. */
#include "../../src/data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_traceset ts;
	struct tr_err e;
	if (tr_traces_read_jsonl("fuzz.jsonl", (const char *)data, size, &ts, &e) == 0) {
		struct tr_buf b = {0};
		tr_traces_write_jsonl(&ts, TR_PART_TRACES, &b, &e);
		tr_buf_free(&b);
		tr_traceset_free(&ts);
	}
	return 0;
}
