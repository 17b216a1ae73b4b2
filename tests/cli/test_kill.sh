# Interrupted writes: SIGKILL `tracer fit` and `tracer sweep` at pseudo-random points; a policy
# directory or a cell file is either absent or complete, and a rerun completes.
. "$(dirname "$0")/lib.sh"

delays=$(awk 'BEGIN { srand(7); for (i = 0; i < 8; i++) printf "%.2f ", rand() * 1.2 }')
complete_policy() {
	[ -d "$1" ] || return 0 # absent is fine
	for f in manifest.json frontier.json gate_audit.json report.md; do [ -s "$1/$f" ] || return 1; done
	grep -q '"format": "tracer-policy"' "$1/manifest.json"
}
for d in $delays; do
	"$TRACER" fit banking77:gpt-4o --out pol >/dev/null 2>&1 &
	pid=$!
	sleep "$d"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	check "after SIGKILL at ${d}s the policy is absent or complete" complete_policy pol
done
ok "fit after the interruptions" "$TRACER" fit banking77:gpt-4o --out pol
check "the policy is complete" complete_policy pol
ok "the finished policy evaluates" "$TRACER" eval pol banking77:gpt-4o --json

complete_cells() {
	for f in "$1"/cells/quick/*.json; do
		[ -e "$f" ] || continue
		tail -c 2 "$f" | grep -q '}' || return 1
	done
}
for d in $delays; do
	"$TRACER" sweep "$ROOT/experiments/quick.spec" --results res --jobs 2 >/dev/null 2>&1 &
	pid=$!
	sleep "$d"
	pkill -9 -P $pid 2>/dev/null # the cells in flight, then the sweep itself
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	check "after SIGKILL at ${d}s every cell file is whole" complete_cells res
done
ok "sweep after the interruptions" "$TRACER" sweep "$ROOT/experiments/quick.spec" --results res --jobs 2
check "all 16 cells" [ "$(ls res/cells/quick | grep -c '\.json$')" -eq 16 ]
ok "the same sweep uninterrupted" "$TRACER" sweep "$ROOT/experiments/quick.spec" --results ref --jobs 1
check "interrupted and uninterrupted sweeps give the same cells" diff -r -x '*.time' -x '*.tmp.*' res/cells ref/cells
finish
