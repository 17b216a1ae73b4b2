# tracer serve: every endpoint and error path over HTTP with curl, on 127.0.0.1 and an ephemeral port
# (curl runs with --noproxy 127.0.0.1: nothing outside loopback is contacted). Decisions equal `tracer route`'s;
# 200 concurrent requests; a request cut mid-body; bodies over the cap; feedback closes the gate through
# the drift monitor; SIGHUP under load swaps the policy without a failed request; SIGTERM drains.
. "$(dirname "$0")/lib.sh"

ok "fit a policy" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --out pol
ok "export its test traffic" "$TRACER" traces export banking77:gpt-4o --part test --out test.jsonl
head -n 50 test.jsonl >fifty.jsonl

C="curl -s --noproxy 127.0.0.1 --max-time 30"
# start_server ARGS...: runs tracer serve in the background (pid in $spid, base URL in $U)
start_server() {
	: >srv.out
	"$TRACER" serve "$@" >srv.out 2>srv.err &
	spid=$!
	trap 'kill $spid 2>/dev/null; chmod -R u+w "$SCRATCH" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
	i=0
	while [ $i -lt 300 ] && ! grep -q '^listening on ' srv.out; do sleep 0.1; i=$((i + 1)); done
	U=$(sed -n 's/^listening on //p' srv.out)
}
# cfg PATH FILE N PREFIX: a curl config of N POSTs of FILE to PATH, answers in PREFIX.0 .. PREFIX.N-1
cfg() {
	k=0
	while [ $k -lt "$3" ]; do
		[ $k = 0 ] || echo next
		printf 'url = "%s%s"\nrequest = "POST"\ndata-binary = "@%s"\noutput = "%s.%d"\nnoproxy = "127.0.0.1"\nmax-time = 60\nsilent\nshow-error\nwrite-out = "%%{http_code}\\n"\n' "$U" "$1" "$2" "$4" $k
		k=$((k + 1))
	done
}
# req METHOD PATH [CURL ARGS...]: status code in $code, body in ./body
req() {
	m=$1 p=$2; shift 2
	code=$($C -o body -w '%{http_code}' -X "$m" "$@" "$U$p")
}

fails 2 "not a loopback address" "refuses a public address without --allow-remote" "$TRACER" serve pol --listen 0.0.0.0:0
fails 2 "bad --listen" "a bad address" "$TRACER" serve pol --listen localhost
fails 1 "nope" "a missing policy" "$TRACER" serve nope --listen 127.0.0.1:0
rm -f out err

start_server pol --listen 127.0.0.1:0 --threads 2 --audit-rate 0.5
case "$U" in http://127.0.0.1:[1-9]*) pass=$((pass + 1)) ;; *) _bad "serve prints its loopback address: '$U'"; cat srv.err ;; esac

req GET /health
check "GET /health 200" [ "$code" = 200 ]
sha=$(sha256sum pol/manifest.json | cut -d' ' -f1)
check "health names the policy's manifest checksum and an open gate" grep -q "\"policy_sha256\":\"$sha\".*\"gate\":\"open\"" body

# decisions: the same as `tracer route` with the same audit settings
"$TRACER" route pol --audit-rate 0.5 <fifty.jsonl >cli.jsonl
req POST /route --data-binary "$(head -n 1 fifty.jsonl)"
check "POST /route 200" [ "$code" = 200 ]
check "POST /route answers what tracer route answers" [ "$(cat body)" = "$(head -n 1 cli.jsonl)" ]
req POST /route/batch --data-binary @fifty.jsonl
check "POST /route/batch (JSONL) 200" [ "$code" = 200 ]
check "the batch answers what tracer route answers, line for line" cmp body cli.jsonl
{ head -n 2 fifty.jsonl; echo 'nope'; echo; sed -n 3p fifty.jsonl; } >mixed.jsonl
req POST /route/batch --data-binary @mixed.jsonl
check "a bad line in a batch is an error record in its place" [ "$(sed -n 3p body)" = "{\"line\":3,\"error\":\"body:3: malformed JSON: '[' or '{' expected near 'nope'\"}" ]
check "blank lines are skipped, the rest routed" [ "$(grep -c '"decision"' body)" -eq 3 ]
# an input_b for this single-text policy: routed on input alone, as route does, with a warning in the answer
head -n 1 fifty.jsonl | sed 's/"teacher"/"input_b":"a second text","teacher"/' >pair1.jsonl
"$TRACER" route pol --audit-rate 0.5 <pair1.jsonl >pair1.cli 2>pair1.err
check "route warns on stderr for the pair" grep -q 'input_b given, but the policy was fitted on single texts' pair1.err
req POST /route --data-binary @pair1.jsonl
check "POST /route with input_b: 200" [ "$code" = 200 ]
check "its decision is route's, with a warning field" [ "$(cat body)" = "$(sed 's/}$/,"warning":"input_b given, but the policy was fitted on single texts: it is ignored"}/' pair1.cli)" ]
{ cat pair1.jsonl; sed -n 2p fifty.jsonl; } >pairmix.jsonl
req POST /route/batch --data-binary @pairmix.jsonl
check "in a batch only the pair's answer carries the warning" sh -c '[ $(grep -c "\"warning\":\"input_b given" body) -eq 1 ] && sed -n 1p body | grep -q "\"warning\"" && [ "$(sed -n 2p body)" = "$(sed -n 2p cli.jsonl)" ]'
req GET /metrics
check "the two mismatched inputs are counted" grep -q '^tracer_inputs_pair_mismatch_total 2$' body
req POST /route/batch --data-binary "[$(head -n 1 fifty.jsonl),{\"id\":\"n\"},$(sed -n 2p fifty.jsonl)]"
check "POST /route/batch (JSON array) 200" [ "$code" = 200 ]
check "an array is answered with an array, error in place" grep -q '^\[{"id":"test:0",.*},{"line":2,"error":"body:2: missing input (one of .*)"},{"id":"test:9",.*}\]$' body

