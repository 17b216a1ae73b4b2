# What every verb's command line does the same way (issue 17): one option parser (`--opt value` and
# `--opt=value`, unknown options named as unknown, missing values named), one message for a policy
# directory that is missing or is not one, exit codes listed in every --help.
. "$(dirname "$0")/lib.sh"

# four labels, each named by its own word: a policy that deploys, fitted in well under a second
awk 'BEGIN { srand(5); for (i = 0; i < 600; i++) { l = i % 4
	printf "{\"id\":\"e%d\",\"input\":\"w%d x%d common%d\",\"teacher\":\"lab%d\"}\n", i, l, int(rand() * 1000), i % 13, l } }' >easy.jsonl

# --opt=value and --opt value give the same policy
ok "fit with --opt value" "$TRACER" fit easy.jsonl --target 0.9 --out pol --seed 3
ok "fit with --opt=value" "$TRACER" fit easy.jsonl --target=0.9 --out=pol2 --seed=3
check "the same policy either way" cmp -s pol/stage1.model.zst pol2/stage1.model.zst

for verb in fit eval route audit scan sweep collect replay monitor serve update train-surrogate; do
	fails 2 "^tracer $verb: unknown option --bogus$" "$verb names an unknown option as unknown" "$TRACER" $verb x --bogus
	fails 2 "^tracer $verb: unknown option --bogus$" "$verb: --bogus=1 is unknown too" "$TRACER" $verb x --bogus=1
done
fails 2 '^tracer traces: unknown option --bogus$' "traces export names an unknown option" "$TRACER" traces export easy.jsonl --bogus
fails 2 '^tracer fit: --out needs a value$' "a missing value is named" "$TRACER" fit easy.jsonl --out
fails 2 '^tracer eval: --json takes no value' "a flag given a value is refused" "$TRACER" eval pol easy.jsonl --json=1
fails 2 '^tracer eval: unexpected argument "c"$' "a third positional is unexpected" "$TRACER" eval pol easy.jsonl c

# a missing policy directory: one message in the style of every missing file, not jansson's FILE:-1:
fails 1 '^tracer: /nonexistent: cannot open: No such file or directory$' "route on a missing directory" \
	sh -c '"$0" route /nonexistent </dev/null' "$TRACER"
check "no -1 line number" sh -c '! grep -q -- ":-1:" err'
fails 1 '^tracer: nope: cannot open: No such file or directory$' "eval on a missing directory" "$TRACER" eval nope easy.jsonl
mkdir emptydir
fails 1 '^tracer: emptydir: not a policy directory \(no manifest.json' "audit names the policy first" \
	"$TRACER" audit emptydir t.jsonl
check "audit wrote nothing into it" [ -z "$(ls -A emptydir)" ]
fails 1 '^tracer: easy.jsonl: not a policy directory \(not a directory' "a file is not a policy" \
	sh -c '"$0" route easy.jsonl </dev/null' "$TRACER"

# exit codes: eval exits 1 when the contract is violated, --no-check only reports; every --help says
awk 'BEGIN { srand(9); for (i = 0; i < 300; i++) { l = i % 4
	printf "{\"id\":\"f%d\",\"input\":\"w%d y%d common%d\",\"teacher\":\"lab%d\"}\n", i, l, int(rand() * 1000), i % 13, (l + 1) % 4 } }' >flipped.jsonl
fails 1 '^tracer: pol on flipped.jsonl: contract violated' "eval exits 1 on a violated contract" "$TRACER" eval pol flipped.jsonl
has 'contract +VIOLATED' "the report is still printed"
ok "eval --no-check reports only" "$TRACER" eval pol flipped.jsonl --no-check
has 'contract +VIOLATED' "and says VIOLATED"
fails 1 'contract violated' "eval --json exits 1 too" "$TRACER" eval pol flipped.jsonl --json
has '"violation":true' "with violation true in the JSON"
awk 'BEGIN { srand(11); for (i = 0; i < 300; i++) { l = i % 4
	printf "{\"id\":\"h%d\",\"input\":\"w%d z%d common%d\",\"teacher\":\"lab%d\"}\n", i, l, int(rand() * 1000), i % 13, l } }' >held.jsonl
