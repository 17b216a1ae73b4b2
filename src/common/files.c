/*
 * files.c - files and directories on disk: whole-file reads, atomic writes through private temporaries,
 * and tracer's output directories (artifacts), which are replaced only when tracer wrote them.
 *
 * A temporary is created beside its destination, named `.NAME.tmp.XXXXXX`, by mkstemp / mkdtemp: the
 * name is unpredictable and opened with O_EXCL, so a file or symlink planted there is never followed or
 * reused. A temporary (or a `.NAME.old.XXXXXX` left between two renames) that a killed run left behind is
 * removed by the next write to the same destination, once it is older than the running process.
 *
 * An artifact directory holds a manifest.json whose "format" starts with "tracer-" and whose "files"
 * object names every other file in it with its SHA-256; its subdirectories are artifacts too. Only such a
 * directory is replaced, and only the files it lists are deleted.
 */
#define _GNU_SOURCE
#include "common.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static time_t process_start;
static mode_t file_mode = 0644, dir_mode = 0755;

/* Runs before main, while the process has one thread: the umask can only be read by setting it. */
__attribute__((constructor)) static void files_init(void)
{
	process_start = time(NULL);
	mode_t m = umask(022);
	umask(m);
	file_mode = 0666 & ~m;
	dir_mode = 0777 & ~m;
}

int tr_file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int tr_read_file(const char *path, char **data, size_t *len, struct tr_err *e)
{
	*data = NULL;
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return tr_fail(e, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return tr_fail(e, "%s: not a regular file", path);
	}
	struct tr_buf b = {0};
	char chunk[1 << 16];
	size_t got;
	while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (tr_buf_add(&b, chunk, got)) {
			fclose(f);
			tr_buf_free(&b);
			return tr_fail(e, "%s: out of memory", path);
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		tr_buf_free(&b);
		return tr_fail(e, "%s: read error", path);
	}
	if (!b.data && tr_buf_add(&b, "", 0))
		return tr_fail(e, "%s: out of memory", path);
	*data = b.data;
	*len = b.len;
	return 0;
}

/* ---- paths ---- */

int tr_path_clean(const char *path, char *buf, size_t size, struct tr_err *e)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == 0)
		return tr_fail(e, "empty path");
	if (n >= size)
		return tr_fail(e, "%.64s...: path too long", path);
	memcpy(buf, path, n);
	buf[n] = 0;
	return 0;
}

/* The parent directory and the last component of path (trailing slashes ignored). */
static int split(const char *path, char parent[PATH_MAX], char base[PATH_MAX], struct tr_err *e)
{
	char clean[PATH_MAX];
	if (tr_path_clean(path, clean, PATH_MAX, e))
		return -1;
	char *slash = strrchr(clean, '/');
	if (!slash) {
		strcpy(parent, ".");
		strcpy(base, clean);
	} else {
		*slash = 0;
		strcpy(parent, slash == clean ? "/" : clean);
		strcpy(base, slash + 1);
	}
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return tr_fail(e, "%s: not a file or directory name", path);
	return 0;
}

/* 1 when name is one of tracer's temporaries, `.BASE.tmp.XXXXXX` or `.BASE.old.XXXXXX` (any BASE when
 * base is NULL). */
static int is_litter(const char *name, const char *base)
{
	size_t n = strlen(name);
	if (n < 1 + 1 + 11 || name[0] != '.')
		return 0;
	const char *tail = name + n - 11; /* ".tmp.XXXXXX" */
	if (strncmp(tail, ".tmp.", 5) != 0 && strncmp(tail, ".old.", 5) != 0)
		return 0;
	for (const char *r = tail + 5; *r; r++)
		if (!isalnum((unsigned char)*r))
			return 0;
	return !base || ((size_t)(tail - name - 1) == strlen(base) && strncmp(name + 1, base, strlen(base)) == 0);
}

/* Removes the temporaries of `base` in `parent` that a killed run left (older than this process). */
static void clean_litter(const char *parent, const char *base)
{
	DIR *d = opendir(parent);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char p[PATH_MAX];
		struct stat st;
		if (!is_litter(de->d_name, base) ||
		    (size_t)snprintf(p, sizeof p, "%s/%s", parent, de->d_name) >= sizeof p)
			continue;
		if (lstat(p, &st) == 0 && st.st_mtime < process_start)
			tr_remove_tree(p);
	}
	closedir(d);
}

