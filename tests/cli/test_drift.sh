# The drift guard: tracer replay (a drift closes the gate, outputs reproducible), tracer monitor + route
# (a closed gate defers everything, a refit reopens it), the monitor's state under SIGKILL, bad input.
. "$(dirname "$0")/lib.sh"

ok "fit a policy" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --out pol
ok "export its test traffic" "$TRACER" traces export banking77:gpt-4o --part test --out test.jsonl
# after the change point the teacher answers a label the policy cannot produce: agreement 0
sed 's/"teacher":"[^"]*"/"teacher":"not_a_label"/' test.jsonl >drift.jsonl

ok "replay with a change point" "$TRACER" replay pol test.jsonl --switch-at 400 --then drift.jsonl --audit-rate 0.2 \
	--every 50 --timeline tl.jsonl --summary sum.json
check "the drift is detected after the change point" grep -q '"detected":true,"detect_at":[0-9]*,"delay":[0-9]' sum.json
check "within 300 inputs of it" awk -F'"delay":' '{ split($2, a, ","); exit !(a[1] + 0 < 300) }' sum.json
check "the timeline has a line every 50 inputs" grep -q '^{"t":400,"phase":0,' tl.jsonl
check "the timeline records the closed gate" grep -q '"closed":true' tl.jsonl
check "teacher calls = deferred + audits" awk -F'[:,]' '{ for (i = 1; i < NF; i++) v[$i] = $(i + 1) }
	END { exit !(v["\"teacher_calls\""] == v["\"n\""] - v["\"handled\""] + v["\"audits\""]) }' sum.json
ok "the same replay again" "$TRACER" replay pol test.jsonl --switch-at 400 --then drift.jsonl --audit-rate 0.2 \
	--every 50 --timeline tl2.jsonl --summary sum2.json
check "replays are byte-identical" cmp tl.jsonl tl2.jsonl
check "summaries are byte-identical" cmp sum.json sum2.json
ok "five shuffled streams, two monitors" "$TRACER" replay pol banking77:gpt-4o --shuffle 3 --streams 5 \
	--method betting,mixture --audit-rate 0.05
check "one summary per stream and monitor" [ "$(grep -c '"stream":' out)" -eq 10 ]
check "seeds run on from the shuffle seed" grep -q '"method":"mixture",.*"stream":4,"seed":7,"audit_seed":7' out
ok "replay the first half with a saved monitor" sh -c "head -n 400 test.jsonl >a.jsonl && '$TRACER' replay pol a.jsonl --audit-rate 0.3 --state st.monitor"
check "the state was saved" grep -q '^tracer-monitor 1$' st.monitor
n1=$(sed -n 's/^audits //p' st.monitor)
ok "replay the rest: the same test continues" sh -c "tail -n +401 test.jsonl >b.jsonl && '$TRACER' replay pol b.jsonl --audit-rate 0.3 --state st.monitor"
check "audits add up across the restart" [ "$(sed -n 's/^audits //p' st.monitor)" -gt "${n1:-0}" ]
fails 2 "one stream" "--state with several streams" "$TRACER" replay pol test.jsonl --shuffle 1 --streams 2 --state st.monitor
fails 2 "needs --shuffle" "--streams without --shuffle" "$TRACER" replay pol test.jsonl --streams 3
fails 2 "go together" "--switch-at without --then" "$TRACER" replay pol test.jsonl --switch-at 3
fails 2 "bad value for --audit-rate" "audit rate 0" "$TRACER" replay pol test.jsonl --audit-rate 0
fails 2 "bad value for --method" "unknown monitor" "$TRACER" replay pol test.jsonl --method cusum
fails 1 "nope.jsonl" "missing traffic" "$TRACER" replay pol nope.jsonl

# ---- deployment: route marks audits, monitor takes the teacher's answers, a closed gate defers ----
ok "no monitor yet" "$TRACER" monitor pol --show
has "no monitor" "--show without a monitor"
ok "route with audits" sh -c "'$TRACER' route pol --audit-rate 0.5 <test.jsonl"
check "handled inputs carry audit flags" grep -q '"decision":"handled".*"audit":true' out
check "deferred inputs are never audited" sh -c '! grep -q "\"deferred\".*\"audit\":true" out'
i=0
while [ $i -lt 30 ]; do echo "{\"id\":\"a$i\",\"label\":\"card_arrival\",\"teacher\":\"card_linking\"}"; i=$((i + 1)); done >wrong.jsonl
ok "thirty disagreeing audits" sh -c "'$TRACER' monitor pol <wrong.jsonl"
has "CLOSED after [0-9]+ audits" "the monitor closes the gate"
check "the state file sits beside the policy" grep -q '^closed 1$' pol.monitor
ok "route after the closing" sh -c "'$TRACER' route pol <test.jsonl"
check "every input is deferred" [ "$(grep -c '"decision":"deferred".*"gate":"closed"' out)" -eq "$(wc -l <test.jsonl)" ]
ok "audit of the policy" "$TRACER" audit pol test.jsonl --out aud
has "## Drift monitor" "the audit shows the monitor"
check "with its closing and history" grep -q '^\*\*Gate closed\*\* after [0-9]* audits' aud/report.md
check "report.json holds the monitor" grep -q '"monitor": {' aud/report.json
ok "fit again with another seed" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --seed 1 --out pol
ok "route after the refit" sh -c "'$TRACER' route pol <test.jsonl"
check "the refit reopened the gate" sh -c '! grep -q "\"gate\":\"closed\"" out && grep -q "\"handled\"" out'
printf 'tracer-monitor 1\npolicy zz\n' >pol.monitor
fails 1 "pol.monitor:2: bad value" "a corrupt state file names its line" "$TRACER" route pol
rm pol.monitor
fails 1 "stdin:2: \"teacher\" is not a string" "a bad answer line" sh -c "printf '%s\n%s\n' \
	'{\"id\":\"a\",\"label\":\"x\",\"teacher\":\"x\"}' '{\"id\":\"b\",\"label\":\"x\",\"teacher\":3}' | '$TRACER' monitor pol"

# ---- SIGKILL while the state is being rewritten: it is the old state or the new one, never torn ----
rm -f pol.monitor
awk 'BEGIN { srand(5); for (i = 0; i < 20000; i++) printf "{\"id\":\"k%d\",\"label\":\"a\",\"teacher\":\"%s\"}\n", i, rand() < 0.97 ? "a" : "b" }' >answers.jsonl
delays=$(awk 'BEGIN { srand(9); for (i = 0; i < 6; i++) printf "%.2f ", 0.05 + rand() * 0.6 }')
last=0 whole=1 grew=1 seq=""
for d in $delays; do
	"$TRACER" monitor pol <answers.jsonl >/dev/null 2>&1 &
	pid=$!
	sleep "$d"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	"$TRACER" monitor pol --show >out 2>err || whole=0
	n=$(sed -n 's/^audits *\([0-9]*\) .*/\1/p' out) # none yet when killed before the first answer
	n=${n:-0}
	[ "$n" -ge "$last" ] || grew=0
	last=$n seq="$seq $n"
done
check "after each SIGKILL the state file parses whole" [ $whole = 1 ]
check "and the test continues where it stopped (audits only grow:$seq)" [ $grew = 1 -a "$last" -gt 0 ]
finish