ok "eval on traffic where the contract holds exits 0" "$TRACER" eval pol held.jsonl
has 'contract +held' "and says held"
for verb in help datasets traces train-surrogate scan fit update route eval serve sweep collect monitor replay audit; do
	"$TRACER" $verb --help >out 2>err
	check "$verb --help exits 0" [ $? -eq 0 ]
	has '^exit status: 0 ' "$verb --help lists its exit codes"
done
"$TRACER" help eval >out 2>err
has '^exit status: 0 done; 1 the contract VIOLATED' "help eval names what exit 1 means"

# warnings on misuse (stderr, the eval report and its JSON): the policy's own traces, pairs and single
# texts mixed up, teacher labels the policy does not know
ok "eval on the policy's own trace file" "$TRACER" eval pol easy.jsonl
check "warns on stderr: in-sample" grep -q '^tracer eval: warning: easy.jsonl is the file the policy was fitted on' err
has '^warning +easy.jsonl is the file the policy was fitted on' "and in the report"
head -n 200 easy.jsonl >part.jsonl
ok "eval on 200 of the policy's own rows (another file)" "$TRACER" eval pol part.jsonl --json
check "warns by id and text overlap" grep -q 'warning: 200 of the 200 traffic rows (100%, above the 5%' err
has '"warnings":\["200 of the 200 traffic rows' "and in the JSON"
ok "held-out traffic" "$TRACER" eval pol held.jsonl --json
check "no warning on held-out rows" [ ! -s err ]
has '"warnings":\[\]' "an empty list in the JSON"
sed 's/"teacher"/"input_b":"other text","teacher"/' held.jsonl >pairs.jsonl
ok "a single-text policy on pairs" "$TRACER" eval pol pairs.jsonl
check "warns that input_b is ignored" grep -q 'warning: 300 of the 300 traffic rows carry input_b, but the policy was fitted on single texts' err
"$TRACER" route pol <pairs.jsonl >out 2>err
check "route routes the pairs (exit 0)" [ $? -eq 0 ]
check "route says input_b is ignored" grep -q '^tracer route: warning: stdin:1: input_b given, but the policy was fitted on single texts: it is ignored$' err
check "and counts the lines" grep -q '^tracer route: warning: 300 lines from stdin:1 on carried an input_b the policy ignores$' err
"$TRACER" route pol <held.jsonl >out 2>err
check "route on single texts: no warning" [ ! -s err ]
ok "a pair policy" "$TRACER" fit pairs.jsonl --target 0.9 --out ppol
"$TRACER" eval ppol held.jsonl --no-check >out 2>err
check "warns when a pair policy gets single texts" grep -q 'warning: the policy was fitted on pairs (input, input_b), but 300 of the 300 traffic rows have no input_b' err
sed 's/"lab\([0-9]\)"/"other\1"/' held.jsonl >otherlabels.jsonl
"$TRACER" eval pol otherlabels.jsonl --no-check >out 2>err
check "warns on a disjoint label space" grep -q 'warning: only 0 of the 300 traffic rows (0%) have a teacher label among the policy.s 4 labels' err
ok "audit on the policy's own traces" "$TRACER" audit pol easy.jsonl --out aud
check "audit warns on stderr" grep -q '^tracer audit: warning: easy.jsonl is the file the policy was fitted on' err
check "audit's report.json carries the warning" grep -q '"warnings": \[' aud/report.json
check "audit's report.md has a Warnings section" grep -q '^## Warnings' aud/report.md
check "audit's report.html has it too" grep -q '^<h2>Warnings</h2>$' aud/report.html
check "before the gate decision" sh -c '[ $(grep -n "<h2>Warnings</h2>" aud/report.html | cut -d: -f1) -lt $(grep -n "<h2>Gate decision</h2>" aud/report.html | cut -d: -f1) ]'
check "the terminal report leaves it to stderr" sh -c '! grep -q "Warnings" out'
cp easy.jsonl 'x<i>&.jsonl'
ok "audit on the same traces under a name with HTML in it" "$TRACER" audit pol 'x<i>&.jsonl' --out audx --quiet
check "report.html escapes the name in the warning" grep -q '<td>x&lt;i&gt;&amp;.jsonl is the file the policy was fitted on' audx/report.html
check "report.html has no raw <i> from the name" sh -c '! grep -q "x<i>" audx/report.html'
ok "audit on held-out rows" "$TRACER" audit pol held.jsonl --out audh --quiet
check "no Warnings section in either report" sh -c '! grep -q Warnings audh/report.md audh/report.html'