static int temp_name(const char *path, char *parent, char *tmp, struct tr_err *e)
{
	char base[PATH_MAX];
	if (split(path, parent, base, e))
		return -1;
	if ((size_t)snprintf(tmp, PATH_MAX, "%s/.%s.tmp.XXXXXX", parent, base) >= PATH_MAX)
		return tr_fail(e, "%s: path too long", path);
	clean_litter(parent, base);
	return 0;
}

/* ---- files ---- */

int tr_write_atomic(const char *path, const void *data, size_t len, struct tr_err *e)
{
	char parent[PATH_MAX], tmp[PATH_MAX];
	if (temp_name(path, parent, tmp, e))
		return -1;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return tr_fail(e, "%s: cannot create a temporary file in %s: %s", path, parent, strerror(errno));
	const char *p = data;
	size_t left = len;
	int err = 0;
	while (left > 0 && !err) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno != EINTR)
			err = errno;
		else if (w > 0)
			p += w, left -= (size_t)w;
	}
	if (!err && (fchmod(fd, file_mode) != 0 || fsync(fd) != 0))
		err = errno;
	if (close(fd) != 0 && !err)
		err = errno;
	if (err) {
		unlink(tmp);
		return tr_fail(e, "%s: write failed: %s", path, strerror(err));
	}
	if (rename(tmp, path) != 0) {
		err = errno;
		unlink(tmp);
		return tr_fail(e, "%s: cannot rename into place: %s", path, strerror(err));
	}
	return 0;
}

int tr_mkdirs(const char *path, struct tr_err *e)
{
	char buf[PATH_MAX];
	if (tr_path_clean(path, buf, sizeof buf, e))
		return -1;
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(buf, 0777) != 0 && errno != EEXIST)
				return tr_fail(e, "%s: cannot create directory: %s", buf, strerror(errno));
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)type, (void)ftw;
	return remove(path);
}

int tr_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- artifact directories ---- */

int tr_dir_begin(const char *dir, char *tmp, struct tr_err *e)
{
	char parent[PATH_MAX];
	if (temp_name(dir, parent, tmp, e))
		return -1;
	if (!mkdtemp(tmp))
		return tr_fail(e, "%s: cannot create a temporary directory in %s: %s", dir, parent, strerror(errno));
	if (chmod(tmp, dir_mode) != 0) {
		int err = errno;
		rmdir(tmp);
		return tr_fail(e, "%s: cannot set permissions: %s", tmp, strerror(err));
	}
	return 0;
}

/* The "files" object of dir/manifest.json when it is a tracer artifact's (owned), else NULL. */
static json_t *artifact_files(const char *dir)
{
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s/manifest.json", dir) >= sizeof path)
		return NULL;
	json_t *m = json_load_file(path, 0, NULL);
	const char *fmt = json_string_value(json_object_get(m, "format"));
	json_t *files = json_object_get(m, "files");
	if (!fmt || strncmp(fmt, "tracer-", 7) != 0 || !json_is_object(files)) {
		json_decref(m);
		return NULL;
	}
	json_incref(files);
	json_decref(m);
	return files;
}

/*
 * 0 when dir is an artifact: every entry is its manifest, a regular file the manifest lists, one of
 * tracer's temporaries, or an artifact directory. Else -1 with the first foreign entry in e.
 */
static int artifact_check(const char *dir, int depth, struct tr_err *e)
{
	json_t *files = artifact_files(dir);
	if (!files)
		return tr_fail(e, "%s: exists and is not a tracer artifact (no tracer manifest.json listing its files)", dir);
	DIR *d = opendir(dir);
	int rc = d ? 0 : tr_fail(e, "%s: cannot read: %s", dir, strerror(errno));
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		const char *n = de->d_name;
		char p[PATH_MAX];
		struct stat st;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "manifest.json") == 0 || is_litter(n, NULL))
			continue;
		if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, n) >= sizeof p || lstat(p, &st) != 0)
			rc = tr_fail(e, "%s: cannot inspect \"%s\"", dir, n);
		else if (S_ISREG(st.st_mode) && json_object_get(files, n))
			continue;
		else if (!(S_ISDIR(st.st_mode) && depth < 8 && artifact_check(p, depth + 1, NULL) == 0))
			rc = tr_fail(e, "%s: exists and holds \"%s\", which tracer did not write", dir, n);
	}
	if (d)
		closedir(d);
	json_decref(files);
	return rc;
}

