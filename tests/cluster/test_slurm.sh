# The Slurm path on a real one-node cluster (started here, stopped by PID at the end): the quick
# reproduction as job arrays gives the same cells as a local run; a task killed mid-run leaves its cell
# missing, the collector says so, and resubmission computes only the missing cell.
. "$(dirname "$0")/../cli/lib.sh"
. "$ROOT/tests/cluster/cluster.sh"

C=$SCRATCH/cluster
trap 'cluster_stop "$C"; chmod -R u+w "$SCRATCH" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
if ! cluster_start "$C"; then
	echo "FAIL: could not start the one-node cluster"; tail -n 5 "$C"/log/*.log 2>/dev/null
	echo "0 passed, 1 failed"
	exit 1
fi
pass=$((pass + 1))
MK="make -s -C $ROOT BIN=$TRACER BUILD=${TEST_BUILD:-build}"

ok "local reproduce-quick" $MK reproduce-quick QUICK="$SCRATCH/local" JOBS=2
ok "reproduce-quick on Slurm" $MK reproduce-quick SCHEDULER=slurm QUICK="$SCRATCH/slurm"
check "16 cells from the job array" [ "$(ls "$SCRATCH/slurm/cells/quick" | grep -c '\.json$')" -eq 16 ]
check "Slurm cells byte-identical to local ones" diff -r -x '*.time' "$SCRATCH/local/cells" "$SCRATCH/slurm/cells"
# every column but fit_seconds (found by its header name)
untimed() { awk -F'\t' -v OFS='\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "fit_seconds") c = i } { $c = ""; print }' "$1"; }
untimed "$SCRATCH/local/tables/quick.tsv" >a.tsv
untimed "$SCRATCH/slurm/tables/quick.tsv" >b.tsv
check "the same table (timings aside)" cmp -s a.tsv b.tsv
nfig=$(ls "$ROOT"/plots/fig*.gp | wc -l)
check "the collector drew the figures (as many as the local run, at least 6 scripts x PNG+SVG)" \
	sh -c "[ \"\$(ls '$SCRATCH/slurm/figures' | wc -l)\" -eq \"\$(ls '$SCRATCH/local/figures' | wc -l)\" ] && [ \"\$(ls '$SCRATCH/slurm/figures' | wc -l)\" -ge 12 ] && [ $nfig -ge 6 ]"
check "a log per task" [ "$(ls "$SCRATCH/slurm/slurm" | grep -c '^quick-[0-9]*\.log$')" -eq 16 ]
check "task logs say which cell" grep -q '^tracer cell 0 of ' "$SCRATCH/slurm/slurm/quick-0.log"

# Kill one task mid-run: one task at a time, SIGKILL the first cell process seen running.
K=$SCRATCH/killed
TRACER=$TRACER "$ROOT/scripts/slurm-submit.sh" "$ROOT/experiments/quick.spec" --results "$K" --tables quick \
	--max-running 1 --no-wait >submit1.log 2>&1
victim=""
i=0
while [ -z "$victim" ] && [ $i -lt 600 ]; do
	pid=$(pgrep -f "sweep $ROOT/experiments/quick.spec --cell ([2367]) " | head -n 1)
	if [ -n "$pid" ]; then
		victim=$(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | sed -n 's/.*--cell \([0-9]*\).*/\1/p')
		kill -9 "$pid" 2>/dev/null
	fi
	sleep 0.05
	i=$((i + 1))
done
check "a running task was killed (cell $victim)" [ -n "$victim" ]
collector=$(sed -n 's/^slurm-submit: collector job \([0-9]*\).*/\1/p' submit1.log)
while [ -n "$(squeue -h -j "$collector" 2>/dev/null)" ]; do sleep 0.5; done
missing=$("$TRACER" sweep "$ROOT/experiments/quick.spec" --missing --results "$K")
check "exactly the killed cell is missing ($missing)" [ "$missing" = "$victim" ]
check "the collector failed instead of plotting partial results" [ "$(cat "$K/slurm/collect.status")" != 0 ]
check "the collector named the missing cell" grep -q "^missing: quick cell $victim " "$K/slurm/collect.log"
check "no figures from partial results" [ ! -e "$K/figures/fig1-coverage.png" ]
TRACER=$TRACER "$ROOT/scripts/slurm-submit.sh" "$ROOT/experiments/quick.spec" --results "$K" --tables quick >submit2.log 2>&1
check "resubmission completes" [ $? -eq 0 ]
check "resubmission ran only the missing cell" grep -q "^slurm-submit: quick: job [0-9]*, 1 cells ($victim)" submit2.log
check "the resumed cells equal the local run" diff -r -x '*.time' "$SCRATCH/local/cells" "$K/cells"
finish
