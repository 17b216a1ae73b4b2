# tracer update: a policy keeps its traces; update refits on old + new under the parent's settings, with
# lineage; the result equals a fresh fit on the union (models, frontier, gate audit, decisions byte for byte).
. "$(dirname "$0")/lib.sh"

ok "fit a policy" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --out pol
check "the policy keeps its traces" [ "$(zstd -dc pol/traces.jsonl.zst | wc -l)" -eq 2005 ]
check "the manifest lists them with a checksum" grep -q '"traces.jsonl.zst": "[0-9a-f]\{64\}"' pol/manifest.json
check "the manifest records the grid" grep -q '"grid": "C=10"' pol/manifest.json
check "the default calibration is oof" grep -q '"calibration": "oof"' pol/manifest.json
ok "export test traffic" "$TRACER" traces export banking77:gpt-4o --part test --out test.jsonl
head -n 400 test.jsonl >new.jsonl
tail -n +401 test.jsonl >traffic.jsonl
ok "update with 400 new traces" "$TRACER" update pol new.jsonl --out pol2
has "^lineage: parent pol \(manifest sha256 [0-9a-f]{64}\), 2005 \+ 400 traces \(0 replaced\) = 2405$" "lineage printed"
sha=$(sha256sum pol/manifest.json | cut -d' ' -f1)
check "lineage in the manifest" grep -q "\"parent_sha256\": \"$sha\"" pol2/manifest.json
check "counts in the lineage" sh -c "tr -d ' \n' <pol2/manifest.json | grep -q '\"parent_traces\":2005,\"new_traces\":400,\"replaced\":0,\"traces\":2405'"
{ zstd -dc pol/traces.jsonl.zst; cat new.jsonl; } >union.jsonl
ok "a fresh fit on the union, same settings" "$TRACER" fit union.jsonl --grid C=10 --target 0.80 --out fresh
check "the updated policy keeps the union" sh -c "zstd -dc pol2/traces.jsonl.zst | cmp - union.jsonl"
for f in featurizer.txt stage1.model.zst acceptor1.model.zst ood.bin.zst frontier.json gate_audit.json; do
	check "update = fresh fit: $f byte for byte" cmp pol2/$f fresh/$f
done
ok "eval the updated policy" sh -c "'$TRACER' eval pol2 traffic.jsonl | tail -n +2 >e2"
ok "eval the fresh fit" sh -c "'$TRACER' eval fresh traffic.jsonl | tail -n +2 >e1"
check "update then eval = fresh fit then eval, byte for byte" cmp e1 e2
"$TRACER" route pol2 --batch 500 <traffic.jsonl >d2
"$TRACER" route fresh --batch 500 <traffic.jsonl >d1
check "and every decision" cmp d1 d2

# an oof policy: update refits under oof with the parent's fit / calibration split
ok "fit an oof policy" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --calibration oof --split 60/40 --out opol
ok "update it" "$TRACER" update opol new.jsonl --out opol2
ok "a fresh oof fit on the union" "$TRACER" fit union.jsonl --grid C=10 --target 0.80 --calibration oof --split 60/40 --out ofresh
check "the update stays oof" grep -q '"calibration": "oof"' opol2/manifest.json
for f in stage1.model.zst acceptor1.model.zst gate_audit.json; do
	check "oof update = fresh oof fit: $f byte for byte" cmp opol2/$f ofresh/$f
done

# a holdout policy: update refits under holdout with the parent's train / validation / calibration split
ok "fit a holdout policy" "$TRACER" fit banking77:gpt-4o --grid C=10 --target 0.80 --calibration holdout --split 50/20/30 --out hpol
ok "update it" "$TRACER" update hpol new.jsonl --out hpol2
ok "a fresh holdout fit on the union" "$TRACER" fit union.jsonl --grid C=10 --target 0.80 --calibration holdout --split 50/20/30 --out hfresh
check "the update stays holdout" grep -q '"calibration": "holdout"' hpol2/manifest.json
for f in stage1.model.zst acceptor1.model.zst gate_audit.json; do
	check "holdout update = fresh holdout fit: $f byte for byte" cmp hpol2/$f hfresh/$f
done

# what changed
ok "audit --compare" "$TRACER" audit pol2 traffic.jsonl --compare pol --top 5
has "^Lineage: updated from a parent with manifest SHA-256 [0-9a-f]{12} \(the compared policy\), 2005 \+ 400 traces" "lineage shown"
has "^\| traces used \| 2005 \| 2405 \|$" "trace counts"
has "^\| stage 1 threshold \| [0-9.]+ \| [0-9.]+ \|$" "thresholds"
has "^On 463 inputs of traffic.jsonl: [0-9]+ handled before are now deferred" "changed decisions"
check "five labels listed" [ "$(grep -c '^| [a-z_]* | [0-9]* | [0-9.]* | [0-9.]* | [+-][0-9.]* |$' out)" -eq 5 ]
check "--compare writes nothing" [ ! -e pol2/audit ]
ok "compared the other way round" "$TRACER" audit pol traffic.jsonl --compare pol2
check "no lineage for the parent" sh -c "! grep -q '^Lineage' out"

# a new trace with an old id replaces it
zstd -dc pol/traces.jsonl.zst | head -n 1 | sed 's/"teacher":"[^"]*"/"teacher":"card_linking"/' >fix.jsonl
ok "update with a corrected trace" "$TRACER" update pol fix.jsonl --out pol3
has "2005 \+ 1 traces \(1 replaced\) = 2005$" "the old trace was replaced"
check "the corrected label is kept, at the end" sh -c "zstd -dc pol3/traces.jsonl.zst | tail -n 1 | cmp - fix.jsonl"

# refusals
fails 1 "nope" "a missing policy" "$TRACER" update nope new.jsonl --out x
fails 1 "missing.jsonl" "missing new traces" "$TRACER" update pol missing.jsonl --out x
check "nothing written on failure" [ ! -e x ]
fails 2 "expected POLICY NEW_TRACES --out NEW_POLICY" "no --out" "$TRACER" update pol new.jsonl
E=$FIX/emb
ok "fit on embeddings" "$TRACER" fit "$E/traces.jsonl" --embeddings "$E/emb.npy" --backend knn --target 0.8 --out embp
fails 1 "only tf-idf policies can be updated" "an embeddings policy" "$TRACER" update embp "$E/traces.jsonl" --out x
finish
