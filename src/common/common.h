/*
 * common.h - errors, allocation, files, hashing and randomness shared by every module.
 *
 * Library code never exits and never prints to stdout: a function that can fail returns 0 on success
 * or -1 on failure and fills the caller's `struct tr_err` with a one-line message that names the file
 * and line of the bad input ("traces.jsonl:17: missing \"teacher\"").
 */
#ifndef TR_COMMON_H
#define TR_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define TR_VERSION "0.1.0"
#define TR_ERRMAX 1024

struct tr_err {
	char msg[TR_ERRMAX];
};

/* Formats a message into e (which may be NULL) and returns -1, so callers can `return tr_fail(...)`. */
int tr_fail(struct tr_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Allocation. Every allocation of the project goes through these so that a test can make the Nth one
 * fail (tr_alloc_fail_at) and check that each error path frees what it took. They return NULL on
 * failure, never abort.
 */
void *tr_malloc(size_t n);
void *tr_calloc(size_t n, size_t size);
void *tr_realloc(void *p, size_t n);
char *tr_strdup(const char *s);
char *tr_strndup(const char *s, size_t n);
void tr_free(void *p);
/* Makes the Nth allocation from now fail (0 disables). Returns how many allocations were made. */
void tr_alloc_fail_at(unsigned long n);
unsigned long tr_alloc_count(void);

/*
 * Headroom for libraries that cannot report a failed allocation (liblinear and libsvm crash or abort
 * when malloc returns NULL). tr_mem_reserve checks that `bytes` more can be allocated now, on top of
 * what other threads reserved and have not released, by a trial allocation of the whole sum (its pages
 * never touched, freed at once); on success it records the reservation and returns 0. While other
 * threads hold reservations it waits for them to be released before giving up; with none held by
 * others and no room it returns -1, as it does at once above 1 TiB (it counts as one allocation for
 * tr_alloc_fail_at). tr_mem_release gives one back.
 */
int tr_mem_reserve(double bytes);
void tr_mem_release(double bytes);

/*
 * Around BLAS level-2/3 calls (gsl_blas_dgemv, gsl_blas_dgemm): on a thread's first such call OpenBLAS
 * takes a work buffer of TR_BLAS_BUFFER bytes and, when the address space has no room for it, retries
 * forever. tr_blas_begin returns -1 when there is no room (then make no such call); otherwise call
 * tr_blas_end after the calls. Later calls on the same thread reuse the buffer and need no room.
 */
#define TR_BLAS_BUFFER (132.0 * (1 << 20))
int tr_blas_begin(void);
void tr_blas_end(void);

/* Grows *p (an array of *cap elements of size `size`) so that it holds at least `need`. */
int tr_grow(void *pp, size_t *cap, size_t need, size_t size);

/*
 * A table of named rows (gate rules, policy families): rows are pointers to structs whose first member is
 * their name (`const char *name`); the table ends at the first NULL. Rows are never removed.
 */
#define TR_REGISTRY_MAX 16
struct tr_registry {
	const void *v[TR_REGISTRY_MAX];
};
int tr_registry_count(const struct tr_registry *r);
int tr_registry_index(const struct tr_registry *r, const void *row); /* -1 when absent */
const void *tr_registry_find(const struct tr_registry *r, const char *name); /* NULL when absent */
/* Appends a row; -1 when its name is taken or the table is full. */
int tr_registry_add(struct tr_registry *r, const void *row);
/* The names joined by sep into buf (truncated to size); returns buf. */
const char *tr_registry_list(const struct tr_registry *r, const char *sep, char *buf, size_t size);

/* A growable byte buffer; always NUL-terminated when len > 0 or after tr_buf_add*. */
struct tr_buf {
	char *data;
	size_t len, cap;
};
int tr_buf_add(struct tr_buf *b, const void *p, size_t n);
int tr_buf_puts(struct tr_buf *b, const char *s);
int tr_buf_printf(struct tr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tr_buf_free(struct tr_buf *b);

/*
 * Binary blobs inside model files: raw host-order (little-endian on every supported machine) bytes
 * appended to a buffer, read back through a bounds-checked cursor.
 */
struct tr_cursor {
	const char *p, *end;
};
/* Copies n bytes out of the cursor; -1 when fewer are left. */
int tr_cursor_take(struct tr_cursor *c, void *dst, size_t n);

/*
 * Files (files.c). tr_read_file reads a whole regular file into a NUL-terminated buffer owned by the
 * caller. tr_write_atomic writes data to a private temporary beside PATH (mkstemp: `.NAME.tmp.XXXXXX`)
 * and renames it over PATH, so a reader never sees half a file and a planted symlink is never followed;
 * temporaries that a killed run left beside PATH are removed. tr_mkdirs creates a directory and its
 * parents. Trailing slashes are ignored everywhere.
 */
int tr_read_file(const char *path, char **data, size_t *len, struct tr_err *e);
int tr_write_atomic(const char *path, const void *data, size_t len, struct tr_err *e);
int tr_mkdirs(const char *path, struct tr_err *e);
int tr_file_exists(const char *path);
/* Copies path without its trailing slashes into buf. */
int tr_path_clean(const char *path, char *buf, size_t size, struct tr_err *e);
/* Removes a file or a directory tree (no error if it does not exist). Only for what tracer made. */
int tr_remove_tree(const char *path);

/*
 * Output directories ("artifacts"). An artifact holds a manifest.json whose "format" starts with
 * "tracer-" and whose "files" object gives the SHA-256 of every other file in it; its subdirectories
 * are artifacts too. Writing one: tr_dir_check (early, before the work: refuses a directory tracer did
 * not write unless force), tr_dir_begin (a private temporary directory beside DIR, tmp gets its path),
 * write the files, tr_dir_write_manifest (adds "files" to manifest and writes manifest.json last),
 * tr_dir_commit (puts tmp in place of DIR).
 *
 * tr_dir_commit replaces an existing DIR only when it is an artifact: the two are swapped in one step
 * and then only the files the old manifest lists are deleted. Any other DIR is refused; with force it
 * is moved aside intact to DIR.replaced.N (its name in aside) and never deleted.
 * tr_dir_verify checks every file the manifest lists against its SHA-256.
 */
struct json_t;
int tr_dir_check(const char *dir, int force, struct tr_err *e);
int tr_dir_begin(const char *dir, char *tmp /* PATH_MAX */, struct tr_err *e);
int tr_dir_write_manifest(const char *tmp, struct json_t *manifest, struct tr_err *e);
int tr_dir_commit(const char *tmp, const char *dir, int force, char *aside, size_t asize, struct tr_err *e);
int tr_dir_verify(const char *dir, struct json_t *manifest, struct tr_err *e);

/*
 * JSON (json.c). tr_json_dumps is json_dumps(j, flags) with every real written in its shortest form that
 * reads back to the same double: %.15g, %.16g or %.17g, the first that round-trips (0.95, never
 * 0.94999999999999996), always with a '.' or an exponent so that it stays a real. Every JSON file tracer
 * writes goes through it, except experiment cells (their bytes are kept as they were: %.17g). The text is
 * the caller's (free or tr_free); NULL when out of memory. tr_shortest_real writes that form of v into buf and
 * returns its length (-1 when size is too small). tr_json_real: a number, or null for ±inf and NaN (JSON
 * has neither; a writer that must tell them apart adds a companion field).
 */
char *tr_json_dumps(const struct json_t *j, size_t flags);
int tr_shortest_real(double v, char *buf, size_t size);
struct json_t *tr_json_real(double v);

/* Markdown: appends s with what Markdown would interpret (and HTML) escaped, line breaks as spaces. */
int tr_buf_md_escape(struct tr_buf *b, const char *s);

/* zstd: compress / decompress a whole buffer; the output is owned by the caller. */
int tr_zstd_compress(const void *src, size_t n, char **out, size_t *outn, struct tr_err *e);
int tr_zstd_decompress(const void *src, size_t n, const char *what, char **out, size_t *outn,
		       struct tr_err *e);

/* SHA-256 (nettle) as 64 lowercase hex digits plus NUL. */
void tr_sha256_hex(const void *data, size_t n, char hex[65]);
int tr_sha256_file(const char *path, char hex[65], struct tr_err *e);

/* The project root: the directory that holds the running tracer binary (or TRACER_ROOT). */
const char *tr_root_dir(void);
/* Joins a path relative to the root into buf; absolute paths are kept as they are. */
void tr_root_path(const char *rel, char *buf, size_t size);

/* Seconds on the monotonic clock (for elapsed times only). */
double tr_now(void);

/* UTF-8: 1 if the n bytes are valid UTF-8. */
int tr_utf8_valid(const char *s, size_t n);

/*
 * Randomness: every random choice takes a generator made here from an explicit seed (GSL's MT19937),
 * so the same seed gives the same result on every machine. Free with gsl_rng_free.
 */
#include <gsl/gsl_rng.h>
gsl_rng *tr_rng_new(uint64_t seed);
/*
 * Library set-up, once per process (tr_rng_new calls it too): GSL's aborting error handler off,
 * OpenBLAS on one thread. (jansson keeps its own allocator: when one of its string-buffer allocations
 * fails, its lexer drops the byte and carries on - measured with the fault-injection test - so failing
 * its allocations would test jansson, not us.)
 */
void tr_gsl_init(void);

#endif
