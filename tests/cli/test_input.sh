# One trace reader for every command (fit, eval, audit, traces and route's stdin), labels that keep one
# JSON type, --cap that leaves nothing, and sweep cells that are truncated.
. "$(dirname "$0")/lib.sh"

B=$FIX/bad
# four labels, each named by its own word: a policy that deploys, fitted in well under a second
awk 'BEGIN { srand(3); for (i = 0; i < 600; i++) { l = i % 4
	printf "{\"input\":\"w%d x%d common%d\",\"teacher\":\"lab%d\"}\n", l, int(rand() * 1000), i % 13, l } }' >easy.jsonl
ok "fit a small policy" "$TRACER" fit easy.jsonl --target 0.9 --out pol
# (under ltt-plan, accept-all is the last step of l2d's sequence: the deployed family is l2d at coverage 1)
check "it deploys" grep -Eq '"family": "(global|l2d)"' pol/manifest.json

# route reads stdin with the rules of the trace files: the same error for the same line, stdin:LINE
# instead of FILE:LINE.
# (the lines carry a teacher label for traces export; route ignores it)
printf '{"input":"w1 a","id":"x","teacher":"l"}\n{"input":"w2 b","id":"y","input":"w3","teacher":"l"}\n' >dupkey.jsonl
printf '{"input":"w1 a","id":"x","teacher":"l"}\n\n{"input":"w2 b","id":"x","teacher":"l"}\n' >dupid.jsonl
printf '{"input":"w1 a","id":7,"teacher":"l"}\n{"input":"w2 b","id":"7","teacher":"l"}\n' >dupid-types.jsonl
printf '{"input":"w1 a","group":[1],"teacher":"l"}\n' >badgroup.jsonl
printf '{"input":"w1 a","teacher":"l"}\n{"input":"w2 b","input_b":3,"teacher":"l"}\n' >badpair.jsonl
for f in dupkey.jsonl dupid.jsonl dupid-types.jsonl badgroup.jsonl badpair.jsonl "$B/malformed.jsonl" \
	"$B/missing-input.jsonl" "$B/nonstring-input.jsonl" "$B/invalid-utf8.jsonl" "$B/binary.jsonl" \
	"$B/duplicate-ids.jsonl"; do
	n=$(basename "$f")
	"$TRACER" route pol --on-error stop <"$f" >out 2>route.err
	check "route --on-error stop refuses $n" [ $? -eq 1 ]
	"$TRACER" traces export "$f" >out 2>file.err
	check "traces export refuses $n" [ $? -eq 1 ]
	sed "s|^tracer: [^ ]*$n:|tracer: stdin:|" file.err >file2.err
	check "route and traces export say the same for $n ($(cat route.err))" cmp -s route.err file2.err
	# streaming (the default): the same message in an error record, exit 1
	"$TRACER" route pol <"$f" >out 2>/dev/null
	check "route streams an error record for $n" [ $? -eq 1 ]
	sed -n 's/^{"line":[0-9]*,"error":"\(.*\)"}$/tracer: \1/p' out | sed 's/\\"/"/g' | head -n 1 >rec.err
	check "the record says what traces export says for $n ($(cat rec.err))" cmp -s rec.err file2.err
done
fails 1 'stdin:2: malformed JSON: duplicate object key' "route: duplicate keys" sh -c "'$TRACER' route pol <dupkey.jsonl"
fails 1 'stdin:3: duplicated id "x" \(first on line 1\)' "route: duplicate ids" sh -c "'$TRACER' route pol <dupid.jsonl"
fails 1 'stdin:2: duplicated id "7" \(first on line 1\)' "route: id 7 and \"7\"" sh -c "'$TRACER' route pol <dupid-types.jsonl"
fails 1 'stdin:2: "input_b" is not a string' "route: non-string input_b" sh -c "'$TRACER' route pol <badpair.jsonl"
# a byte order mark, CRLF ends and blanks: accepted by both, same decisions with or without them
printf '{"input":"w1 a","id":"x","teacher":"l"}\n{"input":"w2 b","id":"y","teacher":"l"}\n  {"input":"w3 c","teacher":"l"}\t\n' >plain.jsonl
printf '\357\273\277{"input":"w1 a","id":"x","teacher":"l"}\r\n{"input":"w2 b","id":"y","teacher":"l"}\r\n\r\n  {"input":"w3 c","teacher":"l"}\t\r\n' >bom.jsonl
ok "route plain" sh -c "'$TRACER' route pol <plain.jsonl >plain.dec"
ok "route with a BOM and CRLF" sh -c "'$TRACER' route pol <bom.jsonl >bom.dec"
sed 's/"line:3"/"line:4"/' plain.dec >plain4.dec
check "same decisions (the blank line counts as a line)" cmp -s plain4.dec bom.dec
check "three decisions" [ "$(wc -l <bom.dec)" -eq 3 ]
ok "traces export with a BOM and CRLF" "$TRACER" traces export bom.jsonl
grep -o '"id":"[^"]*"' out >ids.file
grep -o '"id":"[^"]*"' bom.dec >ids.route
check "same ids through both readers" cmp -s ids.file ids.route
ok "eval reads the same file" "$TRACER" eval pol bom.jsonl --json
has '"n":3,' "eval counts 3 rows"

