# tracer scan: a first read of a trace file (counts, duplicates, lengths, agreement, coverage per rule).
. "$(dirname "$0")/lib.sh"

T=$FIX/audit/traces.jsonl
ok "scan a trace file" "$TRACER" scan "$T"
has "^traces             211 rows" "rows counted"
has "^labels             4 teacher labels \(largest 77 rows, smallest 1; 1 with a single row\)" "labels counted"
has "^  shipping +77 +36\.5%" "largest label first"
has "^duplicates         0 rows" "no duplicates in the fixture"
has "^input length       characters: min [0-9]+, median" "length distribution"
has "^agreement          0\.[0-9]{4} with the teacher on the [0-9]+ held-out calibration rows" "held-out agreement"
for r in point cp-holdout ltt; do
	check "a coverage table for gate $r" grep -q "^gate $r " out
done
check "seven default targets per rule" [ "$(grep -c -E '^  0\.(80|85|90|95|97|98|99) ' out)" -eq $((7 * $(grep -c '^gate ' out))) ]
check "progress on stderr" grep -q '^scan: done in ' err
# The calibration is fit's (default oof), and each rule's promise is the one fit would record.
has "^surrogate          liblinear, calibration oof: [0-9]+ fit-part rows \(out of fold, 5 folds\) / [0-9]+ calibration rows tested" "oof by default, as fit"
has "^gate ltt-plan \(P\(agreement on handled traffic < α\) <= δ for the deployed policy" "ltt-plan states oof's promise"
ok "scan under holdout" "$TRACER" scan "$T" --calibration holdout
has "^surrogate          liblinear, calibration holdout: [0-9]+ train / [0-9]+ validation / [0-9]+ calibration rows" "holdout's three parts"
check "holdout's ltt-plan promise says the split is stratified" grep -q "^gate ltt-plan (.*the split is stratified by label" out
ok "scan under crossfit" "$TRACER" scan "$T" --calibration crossfit
has "^gate ltt-plan \(no formal guarantee: the gate tests the out-of-fold models" "crossfit promises nothing"
fails 2 "--calibration must be holdout, crossfit or oof" "a bad calibration" "$TRACER" scan "$T" --calibration magic
# duplicates: the same input twice with another teacher answer, once more with the same
{ cat "$T"; printf '%s\n' '{"id":"d1","input":"where is my parcel now","teacher":"shipping"}' \
	'{"id":"d2","input":"where is my parcel now","teacher":"shipping"}' '{"id":"d3","input":"where is my parcel now","teacher":"refund"}'; } >dup.jsonl
ok "scan with duplicates" "$TRACER" scan dup.jsonl
has "^duplicates         2 rows repeat an earlier input \(1 distinct inputs; 1 of them with differing teacher answers\)" "duplicates found"
ok "the scan repeats itself" sh -c "'$TRACER' scan dup.jsonl >a.txt 2>/dev/null && '$TRACER' scan dup.jsonl >b.txt 2>/dev/null && cmp a.txt b.txt"
check "no cross-validation unless asked" sh -c "! grep -q '^cross-validated' out"
ok "scan with 3-fold cross-validation" "$TRACER" scan "$T" --cv 3
has "^cross-validated    agreement 0\.[0-9]{4} with the teacher \(3 folds over 211 traces, [0-9]+ agree\)$" "cross-validated agreement"
fails 2 "--cv takes 2 to 10 folds" "--cv 1" "$TRACER" scan "$T" --cv 1
fails 1 "nope.jsonl" "a missing file" "$TRACER" scan nope.jsonl
fails 1 "malformed.jsonl:[0-9]+" "a malformed file names its line" "$TRACER" scan "$FIX/bad/malformed.jsonl"
fails 2 "expected traces" "no argument" "$TRACER" scan
finish
