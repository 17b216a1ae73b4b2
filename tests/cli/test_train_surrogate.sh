# tracer train-surrogate: every family on a small real set, embeddings input, bad input.
. "$(dirname "$0")/lib.sh"

# The families, from the usage text (which the family table writes): a new family is tested here too.
families=$("$TRACER" train-surrogate 2>&1 | sed -n 's/.*--backend \([a-z0-9|]*\).*/\1/p' | head -n 1 | tr '|' ' ')
check "family list read from the usage text ($families)" sh -c "echo ' $families ' | grep -q ' liblinear .* knn '"
for b in $families; do
	ok "train-surrogate $b on mnli:phi-3-small" "$TRACER" train-surrogate mnli:phi-3-small --backend $b --seed 3
	has '^test agreement with teacher 0\.[0-9]{4} \([0-9]+/306\)  macro-F1 0\.[0-9]{4}  gold accuracy' "$b report"
	cp out "$b.1"
	"$TRACER" train-surrogate mnli:phi-3-small --backend $b --seed 3 >"$b.2" 2>/dev/null
	check "$b: same seed, same report (timings aside)" \
		[ "$(grep -v '^seconds' "$b.1")" = "$(grep -v '^seconds' "$b.2")" ]
done
# A bag of words cannot do inference: MNLI agreement stays far below the intent benchmarks.
awk '/^test agreement/ { exit !($5 < 0.70) }' liblinear.1; check "MNLI agreement well below 0.70" [ $? = 0 ]

# The order of magnitude the issue expects: tf-idf + logistic regression, Banking77 gold, about 0.91.
ok "banking77:gold liblinear" "$TRACER" train-surrogate banking77:gold --backend liblinear --grid C=10
awk '/^test agreement/ { exit !($5 >= 0.89) }' out; check "Banking77 agreement >= 0.89" [ $? = 0 ]

E=$FIX/emb
ok "embeddings (.npy float32) with knn" "$TRACER" train-surrogate "$E/traces.jsonl" --backend knn \
	--features npy --embeddings "$E/emb.npy"
has '^traces 63 .* test 27  labels 3$' "a trace file without a test part is split 70/30"
has '^test agreement with teacher 1\.0000 \(27/27\)' "separable embeddings learned"
ok "embeddings with libsvm (RBF)" "$TRACER" train-surrogate "$E/traces.jsonl" --backend libsvm \
	--features npy --embeddings "$E/emb.npy" --grid "C=1;gamma=1"
has 'chosen: C=1 gamma=1' "grid override"
check "progress on stderr: each phase, then done" sh -c "grep -q '^train-surrogate: surrogate libsvm selection on [0-9]* rows' err && grep -q '^train-surrogate: refit on 63 traces' err && grep -q '^train-surrogate: done in' err"
ok "--quiet" "$TRACER" train-surrogate "$E/traces.jsonl" --backend libsvm --features npy --embeddings "$E/emb.npy" \
	--grid "C=1;gamma=1" --quiet
check "--quiet: nothing on stderr" [ ! -s err ]
fails 1 'emb-short.npy: 80 rows, but .*traces.jsonl has 90 traces' "row-count mismatch" \
	"$TRACER" train-surrogate "$E/traces.jsonl" --backend knn --features npy --embeddings "$E/emb-short.npy"
fails 1 'traces.jsonl: not a .npy file' "not an npy file" \
	"$TRACER" train-surrogate "$E/traces.jsonl" --backend knn --features npy --embeddings "$E/traces.jsonl"
fails 1 'knn: k=0 out of range' "bad hyperparameter" \
	"$TRACER" train-surrogate "$E/traces.jsonl" --backend knn --grid k=0
fails 2 '--backend must be' "unknown backend" "$TRACER" train-surrogate "$E/traces.jsonl" --backend forest
fails 2 '--embeddings goes with --features npy' "npy without a file" \
	"$TRACER" train-surrogate "$E/traces.jsonl" --backend knn --features npy
fails 2 'bad seed' "bad seed" "$TRACER" train-surrogate "$E/traces.jsonl" --backend knn --seed x1
finish
