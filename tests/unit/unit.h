/*
 * unit.h - a minimal unit-test harness: CHECK counts, main prints "N passed, N failed".
 */
#ifndef TR_UNIT_H
#define TR_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

#define CHECK(cond, ...)                                                                                    \
	do {                                                                                                \
		if (cond) {                                                                                 \
			unit_passed++;                                                                      \
		} else {                                                                                    \
			unit_failed++;                                                                      \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
			fprintf(stderr, __VA_ARGS__);                                                       \
			fputc('\n', stderr);                                                                \
		}                                                                                           \
	} while (0)

/* Checks that an error message contains the expected text. */
#define CHECK_ERR(e, text) CHECK(strstr((e).msg, (text)) != NULL, "error \"%s\" lacks \"%s\"", (e).msg, (text))

static inline int unit_done(void)
{
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed ? 1 : 0;
}

#endif