/* Deletes what artifact_check accepted, and nothing else: listed files, temporaries, artifact
 * subdirectories, the manifest, then the directory (left in place if anything else appeared). */
static void artifact_remove(const char *dir, int depth)
{
	json_t *files = artifact_files(dir);
	DIR *d = files ? opendir(dir) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		const char *n = de->d_name;
		char p[PATH_MAX];
		struct stat st;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "manifest.json") == 0 ||
		    (size_t)snprintf(p, sizeof p, "%s/%s", dir, n) >= sizeof p || lstat(p, &st) != 0)
			continue;
		if (is_litter(n, NULL))
			tr_remove_tree(p);
		else if (S_ISREG(st.st_mode) && json_object_get(files, n))
			unlink(p);
		else if (S_ISDIR(st.st_mode) && depth < 8 && artifact_check(p, depth + 1, NULL) == 0)
			artifact_remove(p, depth + 1);
	}
	if (d) {
		closedir(d);
		char p[PATH_MAX];
		if ((size_t)snprintf(p, sizeof p, "%s/manifest.json", dir) < sizeof p)
			unlink(p);
		rmdir(dir);
	}
	json_decref(files);
}

int tr_dir_check(const char *dir, int force, struct tr_err *e)
{
	char parent[PATH_MAX], base[PATH_MAX];
	struct stat st;
	if (split(dir, parent, base, e))
		return -1;
	if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
		return tr_fail(e, "%s: directory %s does not exist", dir, parent);
	if (lstat(dir, &st) != 0)
		return errno == ENOENT ? 0 : tr_fail(e, "%s: %s", dir, strerror(errno));
	if (force)
		return 0;
	if (!S_ISDIR(st.st_mode))
		return tr_fail(e, "%s: exists and is not a directory", dir);
	return artifact_check(dir, 0, e);
}

