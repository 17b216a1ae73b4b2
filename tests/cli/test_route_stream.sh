# tracer route streams: each decision is read through a FIFO before the next line is sent; a bad line
# gives an error record and routing goes on (--on-error stop ends the run); --batch; embeddings.
. "$(dirname "$0")/lib.sh"

ok "fit a policy" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --out pol
ok "export its test traffic" "$TRACER" traces export banking77:gpt-4o --part test --out test.jsonl
head -n 5 test.jsonl >five.jsonl

# One line in, one decision out, while the writer keeps the pipe open. A watchdog ends a stuck route so
# that a buffering route fails the test instead of hanging it.
mkfifo in.fifo out.fifo
"$TRACER" route pol <in.fifo >out.fifo 2>route.err &
rpid=$!
(sleep 60; kill $rpid 2>/dev/null) &
wpid=$!
exec 3>in.fifo 4<out.fifo
got=0
while IFS= read -r l; do
	printf '%s\n' "$l" >&3
	IFS= read -r d <&4 || break
	id=$(printf '%s' "$l" | sed 's/^{"id":"\([^"]*\)".*/\1/')
	case "$d" in "{\"id\":\"$id\","*) got=$((got + 1)) ;; esac
done <five.jsonl
printf 'not json\n' >&3
IFS= read -r d <&4 && bad=$d
exec 3>&- 4<&-
wait $rpid; rc=$?
kill $wpid 2>/dev/null
check "each decision arrived before the next line was sent" [ "$got" -eq 5 ]
check "a bad line answers at once with an error record" [ "$bad" = "{\"line\":6,\"error\":\"stdin:6: malformed JSON: '[' or '{' expected near 'not'\"}" ]
check "exit 1 after a failed line" [ "$rc" -eq 1 ]
check "stderr counts the failures" grep -q '^tracer: 1 of the input lines failed' route.err

# error records in place, routing goes on
{ head -n 2 test.jsonl; echo '{"id":"x","input":3}'; echo '{"id":"y"'; sed -n 3,4p test.jsonl; } >mixed.jsonl
fails 1 "2 of the input lines failed .*first: stdin:3: \"input\" is not a string" "bad lines counted" \
	sh -c "'$TRACER' route pol <mixed.jsonl"
check "one output line per input line" [ "$(wc -l <out)" -eq 6 ]
check "the error record of line 3" [ "$(sed -n 3p out)" = '{"line":3,"error":"stdin:3: \"input\" is not a string"}' ]
check "line 4: the parser's message" grep -q '^{"line":4,"error":"stdin:4: .*"}$' out
check "the good lines after are routed" [ "$(grep -c '"decision":' out)" -eq 4 ]
check "in input order" [ "$(sed -n 5p out | cut -d, -f1)" = "$(sed -n 5p mixed.jsonl | cut -d, -f1)" ]
fails 1 "^tracer: stdin:3: \"input\" is not a string$" "--on-error stop" sh -c "'$TRACER' route pol --on-error stop <mixed.jsonl"
check "stop: the decisions before the bad line are written" [ "$(wc -l <out)" -eq 2 ]
fails 2 "bad --on-error" "--on-error value" "$TRACER" route pol --on-error skip
fails 2 "bad batch size" "--batch 0" "$TRACER" route pol --batch 0

# --batch N: the same lines
ok "route line by line" sh -c "'$TRACER' route pol <test.jsonl >one.jsonl"
ok "route by batches of 100" sh -c "'$TRACER' route pol --batch 100 <test.jsonl >hundred.jsonl"
check "batches give the same decisions" cmp one.jsonl hundred.jsonl
check "one decision per input" [ "$(wc -l <one.jsonl)" -eq "$(wc -l <test.jsonl)" ]
ok "mixed input by batches of 4" sh -c "'$TRACER' route pol --batch 4 <mixed.jsonl >mb.jsonl; [ \$? = 1 ]"
check "error records keep their place within a batch" [ "$(sed -n 3p mb.jsonl)" = '{"line":3,"error":"stdin:3: \"input\" is not a string"}' ]

# embeddings: an "embedding" field per line, bad lines as records
E=$FIX/emb
ok "fit on embeddings" "$TRACER" fit "$E/traces.jsonl" --embeddings "$E/emb.npy" --backend knn --target 0.8 --out embp
printf '%s\n' '{"id":"q1","input":"x","embedding":[2.1,0.1,0.0,-0.2]}' '{"id":"q2","input":"x","embedding":[2.1]}' \
	'{"id":"q3","input":"x","embedding":[2.1,0.1,"a",-0.2]}' '{"id":"q4","input":"x","embedding":[0.1,2.1,0.0,-0.2]}' >q.jsonl
fails 1 "2 of the input lines failed" "embedding lines" sh -c "'$TRACER' route embp <q.jsonl"
check "q1 and q4 routed" [ "$(grep -c '"id":"q[14]","label"' out)" -eq 2 ]
check "wrong dimension recorded" grep -q '^{"line":2,"error":"stdin:2: \\"embedding\\" has the wrong dimension"}$' out
check "not a number recorded" grep -q '^{"line":3,"error":"stdin:3: \\"embedding\\" holds a value' out
finish
