# tracer audit: figures recomputed from the decisions file, HTML escaping, a refused policy, the nearest
# miss of a crafted refusal, plateaus from a sweep.
. "$(dirname "$0")/lib.sh"

T=$FIX/audit/traces.jsonl
# pol: holdout calibration, explicitly: its three-way split is checked below, and under it the surrogate
# defers rows the swapped-traffic checks need (under the default, oof, point deploys global on this fixture)
ok "fit" "$TRACER" fit "$T" --gate point --target 0.8 --targets 0.8 --seed 2 --calibration holdout --out pol
ok "audit" "$TRACER" audit pol "$T" --out aud --queries 50000 --cost 0.01
for f in report.md report.html report.json decisions.jsonl; do check "audit file $f" [ -s "aud/$f" ]; done
check "one decision per traffic row" [ "$(wc -l <aud/decisions.jsonl)" -eq "$(wc -l <"$T")" ]

# artifacts: numbers are numbers, in their shortest round-trip form; TSVs have headers and label names
check "manifest target written as 0.8" grep -q '"target": 0.8,' pol/manifest.json
check "no 17-digit form of a short number" sh -c "! grep -q '0\.80000000000000004\|0\.94999999999999996' pol/manifest.json pol/gate_audit.json aud/report.json"
check "an infinite threshold is null with its companion" grep -q '"stage1_threshold_inf": "-inf"' pol/manifest.json
check "no threshold is a string" sh -c "! grep -q '\"threshold\": \"' pol/gate_audit.json pol/frontier.json"
check "per_label.tsv has a header" [ "$(head -n 1 aud/per_label.tsv)" = "$(printf 'rank\tlabel\ttraces\thandled\thandled_share\tagreement_handled')" ]
check "per_label.tsv names the labels" grep -q "$(printf '\tbilling\t66\t')" aud/per_label.tsv
check "per_label.tsv: one line per label" [ "$(wc -l <aud/per_label.tsv)" -eq 5 ]
check "every decision says whether the OOD guard deferred it" [ "$(grep -Ec '"ood":(true|false)' aud/decisions.jsonl)" -eq "$(wc -l <"$T")" ]
check "report.md explains the traces used" grep -q '^- traces: .*(211 used: 127 train, 43 validation, 41 calibration)' pol/report.md
ok "fit under ltt at 0.97" "$TRACER" fit "$T" --gate ltt --target 0.97 --targets 0.97 --seed 2 --out lttpol
check "an undeployable family's coverage and agreement are null, not 0" \
	grep -Eq '"status": "not deployable",( "reason": "[^"]*",)? *$' lttpol/frontier.json
check "... (its fields)" sh -c "grep -A4 '\"not deployable\"' lttpol/frontier.json | grep -q '\"coverage\": null'"
ok "fit under the default rule" "$TRACER" fit "$T" --target 0.8 --targets 0.8 --seed 2 --out planpol
check "report.md counts oof's parts (the default calibration)" \
	grep -q '^- traces: .*(211 used: 148 fit part, out-of-fold for validation; 63 calibration part)' planpol/report.md
check "report.md says oof's plan is read from out-of-fold rows" grep -q "chosen on the fit part's out-of-fold rows before" planpol/report.md
check "report.md gives ltt-plan's start levels" grep -Eq '^- ltt-plan start levels .* Here l2d: main start 0\.[0-9]{2}(, backup 0\.[0-9]{2})?\.$' planpol/report.md
check "report.md explains the ltt start level" grep -q '^- ltt start level 1.00: .*2·ln δ / ln α = 224 rows' lttpol/report.md

