# Grid points, then the fold models and the refit, trained in parallel threads (the default grids of
# liblinear and knn; fit's default calibration oof and crossfit): fits and train-surrogate runs that
# `make tsan` replays under ThreadSanitizer, and the promise that the result does not depend on the number
# of threads (fits and a sweep cell with --threads 1 and --threads 2).
. "$(dirname "$0")/lib.sh"

T=$FIX/audit/traces.jsonl
ok "fit, default liblinear grid" "$TRACER" fit "$T" --target 0.8 --targets 0.8,0.9 --seed 1 --out a
ok "fit again" "$TRACER" fit "$T" --target 0.8 --targets 0.8,0.9 --seed 1 --out b
check "the same policy directory twice, byte for byte" diff -r a b
ok "fit, oof, --threads 2" "$TRACER" fit "$T" --target 0.8 --targets 0.8,0.9 --seed 1 --threads 2 --out a2
ok "fit, oof, --threads 1" "$TRACER" fit "$T" --target 0.8 --targets 0.8,0.9 --seed 1 --threads 1 --out a1
check "oof: the policy does not depend on the thread count" diff -r a1 a2
ok "fit, crossfit, --threads 2" "$TRACER" fit "$T" --calibration crossfit --target 0.8 --targets 0.8 --threads 2 --out c2
ok "fit, crossfit, --threads 1" "$TRACER" fit "$T" --calibration crossfit --target 0.8 --targets 0.8 --threads 1 --out c1
check "crossfit: the policy does not depend on the thread count" diff -r c1 c2
fails 2 'threads must be 1..64' "fit --threads 0 refused" "$TRACER" fit "$T" --threads 0 --out z
ok "fit, knn grid" "$TRACER" fit "$T" --backend knn --target 0.8 --targets 0.8 --out k
ok "train-surrogate, liblinear grid" "$TRACER" train-surrogate "$T" --backend liblinear --grid "C=0.1,1,10,100"
has 'chosen: C=' "a grid point chosen"

cat >t.spec <<SPEC
name t
sets mnli:phi-3-small
backends liblinear
grid liblinear C=1,10
gates ltt
targets 0.8
traces 300
SPEC
ok "sweep cell, 1 thread" "$TRACER" sweep t.spec --cell 0 --results r1 --threads 1
ok "sweep cell, 2 threads" "$TRACER" sweep t.spec --cell 0 --results r2 --threads 2
check "the cell does not depend on the thread count" cmp -s r1/cells/t/*.json r2/cells/t/*.json
fails 2 'threads must be 1..64' "--threads 0 refused" "$TRACER" sweep t.spec --threads 0
finish