# error paths
req POST /route --data-binary '{"input": "x",'
check "malformed JSON: 400" [ "$code" = 400 ]
check "with the parser's message" grep -q '^{"error":"body:1: .*end of file.*"}$' body
req POST /route --data-binary '{"id":"a","text":3}'
check "a bad input object: 400" [ "$code" = 400 ]
req POST /route/batch --data-binary '[{"input":"x"},'
check "a malformed array: 400" [ "$code" = 400 ]
req GET /nope
check "unknown path: 404" [ "$code" = 404 ]
req GET /route
check "GET /route: 405" [ "$code" = 405 ]
code=$($C -o /dev/null -D hdr -w '%{http_code}' -X DELETE "$U/health")
check "DELETE /health: 405 with Allow: GET" sh -c "[ $code = 405 ] && grep -qi '^Allow: GET' hdr"
head -c 1100000 /dev/zero | tr '\0' a >big
req POST /route --data-binary @big
check "a body over the cap (Content-Length): 413" [ "$code" = 413 ]
req POST /route -H 'Transfer-Encoding: chunked' --data-binary @big
check "a chunked body over the cap: 413" [ "$code" = 413 ]
printf '{"input":"where is my card' >cut
$C -o /dev/null --max-time 1 -X POST -H 'Content-Length: 1000' --data-binary @cut "$U/route"
check "a request cut mid-body gets no answer (curl times out and hangs up)" [ $? = 28 ]
sleep 0.3
req GET /metrics
check "the cut request is counted as aborted" grep -q '^tracer_requests_aborted_total [1-9]' body
req GET /health
check "the server still answers after the cut" [ "$code" = 200 ]

# 200 concurrent requests (curl --parallel holds 200 connections at once)
cfg /route/batch fifty.jsonl 200 par >par.cfg
$C -S --no-progress-meter --parallel --parallel-immediate --parallel-max 200 -K par.cfg >codes
check "200 concurrent requests: 200 answers 200" [ "$(grep -c '^200$' codes)" -eq 200 ]
check "every concurrent answer is the same batch of decisions" sh -c 'for f in par.[0-9]*; do cmp -s "$f" cli.jsonl || exit 1; done'

# metrics (Prometheus text format)
req GET /metrics
check "GET /metrics 200" [ "$code" = 200 ]
check "requests counted by endpoint" grep -q '^tracer_requests_total{endpoint="route_batch"} 20[0-9]$' body
check "handled + deferred = inputs" awk '/^tracer_inputs_total /{n=$2} /^tracer_inputs_handled_total /{h=$2} /^tracer_inputs_deferred_total /{d=$2} END{exit !(n > 10000 && h + d == n)}' body
check "OOD deferrals and audits are counted" grep -q '^tracer_inputs_audited_total [1-9]' body
check "10,000 single texts later, still the two pair mismatches" grep -q '^tracer_inputs_pair_mismatch_total 2$' body
check "a latency histogram" grep -q '^tracer_request_duration_seconds_bucket{le="+Inf"} [1-9]' body
check "the gate state" grep -q '^tracer_gate_open 1$' body
check "every line a comment or a sample" sh -c "! grep -v -E '^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z0-9_]+=\"[^\"]*\"\})? [0-9.e+-]+)$' body"

