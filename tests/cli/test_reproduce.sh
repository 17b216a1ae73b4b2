# make reproduce-quick: every figure and table produced; an interrupted sweep resumes without redoing
# finished cells; 1 and 2 jobs give byte-identical cells; collect names missing cells.
. "$(dirname "$0")/lib.sh"

Q=$SCRATCH/quick
ok "make reproduce-quick" make -s -C "$ROOT" reproduce-quick QUICK="$Q" JOBS=2 BUILD="${TEST_BUILD:-build}" BIN="$TRACER"
for f in fig1-coverage fig2-flywheel fig3-decisions fig4-honesty fig5-frontier fig6-backends fig7-honesty-frontier; do
	for ext in png svg; do
		check "$f.$ext produced and non-empty" [ -s "$Q/figures/$f.$ext" ]
	done
done
# 2 sets x 2 protocols x 2 trace counts x 4 rules x 3 targets
check "quick table has 96 rows" [ "$(tail -n +2 "$Q/tables/quick.tsv" | wc -l)" -eq 96 ]
check "16 cell files" [ "$(ls "$Q/cells/quick" | grep -c '\.json$')" -eq 16 ]
check "every row summed over 2 seeds" [ "$(tail -n +2 "$Q/tables/quick.tsv" | awk -F'\t' '$7 != 2' | wc -l)" -eq 0 ]

# 1 job and 2 jobs: the same bytes
ok "sweep with 1 job" "$TRACER" sweep "$ROOT/experiments/quick.spec" --results one --jobs 1
for f in "$Q"/cells/quick/*.json; do
	cmp -s "$f" "one/cells/quick/$(basename "$f")" || { echo "differs: $f"; touch differs; }
done
check "1 and 2 jobs give byte-identical cells" [ ! -e differs ]

# Interrupt a sweep after a few cells, rerun: only the missing cells are computed.
"$TRACER" sweep "$ROOT/experiments/quick.spec" --results part --jobs 1 >/dev/null 2>&1 &
pid=$!
i=0
while [ "$(ls part/cells/quick 2>/dev/null | grep -c '\.json$')" -lt 4 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
done1=$(ls part/cells/quick | grep -c '\.json$')
check "killed mid-sweep with cells left to do ($done1 of 16)" sh -c "[ $done1 -ge 4 ] && [ $done1 -lt 16 ]"
check "no half-written cell" sh -c "! ls part/cells/quick | grep -q '\.tmp\.'" 
ok "rerun" "$TRACER" sweep "$ROOT/experiments/quick.spec" --results part --jobs 1
computed=$(sed -n 's/.* \([0-9]*\) to compute.*/\1/p' err)
check "rerun computes only the $((16 - done1)) missing cells (said $computed)" [ "$computed" -eq $((16 - done1)) ]
check "resumed results equal an uninterrupted run" diff -r -x '*.time' part/cells one/cells

# A missing cell is named, and collect refuses partial tables unless asked.
rm "one/cells/quick/$(ls one/cells/quick | grep '\.json$' | head -n 1)"
"$TRACER" collect "$ROOT/experiments/quick.spec" --results one >out 2>err
check "collect fails with a missing cell" [ $? -eq 1 ]
check "it says why" grep -q 'cells missing; rerun the sweep' err
check "the missing cell is named" grep -q '^missing: quick cell ' err
ok "collect --partial" "$TRACER" collect "$ROOT/experiments/quick.spec" --results one --partial

# Spec errors name file and line.
printf 'name x\nsets banking77:gold\nbackends forest\n' >bad.spec
fails 1 'bad.spec:3: unknown backend "forest"' "bad backend in a spec" "$TRACER" sweep bad.spec --list
printf 'name x\nsets a:b\nbackends knn\ngates ltt\ntargets 0.9\nseeds 0-18446744073709551615\n' >bad3.spec
fails 1 'bad3.spec:6: bad seeds' "a seed range past 64 values" "$TRACER" sweep bad3.spec --list
printf 'name x\nsets banking77:gold\nbackends knn\ngrid knn k=5\ngrid knn k=7\n' >bad4.spec
fails 1 'bad4.spec:5: a second grid for knn' "two grids for one backend" "$TRACER" sweep bad4.spec --list
printf 'name x\nsets banking77:gold\nsplits 60/20/20 70/30/0\n' >bad5.spec
fails 1 'bad5.spec:3: bad split "70/30/0"' "a split with an empty part" "$TRACER" sweep bad5.spec --list
printf 'name x\nsets banking77:gold\ncrossfit ltt\ncrossfit ltt-plan\n' >bad6.spec
fails 1 'bad6.spec:4: expected one `crossfit RULE` line' "two crossfit lines" "$TRACER" sweep bad6.spec --list
# A splits line multiplies the cells (one per split) and names the split.
printf 'name sp\nsets banking77:gold\nprotocols pooled\nbackends liblinear\ngates ltt-plan\ntargets 0.9\ntraces 500\nseeds 0 1\nsplits 60/20/20 50/10/40\n' >sp.spec
ok "list a split sweep" "$TRACER" sweep sp.spec --list
check "two seeds x two splits" [ "$(grep -c 'split=' out)" -eq 4 ]
printf 'name x\nbogus 1\n' >bad2.spec
fails 1 'bad2.spec:2: unknown key "bogus"' "unknown key" "$TRACER" sweep bad2.spec --list

# The drift study on the committed summaries (a fresh clone): nothing to replay, so no policy is fitted;
# its policies are fitted as the summaries were (ltt, holdout calibration: fit's default is oof now).
mkdir -p dr/results && cp -r "$ROOT/results/drift" dr/results/
ok "drift study with every summary there" env TRACER="$TRACER" RESULTS=dr/results DRIFT_WORK=dr/work sh "$ROOT/scripts/drift-study.sh"
check "no policy fitted" [ -z "$(find dr/work -mindepth 1 -maxdepth 1 -type d)" ]
check "the summaries unchanged" diff -r "$ROOT/results/drift" dr/results/drift
check "the study's policies are fitted under holdout" grep -q -- '--gate ltt --calibration holdout' "$ROOT/scripts/drift-study.sh"
finish
