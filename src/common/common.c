/*
 * common.c - errors, allocation with fault injection, buffers, files, zstd, SHA-256, RNG.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gsl/gsl_errno.h>
#include <libgen.h>
#include <limits.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

int tr_fail(struct tr_err *e, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof e->msg, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* ---- tables of named rows ---- */

static const char *row_name(const void *row)
{
	return *(const char *const *)row;
}

int tr_registry_count(const struct tr_registry *r)
{
	int n = 0;
	while (n < TR_REGISTRY_MAX && r->v[n])
		n++;
	return n;
}

int tr_registry_index(const struct tr_registry *r, const void *row)
{
	for (int i = 0; row && i < tr_registry_count(r); i++)
		if (r->v[i] == row)
			return i;
	return -1;
}

const void *tr_registry_find(const struct tr_registry *r, const char *name)
{
	for (int i = 0; name && i < tr_registry_count(r); i++)
		if (strcmp(row_name(r->v[i]), name) == 0)
			return r->v[i];
	return NULL;
}

int tr_registry_add(struct tr_registry *r, const void *row)
{
	int n = tr_registry_count(r);
	if (n == TR_REGISTRY_MAX || tr_registry_find(r, row_name(row)))
		return -1;
	r->v[n] = row;
	return 0;
}

const char *tr_registry_list(const struct tr_registry *r, const char *sep, char *buf, size_t size)
{
	size_t len = 0;
	buf[0] = 0;
	for (int i = 0; i < tr_registry_count(r) && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? sep : "", row_name(r->v[i]));
	return buf;
}

/* ---- allocation ---- */

/* Atomic: grid points allocate from several threads at once (relaxed order is enough for a count). */
static atomic_ulong alloc_count, alloc_fail_at;

static int alloc_should_fail(void)
{
	unsigned long n = atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed) + 1;
	unsigned long at = atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
	return at && n == at;
}

void tr_alloc_fail_at(unsigned long n)
{
	atomic_store(&alloc_count, 0);
	atomic_store(&alloc_fail_at, n);
}

unsigned long tr_alloc_count(void)
{
	return atomic_load(&alloc_count);
}

