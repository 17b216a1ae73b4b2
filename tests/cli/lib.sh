# Helpers for the command-line tests: run the built ./tracer in a scratch directory, count results and
# print "N passed, N failed" at the end.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TRACER=${TRACER_BIN:-$ROOT/tracer}
FIX=$ROOT/tests/fixtures
SCRATCH=$(mktemp -d /tmp/tracer-cli.XXXXXX)
trap 'chmod -R u+w "$SCRATCH" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
export TRACER_CACHE="$SCRATCH/cache"
MIRROR=${TRACER_DATA:-$ROOT/../shared/datasets}
cd "$SCRATCH" || exit 1
pass=0 fail=0

_bad() {
	fail=$((fail + 1))
	echo "FAIL: $1"
	[ -s out ] && sed -n '1,5s/^/  stdout: /p' out
	[ -s err ] && sed -n '1,5s/^/  stderr: /p' err
	return 0
}

# ok DESC CMD...: the command exits 0.
ok() {
	d=$1; shift
	if "$@" >out 2>err; then pass=$((pass + 1)); else _bad "$d (exit $?)"; fi
}

# fails CODE PATTERN DESC CMD...: exits CODE with exactly one line on stderr matching PATTERN (grep -E).
fails() {
	code=$1 pat=$2 d=$3; shift 3
	"$@" >out 2>err; rc=$?
	if [ $rc -ne "$code" ]; then _bad "$d: exit $rc, expected $code"
	elif ! grep -q -E -- "$pat" err; then _bad "$d: stderr lacks /$pat/"
	elif [ "$code" = 1 ] && [ "$(wc -l <err)" -ne 1 ]; then _bad "$d: error is not one line"
	else pass=$((pass + 1)); fi
}

# has PATTERN DESC: the last command's stdout matches PATTERN (grep -E).
has() {
	if grep -q -E -- "$1" out; then pass=$((pass + 1)); else _bad "$2: stdout lacks /$1/"; fi
}

# check DESC CMD...: a test condition.
check() {
	d=$1; shift
	if "$@"; then pass=$((pass + 1)); else _bad "$d"; fi
}

# tiny_spec SEEDS: writes tiny.spec, a sweep of one banking77 cell of 300 traces per seed.
tiny_spec() {
	printf 'name tiny\nsets banking77:gold\nprotocols official\nbackends liblinear\ngrid liblinear C=10\n' >tiny.spec
	printf 'gates point\ntargets 0.90\ntraces 300\nseeds %s\n' "$1" >>tiny.spec
}

finish() {
	echo "$pass passed, $fail failed"
	[ $fail = 0 ]
}