# the one-label check looks at teacher labels: varied ground_truth does not make a second answer
awk 'BEGIN { for (i = 0; i < 300; i++) printf "{\"input\":\"q%d w%d\",\"teacher\":\"card_arrival\",\"ground_truth\":\"g%d\"}\n", i, i % 7, i % 5 }' >onet.jsonl
fails 1 'onet.jsonl: one teacher label only \(card_arrival\)' "one teacher label, varied gold: refused" "$TRACER" fit onet.jsonl --out onet
check "nothing written" [ ! -e onet ]
"$TRACER" scan onet.jsonl >out 2>err
rc=$?
check "scan describes, then exits 1: one teacher label" [ $rc -eq 1 ]
check "and names it" grep -q "one teacher label only" err
has '^labels +1 teacher labels .*; 5 more seen only in ground_truth' "gold-only labels are named apart"

# traces split: a user's own file held out in part, grouped and stratified, as an artifact directory
awk 'BEGIN { srand(7); for (i = 0; i < 900; i++) { g = int(i / 3); l = g % 3
	printf "{\"id\":\"r%d\",\"input\":\"w%d v%d\",\"group\":\"g%d\",\"teacher\":\"t%d\"}\n", i, l, int(rand() * 1000), g, l } }' >grouped.jsonl
ok "traces split" "$TRACER" traces split grouped.jsonl --test 0.3 --seed 4 --out sp
has '^grouped.jsonl: 900 traces -> sp/traces.jsonl [0-9]+, sp/test.jsonl [0-9]+ ' "it says what it wrote"
check "every row on exactly one side" sh -c 'cat sp/traces.jsonl sp/test.jsonl | sort | uniq -d | wc -l | grep -qx 0 && [ $(cat sp/traces.jsonl sp/test.jsonl | wc -l) -eq 900 ]'
grep -o '"group":"g[0-9]*"' sp/traces.jsonl | sort -u >ga
grep -o '"group":"g[0-9]*"' sp/test.jsonl | sort -u >gb
check "no group on both sides" [ -z "$(comm -12 ga gb)" ]
nt=$(wc -l <sp/test.jsonl)
check "about 30% held out ($nt of 900)" [ "$nt" -ge 240 -a "$nt" -le 300 ]
for l in t0 t1 t2; do
	k=$(grep -c "\"teacher\":\"$l\"" sp/test.jsonl)
	check "label $l held out in proportion ($k of 300)" [ "$k" -ge 75 -a "$k" -le 105 ]
done
check "the manifest records the source's sha256, share and seed" sh -c \
	"grep -q \"\\\"sha256\\\": \\\"$(sha256sum grouped.jsonl | cut -d' ' -f1)\\\"\" sp/manifest.json && grep -q '\"seed\": 4' sp/manifest.json && grep -q '\"format\": \"tracer-split\"' sp/manifest.json"
ok "the same seed again" "$TRACER" traces split grouped.jsonl --test=0.3 --seed=4 --out sp2
check "byte-identical" cmp -s sp/test.jsonl sp2/test.jsonl
ok "another seed" "$TRACER" traces split grouped.jsonl --test 0.3 --seed 5 --out sp3
check "another split" sh -c '! cmp -s sp/test.jsonl sp3/test.jsonl'
ok "a split replaces its own directory" "$TRACER" traces split grouped.jsonl --seed 5 --out sp
mkdir mine && echo keep >mine/notes.txt
fails 1 'mine' "a directory tracer did not write is refused" "$TRACER" traces split grouped.jsonl --out mine
check "and left intact" [ "$(cat mine/notes.txt)" = keep ]
fails 2 '^tracer traces: --test must be in \(0, 1\)' "a bad share" "$TRACER" traces split grouped.jsonl --test 1.5 --out x
fails 2 '^tracer traces: split needs --out DIR' "no --out" "$TRACER" traces split grouped.jsonl
printf '{"input":"a","teacher":"x","group":"g"}\n{"input":"b","teacher":"y","group":"g"}\n' >onegroup.jsonl
fails 1 'cannot be split' "one group cannot be split" "$TRACER" traces split onegroup.jsonl --out og
check "nothing written" [ ! -e og ]