# report.html: the gate's walk and the per-label bars, Markdown code rendered
check "two charts embedded (walk, per label)" [ "$(grep -c 'src="data:image/png;base64,' aud/report.html)" -eq 2 ]
check "the walk's data: a block per family, a header each" [ "$(grep -c '^coverage	stat	bound	pass$' aud/gate_walk.tsv)" -ge 2 ]
check "the deployed step is marked" grep -q '^# deployed$' aud/gate_walk.tsv
check "backticks become <code>" grep -q 'rule <code>point</code>' aud/report.html

# per-label figures from the decisions file, recomputed independently
awk -F'"' '{ t = ""; h = 0
	for (i = 1; i < NF; i++) { if ($i == "teacher") t = $(i + 2); if ($i == "decision" && $(i + 2) == "handled") h = 1 }
	n[t]++; hd[t] += h }
	END { for (t in n) printf "%s %d %.3f\n", t, n[t], hd[t] / n[t] }' aud/decisions.jsonl | grep -v script | sort >mine
sed -n '/^## Per teacher label/,/^## By input length/p' aud/report.md | grep -E '^\| [^-l]' | grep -v script | awk -F'|' '{ gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4); print $2, $3, $4 }' | sort >theirs
check "per-label traces and handled share equal a recomputation" cmp -s mine theirs
check "some rows handled" [ "$(awk '$3 > 0' theirs | wc -l)" -gt 0 ]
check "the script label is escaped in report.md" grep -q '^| &lt;script&gt;alert' aud/report.md
total=$(( $(awk '{ s += $2 } END { print s }' theirs) + 1 ))
check "the per-label table sums to the trace count ($total)" [ "$total" -eq "$(wc -l <"$T")" ]
handled=$(grep -c '"decision":"handled"' aud/decisions.jsonl)
calls=$(awk -v n="$(wc -l <"$T")" -v h="$handled" 'BEGIN { printf "%.0f", 50000 * (1 - h / n) }')
check "cost projection from traffic coverage ($calls calls)" grep -q "$calls calls and \\$" aud/report.md

# user text is escaped in the HTML page, which is self-contained
check "no raw <script> in the page" sh -c "! grep -q '<script>' aud/report.html"
check "the input is there, escaped" grep -q '&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;' aud/report.html
check "no external assets" sh -c "! grep -Eq '(src|href)=\"(http|//)' aud/report.html"
check "chart embedded as a data URI" grep -q 'src="data:image/png;base64,' aud/report.html

# a refused policy still gets its report: why it was refused (here nothing reached a calibration test)
ok "fit a refused policy" "$TRACER" fit mnli:phi-3-small --target 0.95 --out refused
ok "audit the refused policy" "$TRACER" audit refused mnli:phi-3-small --out raud
has '\*\*Refused\*\*' "refusal stated"
has '^No threshold was tested on calibration rows: each family' "a refusal before any calibration test says so (no nearest miss)"
check "a refused policy's page says why instead of charting zeros" grep -q 'The policy is refused, so nothing is handled' raud/report.html
check "... and has no per-label chart" sh -c "! grep -q 'Handled share per teacher label on the audited' raud/report.html"

# a crafted refusal: the nearest miss is the threshold needing the fewest extra agreeing rows
cp -r refused crafted
cat >crafted/gate_audit.json <<'JSON'
{"format": "tracer-gate-audit", "version": 1, "target": 0.9, "rule": "point", "delta": 0.1,
 "delta_per_family": 0.0333, "statistic": "agreement", "calibration_rows": 200, "validation_rows": 200,
 "deployed": "refused", "families": [
  {"family": "global", "status": "not deployable", "reason": "x", "steps": [
    {"threshold": null, "n": 200, "k": 160, "stat": 0.8, "pass": false}]},
  {"family": "l2d", "status": "not deployable", "reason": "y", "steps": [
    {"threshold": 0.9, "n": 5, "k": 5, "stat": 1.0, "pass": false},
    {"threshold": 0.7, "n": 20, "k": 17, "stat": 0.85, "pass": false},
    {"threshold": 0.5, "n": 100, "k": 85, "stat": 0.85, "pass": false}]},
  {"family": "rsb", "status": "not tried", "reason": "z", "steps": []}]}
