# tracer traces export: round trips, users' trace files, malformed input, usage errors.
. "$(dirname "$0")/lib.sh"

for set in banking77:gpt-4o mnli:phi-3-small clinc150:llama-3.2-1b-lora; do
	for part in traces test; do
		f=$(echo "$set.$part" | tr ':' '_').jsonl
		ok "export $set $part" "$TRACER" traces export "$set" --part $part --out "$f"
		ok "re-read $f" "$TRACER" traces export "$f" --out back.jsonl
		check "round trip $set $part" cmp -s "$f" back.jsonl
	done
done
check "pairs carry input_b" grep -q '"input_b":' mnli_phi-3-small.traces.jsonl
check "no stray temp files" [ -z "$(ls | grep '\.tmp\.')" ]
ok "export oos items" "$TRACER" traces export clinc150:gold --part extra
check "1,200 oos items" [ "$(wc -l <out)" -eq 1200 ]
has '"teacher":"oos","ground_truth":"oos"' "oos rows labelled oos"
ok "export gold test" "$TRACER" traces export banking77:gold --part test
check "3,080 test rows" [ "$(wc -l <out)" -eq 3080 ]
has '^\{"id":"test:0","input":"How do I locate my card\?","teacher":"card_arrival","ground_truth":"card_arrival"\}$' \
	"first test row"

# A user's file with a BOM, CRLF ends, blank lines and key aliases.
ok "aliases" "$TRACER" traces export "$FIX/traces/aliases.jsonl"
check "three traces" [ "$(wc -l <out)" -eq 3 ]
has '"id":"line:3","input":"see you","teacher":"leave","ground_truth":null' "query/label aliases, id from line"
has '"input":"cats or dogs\?","input_b":"pets","teacher":"ask","ground_truth":null,"group":"g"' "pair and group kept"

B=$FIX/bad
fails 1 'malformed.jsonl:2: malformed JSON' "malformed JSON" "$TRACER" traces export "$B/malformed.jsonl"
fails 1 'missing-input.jsonl:3: missing input' "missing input" "$TRACER" traces export "$B/missing-input.jsonl"
fails 1 'missing-label.jsonl:2: missing teacher label' "missing label" "$TRACER" traces export "$B/missing-label.jsonl"
fails 1 'null-label.jsonl:1: "teacher" is null' "null label" "$TRACER" traces export "$B/null-label.jsonl"
fails 1 'empty-label.jsonl:3: "teacher" is empty' "empty label" "$TRACER" traces export "$B/empty-label.jsonl"
fails 1 'nonstring-input.jsonl:1: "input" is not a string' "non-string input" \
	"$TRACER" traces export "$B/nonstring-input.jsonl"
fails 1 'empty.jsonl:1: no traces' "empty file" "$TRACER" traces export "$B/empty.jsonl"
fails 1 'invalid-utf8.jsonl:1: malformed JSON' "invalid UTF-8" "$TRACER" traces export "$B/invalid-utf8.jsonl"
fails 1 'binary.jsonl:1: malformed JSON' "binary garbage" "$TRACER" traces export "$B/binary.jsonl"
fails 1 'duplicate-ids.jsonl:3: duplicated id "a" \(first on line 1\)' "duplicated ids" \
	"$TRACER" traces export "$B/duplicate-ids.jsonl"
head -c 100000000 /dev/zero | tr '\0' 'a' >huge.jsonl
fails 1 'huge.jsonl:1: malformed JSON' "a 100 MB single line" "$TRACER" traces export huge.jsonl
rm huge.jsonl
fails 1 'nothere.jsonl: cannot open' "unreadable file" "$TRACER" traces export nothere.jsonl
mkdir adir
fails 1 'adir: not a regular file' "a directory" "$TRACER" traces export adir
fails 1 'unknown trace set "banking77:claude"' "unknown set" "$TRACER" traces export banking77:claude
fails 1 'no/such/dir/x.jsonl: cannot create a temporary file in no/such/dir' "unwritable output" \
	"$TRACER" traces export "$FIX/traces/aliases.jsonl" --out no/such/dir/x.jsonl
check "nothing half-written" [ ! -e no/such/dir/x.jsonl ]

fails 2 'unknown part "train"' "bad part" "$TRACER" traces export banking77:gold --part train
fails 2 'expected `traces export SET`' "missing set" "$TRACER" traces export
fails 2 'unknown verb "frobnicate"' "unknown verb" "$TRACER" frobnicate
fails 2 'unknown subcommand "check"' "unknown subcommand" "$TRACER" datasets check
ok "--version" "$TRACER" --version
has '^tracer [0-9]+\.[0-9]+\.[0-9]+$' "version line"
ok "help" "$TRACER" help
has '^  datasets ' "help lists verbs"
ok "verb --help" "$TRACER" traces --help
has '^usage: tracer traces export' "verb usage"
finish
