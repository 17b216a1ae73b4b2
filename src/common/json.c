/*
 * json.c - JSON numbers as a reader expects them: every real in its shortest text that reads back to the
 * same double, and no ±inf or NaN (JSON has none: they become null, and a writer that needs to tell
 * them apart adds a companion field).
 */
#include "common.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *tr_json_real(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

int tr_shortest_real(double v, char *buf, size_t size)
{
	int n = 0;
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, size, "%.*g", prec, v);
		if (n < 0 || (size_t)n >= size)
			return -1;
		if (strtod(buf, NULL) == v)
			break;
	}
	if (!strpbrk(buf, ".eEni")) { /* "1" would read back as an integer: keep it a real */
		if ((size_t)n + 2 >= size)
			return -1;
		memcpy(buf + n, ".0", 3);
		n += 2;
	}
	return n;
}

char *tr_json_dumps(const json_t *j, size_t flags)
{
	char *s = json_dumps(j, (flags & ~(size_t)JSON_REAL_PRECISION(31)) | JSON_REAL_PRECISION(17));
	if (!s)
		return NULL;
	struct tr_buf b = {0};
	int bad = 0;
	const char *p = s;
	while (*p && !bad) {
		if (*p == '"') { /* a string, copied whole (an escaped quote does not end it) */
			const char *q = p + 1;
			while (*q && *q != '"')
				q += *q == '\\' && q[1] ? 2 : 1;
			q += *q == '"';
			bad = tr_buf_add(&b, p, (size_t)(q - p));
			p = q;
		} else if (*p == '-' || (*p >= '0' && *p <= '9')) {
			size_t k = strspn(p, "+-0123456789.eE");
			if (memchr(p, '.', k) || memchr(p, 'e', k) || memchr(p, 'E', k)) { /* a real */
				char out[64];
				int n = tr_shortest_real(strtod(p, NULL), out, sizeof out);
				bad = n < 0 ? tr_buf_add(&b, p, k) : tr_buf_add(&b, out, (size_t)n);
			} else {
				bad = tr_buf_add(&b, p, k);
			}
			p += k;
		} else { /* punctuation and literals, up to the next string or number */
			size_t k = strcspn(p, "\"-0123456789");
			bad = tr_buf_add(&b, p, k);
			p += k;
		}
	}
	free(s);
	if (bad || !b.data) {
		tr_buf_free(&b);
		return NULL;
	}
	return b.data;
}
