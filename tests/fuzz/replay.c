/*
 * replay.c - the plain driver of `make check`: runs every file under the given paths (files or
 * directories) through the target's LLVMFuzzerTestOneInput, without libFuzzer.
 */
#include <dirent.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: cannot open\n", path);
		return -1;
	}
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0, got;
	uint8_t chunk[65536];
	while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (n + got > cap) {
			cap = (n + got) * 2;
			buf = realloc(buf, cap);
		}
		memcpy(buf + n, chunk, got);
		n += got;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf ? buf : (const uint8_t *)"", n);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0, bad = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			bad++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad += run_file(argv[i]) != 0, files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
			bad += run_file(path) != 0, files++;
		}
		if (d)
			closedir(d);
	}
	printf("%d passed, %d failed\n", files - bad, bad);
	return bad ? 1 : 0;
}
