#!/bin/sh
# Runs every unit test program (build/tests/test_*) and every command-line test script (tests/cli/*.sh),
# adds up their "N passed, N failed" lines and prints the total. Exits 1 if anything failed.
cd "$(dirname "$0")/.." || exit 1
TRACER_ROOT=$(pwd) # unit tests find datasets/ and the mirror from here, wherever they were built
export TRACER_ROOT
build=${TEST_BUILD:-build}
passed=0 failed=0 broken=""
run() {
	name=$1; shift
	out=$("$@" 2>&1); rc=$?
	line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
	if [ -z "$line" ]; then
		printf '%s\n' "$out"
		echo "$name: no result line (exit $rc)"
		failed=$((failed + 1)); broken="$broken $name"; return
	fi
	p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
	passed=$((passed + p)); failed=$((failed + f))
	if [ "$f" != 0 ] || [ $rc != 0 ]; then
		printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
		[ "$f" = 0 ] && failed=$((failed + 1))
		broken="$broken $name"
	fi
	printf '%-28s %s\n' "$name" "$line"
	printf '%s\n' "$out" | grep '^skipped: ' || true # a test that could not run says so
}
for t in "$build"/tests/test_*; do
	case "$t" in *.d) continue ;; esac
	[ -x "$t" ] && run "$(basename "$t")" "$t"
done
for t in "$build"/fuzz/replay_*; do
	[ -x "$t" ] && run "fuzz corpus ${t##*/replay_}" "$t" "tests/fuzz/corpus/${t##*/replay_}"
done
for t in tests/cli/test_*.sh; do
	run "$(basename "$t")" sh "$t"
done
# The Slurm test needs root and Debian's slurm-wlm and munge (make test installs them when it can).
if [ "$(id -u)" = 0 ] && command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
	run "cluster test_slurm.sh" sh tests/cluster/test_slurm.sh
else
	echo "cluster test_slurm.sh         not run: needs root, slurm-wlm and munge (make test-cluster)"
fi
[ -n "$broken" ] && echo "failing:$broken"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