void *tr_malloc(size_t n)
{
	return alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *tr_calloc(size_t n, size_t size)
{
	return alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *tr_realloc(void *p, size_t n)
{
	return alloc_should_fail() ? NULL : realloc(p, n ? n : 1);
}

static pthread_mutex_t reserve_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reserve_cv = PTHREAD_COND_INITIALIZER;
static double reserved;		   /* by every thread */
static _Thread_local double held; /* by this one */

int tr_mem_reserve(double bytes)
{
	void *(*volatile trial)(size_t) = malloc; /* a malloc/free pair the compiler may not remove */
	void *p = NULL;
	pthread_mutex_lock(&reserve_mu);
	if (!alloc_should_fail())
		for (;;) {
			double total = reserved + bytes;
			p = total < 0x1p40 ? trial((size_t)total) : NULL; /* 1 TiB: beyond any machine we run on */
			free(p);
			if (p || reserved - held <= 0)
				break;
			pthread_cond_wait(&reserve_cv, &reserve_mu); /* room may come back when others finish */
		}
	if (p)
		reserved += bytes, held += bytes;
	pthread_mutex_unlock(&reserve_mu);
	return p ? 0 : -1;
}

void tr_mem_release(double bytes)
{
	pthread_mutex_lock(&reserve_mu);
	reserved = reserved > bytes ? reserved - bytes : 0;
	held = held > bytes ? held - bytes : 0;
	pthread_cond_broadcast(&reserve_cv);
	pthread_mutex_unlock(&reserve_mu);
}

static _Thread_local int blas_has_buffer, blas_reserved;

int tr_blas_begin(void)
{
	if (blas_has_buffer || blas_reserved)
		return 0;
	if (tr_mem_reserve(TR_BLAS_BUFFER))
		return -1;
	blas_reserved = 1;
	return 0;
}

void tr_blas_end(void)
{
	if (blas_reserved) { /* the buffer is OpenBLAS's now: it shows in the address space itself */
		tr_mem_release(TR_BLAS_BUFFER);
		blas_reserved = 0;
		blas_has_buffer = 1;
	}
}

char *tr_strndup(const char *s, size_t n)
{
	char *d = tr_malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

char *tr_strdup(const char *s)
{
	return s ? tr_strndup(s, strlen(s)) : NULL;
}

void tr_free(void *p)
{
	free(p);
}

int tr_grow(void *pp, size_t *cap, size_t need, size_t size)
{
	void **p = pp;
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	void *q = tr_realloc(*p, c * size);
	if (!q)
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

/* ---- buffers ---- */

int tr_buf_add(struct tr_buf *b, const void *p, size_t n)
{
	if (tr_grow(&b->data, &b->cap, b->len + n + 1, 1))
		return -1;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

int tr_buf_puts(struct tr_buf *b, const char *s)
{
	return tr_buf_add(b, s, strlen(s));
}

int tr_buf_printf(struct tr_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || tr_grow(&b->data, &b->cap, b->len + (size_t)n + 1, 1))
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int tr_buf_md_escape(struct tr_buf *b, const char *s)
{
	int rc = 0;
	for (; *s && !rc; s++) {
		if (strchr("\\`*[]#|", *s))
			rc = tr_buf_add(b, "\\", 1) || tr_buf_add(b, s, 1);
		else if (*s == '<')
			rc = tr_buf_puts(b, "&lt;");
		else if (*s == '>')
			rc = tr_buf_puts(b, "&gt;");
		else if (*s == '&')
			rc = tr_buf_puts(b, "&amp;");
		else if (*s == '\n' || *s == '\r' || *s == '\t')
			rc = tr_buf_add(b, " ", 1);
		else
			rc = tr_buf_add(b, s, 1);
	}
	return rc ? -1 : 0;
}

void tr_buf_free(struct tr_buf *b)
{
	tr_free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int tr_cursor_take(struct tr_cursor *c, void *dst, size_t n)
{
	if ((size_t)(c->end - c->p) < n)
		return -1;
	memcpy(dst, c->p, n);
	c->p += n;
	return 0;
}

/* ---- zstd ---- */

int tr_zstd_compress(const void *src, size_t n, char **out, size_t *outn, struct tr_err *e)
{
	size_t cap = ZSTD_compressBound(n);
	char *dst = tr_malloc(cap);
	if (!dst)
		return tr_fail(e, "out of memory compressing %zu bytes", n);
	/*
	 * Level 9 where it pays. Data that level 1 shrinks by under a tenth (float matrices: the dense OOD
	 * guard's 14 MB of training rows) stays at level 1: level 9 took four times as long for 0.01% less.
	 */
	size_t r = ZSTD_compress(dst, cap, src, n, 1);
	if (!ZSTD_isError(r) && r < n - n / 10)
		r = ZSTD_compress(dst, cap, src, n, 9);
	if (ZSTD_isError(r)) {
		tr_free(dst);
		return tr_fail(e, "zstd: %s", ZSTD_getErrorName(r));
	}
	*out = dst;
	*outn = r;
	return 0;
}

int tr_zstd_decompress(const void *src, size_t n, const char *what, char **out, size_t *outn,
		       struct tr_err *e)
{
	unsigned long long size = ZSTD_getFrameContentSize(src, n);
	if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
		return tr_fail(e, "%s: not a zstd frame with a known size", what);
	if (size > (1ULL << 34))
		return tr_fail(e, "%s: zstd frame too large (%llu bytes)", what, size);
	char *dst = tr_malloc((size_t)size + 1);
	if (!dst)
		return tr_fail(e, "%s: out of memory", what);
	size_t r = ZSTD_decompress(dst, (size_t)size, src, n);
	if (ZSTD_isError(r) || r != size) {
		tr_free(dst);
		return tr_fail(e, "%s: corrupt zstd data (%s)", what,
			       ZSTD_isError(r) ? ZSTD_getErrorName(r) : "size mismatch");
	}
	dst[r] = 0;
	*out = dst;
	*outn = r;
	return 0;
}

/* ---- SHA-256 ---- */

static void hex_digest(struct sha256_ctx *c, char hex[65])
{
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(c, sizeof d, d);
	for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
}

void tr_sha256_hex(const void *data, size_t n, char hex[65])
{
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, n, data);
	hex_digest(&c, hex);
}

int tr_sha256_file(const char *path, char hex[65], struct tr_err *e)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return tr_fail(e, "%s: cannot open: %s", path, strerror(errno));
	struct sha256_ctx c;
	sha256_init(&c);
	uint8_t chunk[1 << 16];
	size_t got;
	while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
		sha256_update(&c, got, chunk);
	int bad = ferror(f);
	fclose(f);
	if (bad)
		return tr_fail(e, "%s: read error", path);
	hex_digest(&c, hex);
	return 0;
}

/* ---- paths ---- */

const char *tr_root_dir(void)
{
	static char root[PATH_MAX];
	if (root[0])
		return root;
	const char *env = getenv("TRACER_ROOT");
	if (env && *env) {
		snprintf(root, sizeof root, "%s", env);
		return root;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0) {
		strcpy(root, ".");
		return root;
	}
	exe[n] = 0;
	snprintf(root, sizeof root, "%s", dirname(exe));
	/* Test and bench programs live in build/tests/ and build/bench/: the root is two levels up. */
	char *last = strrchr(root, '/');
	if (last && last - root >= 6 && strncmp(last - 6, "/build", 6) == 0)
		last[-6] = 0;
	return root;
}

void tr_root_path(const char *rel, char *buf, size_t size)
{
	if (rel[0] == '/')
		snprintf(buf, size, "%s", rel);
	else
		snprintf(buf, size, "%s/%s", tr_root_dir(), rel);
}

double tr_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- UTF-8 ---- */

int tr_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		unsigned c = *p;
		size_t len;
		unsigned min;
		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			len = 2, min = 0x80, c &= 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3, min = 0x800, c &= 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4, min = 0x10000, c &= 0x07;
		} else {
			return 0;
		}
		if ((size_t)(end - p) < len)
			return 0;
		for (size_t i = 1; i < len; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return 0;
			c = (c << 6) | (p[i] & 0x3F);
		}
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return 0;
		p += len;
	}
	return 1;
}

/* ---- randomness ---- */

/* OpenBLAS (behind GSL's CBLAS and liblinear's BLAS) would start a thread pool for every level-1 call;
 * one thread is faster for our sizes and keeps dense products bit-identical from run to run. */
extern void openblas_set_num_threads(int);

void tr_gsl_init(void)
{
	static int done;
	if (!done) {
		gsl_set_error_handler_off();
		openblas_set_num_threads(1);
		done = 1;
	}
}

gsl_rng *tr_rng_new(uint64_t seed)
{
	tr_gsl_init();
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	if (r)
		gsl_rng_set(r, (unsigned long)seed);
	return r;
}