# traces export refuses a part the file does not have
fails 1 '^tracer: grouped.jsonl has no test part \(a trace file is all traces: `tracer traces split`' \
	"export --part test of a trace file" "$TRACER" traces export grouped.jsonl --part test --out t.jsonl
check "and writes nothing" [ ! -e t.jsonl ]
ok "export --part traces of a trace file" "$TRACER" traces export grouped.jsonl --part traces
check "all 900 rows" [ "$(wc -l <out)" -eq 900 ]

# progress on stderr for long work: a line per phase when stderr is not a terminal, redrawn in place on
# one, nothing with --quiet
ok "fit reports its phases" "$TRACER" fit easy.jsonl --target 0.9 --out prog
# (oof, the default: the fold models after the grid search and the refit are a phase of their own)
for ph in 'features of 600 of the 600 traces' 'surrogate liblinear and acceptor (420 fit-part rows, out of fold)' \
	'out-of-fold models: folds 2 to 5 and the refit' 'gate ltt-plan over 7 targets' 'OOD guard' 'writing prog' 'done in'; do
	check "fit: a line for \"$ph\"" grep -q "^fit: $ph" err
done
check "fit: one line per phase, with the elapsed time" sh -c '[ $(grep -v "grid search" err | grep -c "^fit: ") -eq 7 ] && [ $(grep -v "grid search" err | grep -c "s elapsed)$") -eq 6 ]'
# the surrogate's grid search (the longest phase of a fit): a phase, then a line per point trained
check "fit: the grid search's phase, then points 1/3 (with an ETA), 2/3 and 3/3 in order" sh -c 'grep "grid search" err | sed "s/(.*//" >gs.txt && printf "%s\n" "fit: surrogate liblinear grid search over 3 points " "fit: surrogate liblinear grid search over 3 points: 1/3 " "fit: surrogate liblinear grid search over 3 points: 2/3 " "fit: surrogate liblinear grid search over 3 points: 3/3 " | cmp -s - gs.txt && grep -q "over 3 points: 1/3 (.* elapsed, ETA [0-9]* s)" err'
ok "fit --grid with one point: no grid search reported" "$TRACER" fit easy.jsonl --target 0.9 --out prog --grid C=1 --force
check "fit --grid C=1: no grid search line" sh -c '! grep -q "grid search" err'
ok "fit --quiet" "$TRACER" fit easy.jsonl --target 0.9 --out prog --quiet
check "fit --quiet: nothing on stderr" [ ! -s err ]
ok "audit reports its phases" "$TRACER" audit pol held.jsonl --out aud2
check "audit: routing and writing" sh -c 'grep -q "^audit: routing 300 rows of held.jsonl with pol" err && grep -q "^audit: writing aud2" err && grep -q "^audit: done in" err'
ok "audit --quiet" "$TRACER" audit pol held.jsonl --out aud2 --quiet
check "audit --quiet: only the line naming what it wrote" sh -c '[ $(wc -l <err) -eq 1 ] && grep -q "^audit: aud2/report.md" err'
ok "scan --quiet" "$TRACER" scan easy.jsonl --quiet
check "scan --quiet: nothing on stderr" [ ! -s err ]
ok "scan" "$TRACER" scan easy.jsonl
check "scan: phases and done" sh -c 'grep -q "^scan: one fit (liblinear" err && grep -q "^scan: gate ltt over 7 targets" err && grep -q "^scan: done in" err'
tiny_spec '0 1'
ok "sweep reports its cells" "$TRACER" sweep tiny.spec --results r
check "sweep: the plan, then a line per cell with the ETA, then done" sh -c 'grep -q "^sweep: tiny: 2 cells, 0 finished, 2 to compute with 1 job (" err && grep -q "^sweep: tiny: cells computed: 1/2 (.* elapsed, ETA [0-9]* s)" err && grep -q "^sweep: done in" err'
rm -r r
ok "sweep --quiet" "$TRACER" sweep tiny.spec --results r --quiet
check "sweep --quiet: nothing on stderr" [ ! -s err ]
if command -v script >/dev/null 2>&1; then
	script -qc "'$TRACER' fit easy.jsonl --target 0.9 --out prog" /dev/null >tty.txt 2>&1
	check "on a terminal the line is redrawn in place" grep -q "$(printf '\r\033\\[K')fit: gate" tty.txt
else
	echo "skip: script(1) is not installed: the terminal redraw is not tested"
fi

finish