# feedback: traces appended; audited inputs feed the monitor, which closes the gate on a wrong teacher
req POST /feedback --data-binary '{"id":"f0","input":"x"}'
check "feedback without a teacher: 400" [ "$code" = 400 ]
n=0
while IFS= read -r l; do
	req POST /feedback --data-binary "$(printf '%s' "$l" | sed 's/"teacher":"[^"]*"/"teacher":"not_a_label"/')"
	[ "$code" = 200 ] && n=$((n + 1))
done <test.jsonl
check "every feedback answered 200" [ "$n" -eq "$(wc -l <test.jsonl)" ]
check "feedback appended one trace line each" [ "$(wc -l <pol.traces.jsonl)" -eq "$n" ]
check "feedback lines are traces" grep -q '^{"id":"test:0","input":"How do I locate my card?","teacher":"not_a_label","ground_truth":"card_arrival"}$' pol.traces.jsonl
check "the monitor's state file was written" grep -q '^closed 1$' pol.monitor
check "the monitor counted the routed inputs (more than 10,000 before the feedback)" awk '/^inputs /{exit !($2 > 10000)}' pol.monitor
check "the closing event says how much traffic had passed" awk '/^closing /{exit !($2 > 10000 && $3 > 0)}' pol.monitor
req GET /health
check "the health shows the closed gate" grep -q '"gate":"closed"' body
req POST /route --data-binary "$(sed -n 2p test.jsonl)"
check "a closed gate defers" grep -q '"decision":"deferred".*"gate":"closed"' body
check "tracer route sees the same closed gate" sh -c "'$TRACER' route pol <fifty.jsonl | grep -c '\"gate\":\"closed\"' | grep -qx 50"
req POST /feedback --data-binary "$(cat pair1.jsonl)"
check "feedback with input_b for a single-text policy: recorded, with /route's warning" \
	sh -c "[ $code = 200 ] && grep -q '\"recorded\":true.*\"warning\":\"input_b given, but the policy was fitted on single texts' body"

# SIGHUP: a failed reload keeps the old policy; a refit is swapped in under load, no request fails
in0=$(awk '/^inputs /{print $2}' pol.monitor)
mv pol pol.away
kill -HUP $spid
sleep 0.5
mv pol.away pol
check "SIGHUP first saves the monitor's input counts (the route to the closed gate: $in0 + 1)" \
	awk -v n="$in0" '/^inputs /{exit !($2 == n + 1)}' pol.monitor
req GET /metrics
check "a failed reload is counted" grep -q '^tracer_policy_reload_failures_total 1$' body
req GET /health
check "and the old policy keeps serving" [ "$code" = 200 ]
ok "refit with another seed (replaces pol)" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --seed 1 --out pol
sha1=$(sha256sum pol/manifest.json | cut -d' ' -f1)
# a long load (1000 batches of 50 inputs, 50 at a time); SIGHUP while it runs
cfg /route/batch fifty.jsonl 1000 load >load.cfg
$C -S --no-progress-meter --parallel --parallel-max 50 -K load.cfg >lcodes &
lpid=$!
sleep 0.5
kill -HUP $spid
kill -0 $lpid 2>/dev/null
check "the load was still running when SIGHUP arrived" [ $? = 0 ]
wait $lpid
check "1000 requests during the reload: all 200" [ "$(grep -c '^200$' lcodes)" -eq 1000 ]
# the old policy's gate was closed by the feedback above, the refit's monitor is new: answers of both
closed=$(grep -l '"gate":"closed"' load.[0-9]* | wc -l)
check "the load was answered by the old policy, then by the new one ($closed of 1000 by the old)" \
	sh -c "[ $closed -gt 0 ] && [ $closed -lt 1000 ]"
sleep 0.3
req GET /health
check "the new policy serves after SIGHUP" grep -q "\"policy_sha256\":\"$sha1\".*\"gate\":\"open\",\"reloads\":1" body
grep -q "reloaded pol" srv.err
check "the reload is logged" [ $? = 0 ]

# SIGTERM drains: a request whose body is still arriving finishes, then exit 0
( { printf '{"id":"slow","input":'; sleep 1.5; printf '"where is my card?"}'; } | $C -o drain.body -w '%{http_code}' -X POST -T - "$U/route" >drain.code ) &
dpid=$!
sleep 0.7
kill -TERM $spid
wait $spid
check "SIGTERM: exit 0" [ $? = 0 ]
wait $dpid
check "the request in flight was answered" [ "$(cat drain.code)" = 200 ]
check "with its decision" grep -q '^{"id":"slow",' drain.body
check "the stop is logged" grep -q 'stopped' srv.err
$C -o /dev/null "$U/health"
check "nothing listens after the exit" [ $? = 7 ]
finish
