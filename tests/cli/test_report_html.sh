# report.html in a browser: headless Chromium renders audit pages and takes screenshots. The pixels must
# show ink, the per-label bars (their green) and the gate walk's markers (red); the page as Chromium parsed
# it must hold both charts. A refused policy's page says why and draws no bars. Needs chromium (`make test`
# installs it through scripts/install-deps.sh); without it the test says so and checks nothing.
. "$(dirname "$0")/lib.sh"

CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
	echo "skipped: test_report_html.sh: chromium is not installed (CHROMIUM=1 scripts/install-deps.sh installs it)"
	finish
	exit 0
fi
export HOME="$SCRATCH"
# shot NAME PAGE: NAME.png, a 1100×2000 screenshot of PAGE; NAME.dom, the page as Chromium parsed it
shot() {
	"$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$SCRATCH/chrome" \
		--window-size=1100,2000 --screenshot="$SCRATCH/$1.png" "file://$SCRATCH/$2" >/dev/null 2>&1
	"$CHROME" --headless --no-sandbox --disable-gpu --user-data-dir="$SCRATCH/chrome" --dump-dom \
		"file://$SCRATCH/$2" >"$1.dom" 2>/dev/null
}
# pixels NAME: "ink green red" counts over every other row and column of NAME.png (gnuplot decodes the
# PNG into a table of x y r g b)
pixels() {
	rm -f px.txt
	gnuplot -e "set table 'px.txt'; plot '$1.png' binary filetype=png every 2:2 with rgbimage" 2>/dev/null
	awk 'NF >= 5 && $1 != "#" { if ($3 < 250 || $4 < 250 || $5 < 250) ink++
		if ($4 > 130 && $3 < 110 && $5 < 110) g++; if ($3 > 180 && $4 < 90 && $5 < 90) r++ }
		END { printf "%d %d %d\n", ink, g, r }' px.txt
}

printf '<!DOCTYPE html>\n<html><body></body></html>\n' >blank.html
shot blank blank.html
set -- $(pixels blank)
check "a blank page counts as blank (ink $1)" [ "${1:-1}" -eq 0 ]

T=$FIX/audit/traces.jsonl
ok "fit" "$TRACER" fit "$T" --gate point --target 0.8 --targets 0.8 --seed 2 --out pol
ok "audit" "$TRACER" audit pol "$T" --out aud
shot deployed aud/report.html
check "screenshot taken" [ -s deployed.png ]
set -- $(pixels deployed)
check "the page is not blank (ink $1)" [ "${1:-0}" -gt 20000 ]
check "the per-label bars are drawn (green $2)" [ "${2:-0}" -gt 500 ]
check "the gate walk's markers are drawn (red $3)" [ "${3:-0}" -gt 10 ]
check "both charts are in the parsed page" [ "$(grep -o '<img alt="chart" src="data:image/png;base64,' deployed.dom | wc -l)" -eq 2 ]
check "the gate walk's caption" grep -q "The gate's walk: every threshold examined" deployed.dom
check "Markdown code is rendered" grep -q 'rule <code>point</code>' deployed.dom
check "no backtick left in the prose" sh -c "! grep -q 'rule \`' deployed.dom"
# the audit ran on the policy's own traces: the misuse warning heads the page, the path escaped
check "the misuse warning is on the page" grep -q '<h2>Warnings</h2>' deployed.dom
check "... naming the traffic file" grep -q "<td>$(echo "$T" | sed 's/[.[\*^$]/\\&/g') is the file the policy was fitted on" deployed.dom

ok "fit a refused policy" "$TRACER" fit mnli:phi-3-small --target 0.95 --out refused
ok "audit it" "$TRACER" audit refused mnli:phi-3-small --out raud
shot refused raud/report.html
set -- $(pixels refused)
check "the refused page is not blank (ink $1)" [ "${1:-0}" -gt 10000 ]
check "... and draws no bars (green $2)" [ "${2:-1}" -lt 25 ]
check "it says why instead of an empty chart" grep -q 'The policy is refused, so nothing is handled' refused.dom
check "it embeds no empty chart" sh -c "! grep -q '<img' refused.dom"
check "held-out traffic (the set's test part): no Warnings section" sh -c "! grep -q 'Warnings' refused.dom"
# SHOTS=DIR keeps the screenshots, for a person to look at
[ -z "${SHOTS:-}" ] || cp deployed.png refused.png "$SHOTS/"
finish
