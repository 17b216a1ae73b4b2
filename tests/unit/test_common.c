/* Unit tests of src/common: hashing, UTF-8, files, zstd, allocation hooks, JSON numbers. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../src/common/common.h"
#include "unit.h"

static void test_sha256(void)
{
	char hex[65];
	tr_sha256_hex("abc", 3, hex);
	CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "%s", hex);
	tr_sha256_hex("", 0, hex);
	CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0, "%s", hex);
}

static void test_utf8(void)
{
	CHECK(tr_utf8_valid("plain", 5), "ascii");
	CHECK(tr_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14), "multi-byte");
	CHECK(!tr_utf8_valid("\xc3", 1), "truncated");
	CHECK(!tr_utf8_valid("\xc0\xaf", 2), "overlong");
	CHECK(!tr_utf8_valid("\xed\xa0\x80", 3), "surrogate");
	CHECK(!tr_utf8_valid("\xff", 1), "invalid byte");
}

static void test_files(void)
{
	char dir[] = "/tmp/tracer-unit-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	char path[256], sub[256];
	snprintf(path, sizeof path, "%s/a.txt", dir);
	snprintf(sub, sizeof sub, "%s/x/y/z", dir);
	struct tr_err e;
	CHECK(tr_write_atomic(path, "hello\n", 6, &e) == 0, "%s", e.msg);
	char *data;
	size_t len;
	CHECK(tr_read_file(path, &data, &len, &e) == 0 && len == 6 && strcmp(data, "hello\n") == 0, "read back");
	tr_free(data);
	CHECK(tr_read_file(dir, &data, &len, &e) == -1, "a directory is not a file");
	CHECK_ERR(e, "not a regular file");
	CHECK(tr_read_file("/nonexistent/file", &data, &len, &e) == -1, "missing file");
	CHECK_ERR(e, "/nonexistent/file: cannot open");
	CHECK(tr_mkdirs(sub, &e) == 0, "%s", e.msg);
	CHECK(tr_write_atomic("/nonexistent/dir/f", "x", 1, &e) == -1, "unwritable");
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK(system(cmd) == 0, "cleanup");
}

static void test_zstd(void)
{
	struct tr_buf b = {0};
	for (int i = 0; i < 1000; i++)
		tr_buf_printf(&b, "line %d of the test\n", i);
	char *z, *back;
	size_t zn, n;
	struct tr_err e;
	CHECK(tr_zstd_compress(b.data, b.len, &z, &zn, &e) == 0 && zn < b.len, "compress");
	CHECK(tr_zstd_decompress(z, zn, "mem", &back, &n, &e) == 0 && n == b.len && memcmp(back, b.data, n) == 0,
	      "round trip");
	tr_free(back);
	CHECK(tr_zstd_decompress(z, zn / 2, "half", &back, &n, &e) == -1, "truncated frame rejected");
	CHECK(tr_zstd_decompress("garbage!", 8, "junk", &back, &n, &e) == -1, "garbage rejected");
	CHECK_ERR(e, "junk:");
	tr_free(z);
	tr_buf_free(&b);
}

static void test_alloc_hook(void)
{
	tr_alloc_fail_at(2);
	void *a = tr_malloc(8), *b = tr_malloc(8), *c = tr_malloc(8);
	CHECK(a && !b && c, "only the 2nd allocation fails");
	tr_free(a), tr_free(c);
	tr_alloc_fail_at(0);
}

static void test_rng(void)
{
	gsl_rng *r1 = tr_rng_new(42), *r2 = tr_rng_new(42), *r3 = tr_rng_new(43);
	unsigned long a = gsl_rng_get(r1), b = gsl_rng_get(r2), c = gsl_rng_get(r3);
	CHECK(a == b && a != c, "same seed, same stream");
	gsl_rng_free(r1), gsl_rng_free(r2), gsl_rng_free(r3);
}

/* Address-space reservations: room is checked against what others hold; fault injection fails them. */
static void test_reserve(void)
{
	CHECK(tr_mem_reserve(1e6) == 0, "1 MB reservation refused");
	CHECK(tr_mem_reserve(1e18) == -1, "an exabyte reserved");
	tr_mem_release(1e6);
	CHECK(tr_mem_reserve(1e18) == -1, "an exabyte reserved with nothing held");
	tr_alloc_fail_at(1);
	CHECK(tr_mem_reserve(1e6) == -1, "fault injection does not reach the reservation");
	tr_alloc_fail_at(0);
	CHECK(tr_blas_begin() == 0, "room for the BLAS buffer");
	tr_blas_end();
	CHECK(tr_blas_begin() == 0, "second BLAS call on the thread");
	tr_blas_end();
}

/* Shortest round-trip reals: 0.95 stays 0.95, every double reads back exactly, strings are untouched. */
static void test_json_reals(void)
{
	json_t *o = json_pack("{s:f, s:f, s:f, s:f, s:I, s:s, s:[f]}", "target", 0.95, "third", 1.0 / 3, "one", 1.0,
			      "tiny", 1e-300, "n", (json_int_t)8000, "text", "0.94999999999999996 \"1.0\"", "a", -2.5e20);
	json_object_set_new(o, "inf", tr_json_real(INFINITY));
	json_object_set_new(o, "nan", tr_json_real(NAN));
	char *s = tr_json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	CHECK(s && strcmp(s, "{\"target\":0.95,\"third\":0.3333333333333333,\"one\":1.0,\"tiny\":1e-300,\"n\":8000,"
			     "\"text\":\"0.94999999999999996 \\\"1.0\\\"\",\"a\":[-2.5e+20],\"inf\":null,\"nan\":null}") == 0,
	      "%s", s ? s : "(null)");
	free(s);
	/* strings are copied whole: an escaped backslash before the closing quote, numbers inside */
	json_t *t = json_pack("{s:s,s:s,s:f}", "path", "C:\\d\\", "n", "-1.50 \\\"2.0", "x", 0.5);
	s = tr_json_dumps(t, JSON_COMPACT | JSON_PRESERVE_ORDER);
	CHECK(s && strcmp(s, "{\"path\":\"C:\\\\d\\\\\",\"n\":\"-1.50 \\\\\\\"2.0\",\"x\":0.5}") == 0, "%s", s ? s : "(null)");
	free(s);
	json_decref(t);
	s = tr_json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_t *back = s ? json_loads(s, 0, NULL) : NULL;
	CHECK(back && json_is_real(json_object_get(back, "one")), "1.0 reads back as a real");
	CHECK(back && json_real_value(json_object_get(back, "third")) == 1.0 / 3, "1/3 round-trips");
	free(s);
	json_decref(back);
	json_decref(o);
	/* every double of a seeded sample reads back bit for bit, in at most 17 significant digits */
	gsl_rng *r = tr_rng_new(17);
	int bad = 0;
	for (int i = 0; i < 20000; i++) {
		double v = (gsl_rng_uniform(r) - 0.5) * pow(10, (double)(int)(gsl_rng_uniform_int(r, 80)) - 40);
		char buf[64];
		int n = tr_shortest_real(v, buf, sizeof buf);
		bad += n < 0 || strtod(buf, NULL) != v || !strpbrk(buf, ".e");
	}
	gsl_rng_free(r);
	CHECK(bad == 0, "%d of 20000 doubles did not round-trip", bad);
}

int main(void)
{
	test_json_reals();
	test_reserve();
	test_sha256();
	test_utf8();
	test_files();
	test_zstd();
	test_alloc_hook();
	test_rng();
	return unit_done();
}
