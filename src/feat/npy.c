/*
 * npy.c - NumPy .npy embedding matrices (format versions 1-3), optionally zstd-compressed.
 */
#include "feat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Finds `'key': ` in the header dict and returns what follows, or NULL. */
static const char *dict_value(const char *h, size_t hl, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i + kl + 2 < hl; i++)
		if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 && h[i + 1 + kl] == h[i]) {
			const char *p = h + i + kl + 2;
			while (p < h + hl && (*p == ' ' || *p == ':'))
				p++;
			return p;
		}
	return NULL;
}

int tr_npy_parse(const char *what, const char *buf, size_t len, double **data, size_t *nrows, int *dim,
		 struct tr_err *e)
{
	*data = NULL;
	if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return tr_fail(e, "%s: not a .npy file (bad magic)", what);
	unsigned major = (unsigned char)buf[6];
	size_t hl, off;
	if (major == 1) {
		hl = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
		off = 10;
	} else if (major == 2 || major == 3) {
		if (len < 12)
			return tr_fail(e, "%s: truncated .npy header", what);
		hl = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8 |
		     (size_t)(unsigned char)buf[10] << 16 | (size_t)(unsigned char)buf[11] << 24;
		off = 12;
	} else {
		return tr_fail(e, "%s: unsupported .npy version %u", what, major);
	}
	if (hl > len - off)
		return tr_fail(e, "%s: truncated .npy header", what);
	if (hl > 65536)
		return tr_fail(e, "%s: .npy header of %zu bytes is implausible", what, hl);
	/* parse a NUL-terminated copy: the header is not terminated in the file */
	char h[65537];
	memcpy(h, buf + off, hl);
	h[hl] = 0;
	if (strlen(h) != hl)
		return tr_fail(e, "%s: NUL byte in the .npy header", what);
	const char *descr = dict_value(h, hl, "descr"), *fo = dict_value(h, hl, "fortran_order"),
		   *shape = dict_value(h, hl, "shape");
	if (!descr || !fo || !shape)
		return tr_fail(e, "%s: .npy header lacks descr, fortran_order or shape", what);
	int width;
	if (strncmp(descr, "'<f4'", 5) == 0 || strncmp(descr, "'=f4'", 5) == 0)
		width = 4;
	else if (strncmp(descr, "'<f8'", 5) == 0 || strncmp(descr, "'=f8'", 5) == 0)
		width = 8;
	else
		return tr_fail(e, "%s: dtype %.6s is not little-endian float32 or float64", what, descr);
	/* descr, fo and shape point into the terminated copy from here on */
	if (strncmp(fo, "False", 5) != 0)
		return tr_fail(e, "%s: Fortran-ordered arrays are not supported (save with C order)", what);
	unsigned long long r, c;
	int consumed = 0;
	if (sscanf(shape, "(%llu, %llu)%n", &r, &c, &consumed) != 2 || consumed == 0)
		return tr_fail(e, "%s: expected a 2-D shape, got %.20s", what, shape);
	if (c == 0 || c > (1u << 20) || r > (1ULL << 32))
		return tr_fail(e, "%s: implausible shape (%llu, %llu)", what, r, c);
	size_t body = len - off - hl, need = (size_t)r * (size_t)c * (size_t)width;
	if (body < need)
		return tr_fail(e, "%s: truncated: %zu data bytes, shape (%llu, %llu) needs %zu", what, body, r, c,
			       need);
	if (body > need)
		return tr_fail(e, "%s: %zu bytes of trailing data after the matrix", what, body - need);
	double *m = tr_malloc((size_t)r * (size_t)c * sizeof *m);
	if (!m)
		return tr_fail(e, "%s: out of memory for (%llu, %llu)", what, r, c);
	const unsigned char *p = (const unsigned char *)buf + off + hl;
	for (size_t i = 0; i < (size_t)r * (size_t)c; i++) {
		if (width == 4) {
			uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
			float f;
			memcpy(&f, &u, 4);
			m[i] = f;
		} else {
			uint64_t u = 0;
			for (int k = 7; k >= 0; k--)
				u = u << 8 | p[k];
			memcpy(&m[i], &u, 8);
		}
		p += width;
		if (!isfinite(m[i])) {
			tr_free(m);
			return tr_fail(e, "%s: row %zu column %zu is not finite", what, i / (size_t)c, i % (size_t)c);
		}
	}
	*data = m;
	*nrows = (size_t)r;
	*dim = (int)c;
	return 0;
}

int tr_npy_read(const char *path, double **data, size_t *nrows, int *dim, struct tr_err *e)
{
	char *buf, *raw = NULL;
	size_t len, rawlen;
	*data = NULL;
	if (tr_read_file(path, &buf, &len, e))
		return -1;
	size_t pl = strlen(path);
	if (pl > 4 && strcmp(path + pl - 4, ".zst") == 0) {
		int rc = tr_zstd_decompress(buf, len, path, &raw, &rawlen, e);
		tr_free(buf);
		if (rc)
			return -1;
		buf = raw, len = rawlen;
	}
	int rc = tr_npy_parse(path, buf, len, data, nrows, dim, e);
	tr_free(buf);
	return rc;
}