# 1 and "1" are one label's text in two JSON types: refused with both lines, in every reader.
printf '{"input":"a","teacher":1}\n{"input":"b","teacher":2}\n{"input":"c","teacher":"1"}\n' >mixed.jsonl
fails 1 'mixed.jsonl:3: label "1" is a string here but an integer on line 1: write a label with one JSON type' \
	"label 1 and \"1\"" "$TRACER" traces export mixed.jsonl
fails 1 'mixed.jsonl:3: label "1" is a string here' "fit refuses 1 and \"1\"" "$TRACER" fit mixed.jsonl --out x1
check "nothing written" [ ! -e x1 ]
fails 1 'mixed.jsonl:3: label "1" is a string here' "eval refuses 1 and \"1\"" "$TRACER" eval pol mixed.jsonl
printf '{"input":"a","teacher":"x","ground_truth":"2"}\n{"input":"b","teacher":2}\n' >mixed-gold.jsonl
fails 1 'mixed-gold.jsonl:2: label 2 is an integer here but a string on line 1' \
	"teacher 2 and ground truth \"2\"" "$TRACER" traces export mixed-gold.jsonl
printf '{"input":"a","teacher":1}\n{"input":"b","teacher":"one"}\n{"input":"c","teacher":1,"ground_truth":1}\n' >ints.jsonl
ok "integer and string labels that do not collide" "$TRACER" traces export ints.jsonl
has '"teacher":"1","ground_truth":"1"' "integer labels read as their decimal text"

# --cap small enough to keep nothing says so (and not that every label has fewer than 2 traces). Under
# oof, the default, the cap draws whole groups blind to labels: one kept trace cannot fill both parts.
fails 1 'easy.jsonl: no calibration rows after oof.s fit/calibration split \(1 trace kept by --cap, the calibration part takes 30% of the group keys, rounded\): give more traces, raise --cap or --cap 0$' \
	"--cap that keeps one trace (oof)" "$TRACER" fit easy.jsonl --cap 1 --out x2
# holdout's cap keeps each label's share: a small cap keeps none, or too few to calibrate
fails 1 'easy.jsonl: --cap 1 keeps no traces \(of 600 over 4 labels, each label.s share rounds to nothing\)' \
	"--cap that keeps nothing (holdout)" "$TRACER" fit easy.jsonl --cap 1 --calibration holdout --out x2
fails 1 'easy.jsonl: no calibration rows after --cap 5 \(kept 4 of 600 traces, every kept label has fewer than 2\)' \
	"--cap that keeps too few to calibrate (holdout)" "$TRACER" fit easy.jsonl --cap 5 --calibration holdout --out x3
check "nothing written for a bad cap" sh -c "[ ! -e x2 ] && [ ! -e x3 ]"
ok "--cap 40 fits" "$TRACER" fit easy.jsonl --cap 40 --target 0.9 --out x4
has '40 used' "40 traces used"

# audit of a policy that confused nothing (refused: every row deferred, no top-1): under `make ubsan`
# this was qsort(NULL, 0, ...) in audit.c
awk 'BEGIN { for (i = 0; i < 48; i++) printf "{\"input\":\"w%d v%d\",\"teacher\":\"l%d\"}\n", i % 3, i, i % 3 }' >tiny.jsonl
# (holdout: its split leaves 9 calibration rows, point needs 10 accepted, so it refuses; oof has 14 and deploys)
ok "fit a refused policy" "$TRACER" fit tiny.jsonl --gate point --target 0.8 --calibration holdout --out refused
check "it is refused" grep -q '"family": "refused"' refused/manifest.json
ok "audit it" "$TRACER" audit refused tiny.jsonl --out aud
check "its report is written" [ -s aud/report.json ]

# sweep: a truncated cell is not finished; the rerun computes it again, to the same bytes
tiny_spec '0'
ok "sweep a one-cell spec" "$TRACER" sweep tiny.spec --results r
cell=$(ls r/cells/tiny/*.json)
cp "$cell" whole.json
head -c 200 whole.json >"$cell"
ok "missing lists the truncated cell" "$TRACER" sweep tiny.spec --results r --missing
has '^0$' "cell 0 is missing"
ok "rerun" "$TRACER" sweep tiny.spec --results r
check "the rerun computes the truncated cell" grep -q '1 cells, 0 finished, 1 to compute' err
check "the cell is whole again, byte for byte" cmp -s whole.json "$cell"
ok "a finished cell is skipped" "$TRACER" sweep tiny.spec --results r
check "nothing to compute" grep -q '1 cells, 1 finished, 0 to compute' err
sed 's/"hash": "[0-9a-f]*"/"hash": "0000000000000000"/' whole.json >"$cell"
ok "a cell with another hash" "$TRACER" sweep tiny.spec --results r
check "is computed again" grep -q '1 to compute' err
check "whole again" cmp -s whole.json "$cell"
finish
