#!/bin/sh
# Line coverage (gcov) of the test suite in the given source folders: one line per file, a total per
# folder, and a failing exit when a folder is under the threshold. Run by `make coverage` after the
# suite ran on the instrumented build in $BUILD.
BUILD=${BUILD:-build/coverage}
MIN=${MIN:-95}
status=0
for dir in "$@"; do
	gcov -n -o "$BUILD/$dir" "$dir"/*.c 2>/dev/null | awk -v dir="$dir" -v min="$MIN" '
		/^File / { f = $2; gsub(/\047/, "", f) }
		/^Lines executed:/ && f ~ "^" dir "/" {
			split($2, a, ":"); pct = a[2] + 0; n = $4 + 0
			hit = pct * n / 100; th += hit; tn += n
			printf "  %-34s %6.1f%% of %4d lines\n", f, pct, n
			f = ""
		}
		END {
			p = tn ? 100 * th / tn : 0
			printf "%-36s %6.1f%% of %4d lines%s\n", dir, p, tn, p + 1e-9 < min ? "   BELOW " min "%" : ""
			exit p + 1e-9 < min
		}' || status=1
done
exit $status