JSON
# the crafted file gets its checksum in the manifest (a policy's files are verified on loading)
sum=$(sha256sum crafted/gate_audit.json | cut -c1-64)
sed -i "s/\"gate_audit.json\": \"[0-9a-f]*\"/\"gate_audit.json\": \"$sum\"/" crafted/manifest.json
ok "audit the crafted refusal" "$TRACER" audit crafted mnli:phi-3-small --out caud
has '^Nearest miss: l2d at threshold 0.7000 accepted 20 calibration rows, 17 agreeing \(agreement 0.8500\); 1 more agreeing rows' \
	"the nearest miss is l2d at 0.70, one row short"

# plateaus over trace count from a sweep (quick spec: 500 traces and all)
ok "sweep" "$TRACER" sweep "$ROOT/experiments/quick.spec" --results res --jobs 2
ok "audit plateaus" "$TRACER" audit --results res --spec "$ROOT/experiments/quick.spec" --set banking77:gpt-4o --rule point --target 0.90 --out plat
check "plateau report files" sh -c "[ -s plat/report.md ] && [ -s plat/report.html ] && [ -s plat/report.json ]"
has '^\| \*all labels \(coverage\)\* \|' "coverage row"
check "the plateau chart's TSV has a header" [ "$(head -n 1 plat/coverage.tsv)" = "$(printf 'traces\tcoverage')" ]
check "... and its chart was drawn" [ -s plat/coverage.png ]
has 'labels stopped improving\.$' "plateau summary"
fails 1 'no finished cells with per-label results' "plateaus need per-label cells" \
	"$TRACER" audit --results res --spec "$ROOT/experiments/quick.spec" --set banking77:gpt-4o --target 0.80 --out plat2
# a results directory named like a gnuplot command runs nothing (the command would cd to $HOME first)
r="r'; system 'cd ~;touch PWNED3'; print '"
cp -r res "$r"
export HOME="$SCRATCH"
ok "plateaus from a results directory named like a gnuplot command" "$TRACER" audit --results "$r" \
	--spec "$ROOT/experiments/quick.spec" --set banking77:gpt-4o --rule point --target 0.90
check "its chart was drawn" [ -s "$r/audit-plateaus/coverage.png" ]
check "no command ran" [ -z "$(find "$SCRATCH" -name 'PWNED*' -print -quit)" ]
fails 2 'expected DIR and TRAFFIC' "usage" "$TRACER" audit pol
fails 1 '^tracer: nothere: cannot open: No such file or directory$' "no policy there" "$TRACER" audit nothere "$T" --out x1
cp -r pol pol2 && printf 'x' >>pol2/stage1.model.zst
fails 1 'stage1.model.zst: sha256 mismatch' "a changed model file" "$TRACER" audit pol2 "$T" --out x2
check "nothing written for either" [ ! -e x1 -a ! -e x2 ]

# traffic whose teacher swapped two labels: the deferred rows the surrogate answers otherwise are
# listed as confusions, counted like a recomputation from the decisions file
sed -e 's/"teacher": "billing"/"teacher": "SWAP"/' -e 's/"teacher": "refund"/"teacher": "billing"/' \
	-e 's/"teacher": "SWAP"/"teacher": "refund"/' "$T" >swapped.jsonl
ok "audit swapped traffic" "$TRACER" audit pol swapped.jsonl --out swp --top 50
mine=$(awk -F'"' '{ t = ""; p = ""; d = ""
	for (i = 1; i < NF; i++) { if ($i == "teacher") t = $(i + 2); if ($i == "top1") p = $(i + 2); if ($i == "decision") d = $(i + 2) }
	if (d == "deferred" && p != "" && p != t) n++ } END { print n + 0 }' swp/decisions.jsonl)
theirs=$(sed -n '/^## Why it defers/,/^## Boundary/p' swp/report.md | awk -F'|' 'NF > 3 && $4 ~ /^ *[0-9]+ *$/ { s += $4 } END { print s + 0 }')
check "confusion counts add up to the deferred rows answered otherwise ($mine)" [ "$mine" -gt 0 -a "$mine" = "$theirs" ]
finish
