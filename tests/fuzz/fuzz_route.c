/*
 * Fuzz target: route's standard input, line by line through the trace reader as `tracer route` feeds
 * it (each line with its newline, errors naming stdin:LINE), and each line's "embedding" as route reads
 * it for a 4-dimensional policy. The first byte picks the reader's flags: bit 0 adds the teacher label
 * that trace files require, so the same stream also goes through fit's rules.
 */
#include "../../src/data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	int flags = TR_LINE_KEEP_JSON | (data[0] & 1 ? TR_LINE_LABEL : 0);
	struct tr_trace_reader *r = tr_trace_reader_new("stdin", flags);
	if (!r)
		return 0;
	const char *s = (const char *)data + 1, *end = (const char *)data + size;
	struct tr_err e;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = nl ? (size_t)(nl - s) + 1 : (size_t)(end - s);
		struct tr_trace_line l;
		int got;
		if (tr_trace_reader_line(r, s, n, &l, &got, &e))
			break;
		if (got) {
			double emb[4];
			tr_trace_line_embedding(&l, 4, emb);
			tr_trace_line_free(&l);
		}
		s += n;
	}
	tr_trace_reader_free(r);
	return 0;
}