/* Moves dir aside to DIR.replaced.N (the first N free), intact. */
static int move_aside(const char *dir, char *aside, size_t asize, struct tr_err *e)
{
	for (int i = 1; i < 1000; i++) {
		if ((size_t)snprintf(aside, asize, "%s.replaced.%d", dir, i) >= asize)
			return tr_fail(e, "%s: path too long", dir);
		if (renameat2(AT_FDCWD, dir, AT_FDCWD, aside, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST || errno == ENOTEMPTY)
			continue;
		struct stat st;
		if ((errno == EINVAL || errno == ENOSYS) && lstat(aside, &st) != 0 && rename(dir, aside) == 0)
			return 0;
		if (errno != EEXIST)
			return tr_fail(e, "%s: cannot move aside: %s", dir, strerror(errno));
	}
	return tr_fail(e, "%s: cannot move aside: %s.replaced.1 to .999 all exist", dir, dir);
}

int tr_dir_commit(const char *tmp, const char *path, int force, char *aside, size_t asize, struct tr_err *e)
{
	char dir[PATH_MAX], parent[PATH_MAX], base[PATH_MAX];
	struct stat st;
	if (aside && asize)
		aside[0] = 0;
	if (tr_path_clean(path, dir, sizeof dir, e) || split(dir, parent, base, e))
		return -1;
	if (lstat(dir, &st) != 0) {
		if (rename(tmp, dir) != 0)
			return tr_fail(e, "%s: cannot rename into place: %s", dir, strerror(errno));
		return 0;
	}
	if (!S_ISDIR(st.st_mode) || artifact_check(dir, 0, e) != 0) {
		char buf[PATH_MAX + 32];
		if (!force)
			return S_ISDIR(st.st_mode) ? -1 : tr_fail(e, "%s: exists and is not a directory", dir);
		if (move_aside(dir, aside ? aside : buf, aside ? asize : sizeof buf, e))
			return -1;
		if (rename(tmp, dir) != 0)
			return tr_fail(e, "%s: cannot rename into place: %s", dir, strerror(errno));
		return 0;
	}
	/* a tracer artifact: swap it with the new one in one step, then delete the old one's own files */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
		artifact_remove(tmp, 0);
		return 0;
	}
	char old[PATH_MAX];
	if ((size_t)snprintf(old, sizeof old, "%s/.%s.old.XXXXXX", parent, base) >= sizeof old || !mkdtemp(old))
		return tr_fail(e, "%s: cannot make room for the old directory: %s", dir, strerror(errno));
	if (rename(dir, old) != 0) {
		int err = errno;
		rmdir(old);
		return tr_fail(e, "%s: cannot move the old directory aside: %s", dir, strerror(err));
	}
	if (rename(tmp, dir) != 0) {
		int err = errno;
		rename(old, dir);
		return tr_fail(e, "%s: cannot rename into place: %s", dir, strerror(err));
	}
	artifact_remove(old, 0);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int tr_dir_write_manifest(const char *tmp, struct json_t *manifest, struct tr_err *e)
{
	DIR *d = opendir(tmp);
	if (!d)
		return tr_fail(e, "%s: cannot read: %s", tmp, strerror(errno));
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		char p[PATH_MAX];
		struct stat st;
		if (de->d_name[0] == '.' || strcmp(de->d_name, "manifest.json") == 0 ||
		    (size_t)snprintf(p, sizeof p, "%s/%s", tmp, de->d_name) >= sizeof p || lstat(p, &st) != 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (tr_grow(&names, &cap, n + 1, sizeof *names) || !(names[n] = tr_strdup(de->d_name)))
			rc = tr_fail(e, "out of memory");
		else
			n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof *names, cmp_str);
	json_t *files = rc ? NULL : json_object();
	if (!rc && !files)
		rc = tr_fail(e, "out of memory");
	for (size_t i = 0; i < n && !rc; i++) {
		char p[PATH_MAX], hex[65];
		snprintf(p, sizeof p, "%s/%s", tmp, names[i]);
		if (tr_sha256_file(p, hex, e) || json_object_set_new(files, names[i], json_string(hex)))
			rc = -1;
	}
	for (size_t i = 0; i < n; i++)
		tr_free(names[i]);
	tr_free(names);
	if (rc || json_object_set_new(manifest, "files", files)) {
		if (!rc)
			tr_fail(e, "out of memory");
		return -1;
	}
	char *s = tr_json_dumps(manifest, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (!s)
		return tr_fail(e, "out of memory serialising the manifest");
	struct tr_buf b = {0};
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/manifest.json", tmp);
	rc = tr_buf_puts(&b, s) || tr_buf_add(&b, "\n", 1) ? tr_fail(e, "out of memory") : tr_write_atomic(p, b.data, b.len, e);
	free(s);
	tr_buf_free(&b);
	return rc;
}

int tr_dir_verify(const char *dir, struct json_t *manifest, struct tr_err *e)
{
	json_t *files = json_object_get(manifest, "files");
	if (!json_is_object(files))
		return tr_fail(e, "%s/manifest.json: no \"files\" with the checksums of the directory's files", dir);
	const char *name;
	json_t *v;
	json_object_foreach(files, name, v)
	{
		char p[PATH_MAX], hex[65];
		const char *want = json_string_value(v);
		if (!want || !*name || name[0] == '.' || strchr(name, '/'))
			return tr_fail(e, "%s/manifest.json: bad entry \"%s\" in \"files\"", dir, name);
		if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) >= sizeof p)
			return tr_fail(e, "%s: path too long", dir);
		if (tr_sha256_file(p, hex, e))
			return -1;
		if (strcmp(hex, want) != 0)
			return tr_fail(e, "%s: sha256 mismatch (manifest.json has %.12s..., the file %.12s...): the file was "
				       "changed after tracer wrote it", p, want, hex);
	}
	return 0;
}
