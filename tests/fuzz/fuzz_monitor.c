/*
 * Fuzz target: the drift monitor's state file (DIR.monitor). A state that parses must format back to text
 * that parses to the same state, and must be usable (one more audit, its bound).
 */
#include "../../src/drift/drift.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_text(data, size);
	struct tr_monitor m, back;
	struct tr_err e;
	if (text && tr_monitor_parse("fuzz.monitor", text, &m, &e) == 0) {
		struct tr_buf b = {0};
		tr_monitor_format(&m, &b);
		if (!b.data || tr_monitor_parse("again", b.data, &back, &e) != 0)
			abort();
		tr_monitor_observe(&m, 0);
		(void)tr_monitor_upper(&m);
		tr_buf_free(&b);
	}
	free(text);
	return 0;
}
