/*
 * fuzz.h - helpers for the fuzz targets. Each target defines LLVMFuzzerTestOneInput; it is built with
 * libFuzzer (`make fuzz`, clang) or with replay.c's main (`make check`, any compiler), which feeds the
 * saved corpus through the same entry point so that every past crash stays fixed.
 */
#ifndef TR_FUZZ_H
#define TR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/common/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy of the input (caller frees). */
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s) {
		memcpy(s, data, size);
		s[size] = 0;
	}
	return s;
}

/* Writes the input to a per-process scratch file and returns its path (for loaders that read files). */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
	static char path[256];
	snprintf(path, sizeof path, "/tmp/tracer-fuzz-%ld-%s", (long)getpid(), name);
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	return path;
}

#endif
