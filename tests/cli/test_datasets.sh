# tracer datasets list / verify on the real mirror, a corrupted copy, a missing file, a changed source.
. "$(dirname "$0")/lib.sh"

ok "datasets list" "$TRACER" datasets list
has '^banking77:gold +10003 +3080 +0 +0 +77 ' "banking77:gold rows"
has '^banking77:gpt-4o +[0-9]+ +[0-9]+ +212 +0 +77  0\.7556 \(2167/2868\)' "banking77:gpt-4o 212 invalid, 0.7556"
has '^clinc150:gold +18000 +4500 +0 +1200 +150 ' "clinc150:gold rows and oos"
has '^clinc150:llama-3.2-1b-lora +[0-9]+ +[0-9]+ +7 +0 +150 ' "clinc150 LoRA 7 invalid"
has '^teachers/clinc150-val.llama-3.2-1b-lora.jsonl +3000 +2998 +2  0\.9777 \(2931/2998\)' "LoRA val 0.9777"
has '^teachers/clinc150-test.llama-3.2-1b-lora.jsonl +4500 +4495 +5  0\.9691 \(4356/4495\)' "LoRA test 0.9691"
has '^mnli:gold +[0-9]+ +[0-9]+ +0 +0 +3  1\.0000 \(9815/9815\)' "mnli:gold 9815 pairs"
has '^mnli:phi-3-small +[0-9]+ +[0-9]+ +0 +0 +3  0\.8301 \(850/1024\)' "phi-3 0.8301, 0 invalid"
awk '/^banking77:gpt-4o/ { exit !($2 + $3 == 2868) }' out; check "gpt-4o traces+test = 2868 valid" [ $? = 0 ]
awk '/^clinc150:llama/ { exit !($2 + $3 == 7493) }' out; check "LoRA traces+test = 7493 valid" [ $? = 0 ]
awk '/^mnli:gold/ { exit !($2 == 6871 || ($2 > 6700 && $2 < 7050)) }' out; check "mnli 70/30" [ $? = 0 ]
cp out list1
check "trace caches written" [ "$(ls cache/traces | wc -l)" -eq 6 ]
ok "datasets list from cache" "$TRACER" datasets list
check "cached list equals built list" cmp -s out list1

ok "datasets verify" "$TRACER" datasets verify
check "verify checks 10 files" [ "$(grep -c '^ok ' out)" -eq 10 ]

# A corrupted copy of the mirror: the sum check fails, and loading refuses the file.
cp -r "$MIRROR" mirror && chmod -R u+w mirror
printf 'x' >>mirror/banking77/train.csv
TRACER_DATA=$SCRATCH/mirror TRACER_CACHE=$SCRATCH/cache2 "$TRACER" datasets verify >out 2>err
check "verify exits 1 on a mismatch" [ $? = 1 ]
check "mismatch named" grep -q 'banking77/train.csv: sha256 mismatch: expected b06e26ac' err
check "others still checked" [ "$(grep -c '^ok ' out)" -eq 9 ]
fails 1 'train.csv: sha256 mismatch' "export refuses a corrupted source" \
	env TRACER_DATA="$SCRATCH/mirror" TRACER_CACHE="$SCRATCH/cache2" "$TRACER" traces export banking77:gold
rm mirror/teachers/mnli-dev1k.prompts.csv
fails 1 'mnli-dev1k.prompts.csv: missing \(looked in ' "missing file named" \
	env TRACER_DATA="$SCRATCH/mirror" "$TRACER" traces export mnli:phi-3-small
TRACER_DATA=$SCRATCH/mirror "$TRACER" datasets verify >out 2>err
check "verify exits 1 on a missing file" [ $? = 1 ]

# A changed source (new file, new sum in a manifest) builds the set again instead of using the cache.
mkdir -p m2/banking77 && cp "$MIRROR"/banking77/categories.json "$MIRROR"/banking77/test.csv m2/banking77/
head -n -1 "$MIRROR"/banking77/train.csv >m2/banking77/train.csv
sum=$(sha256sum m2/banking77/train.csv | cut -d' ' -f1)
awk -v s="$sum" 'BEGIN{FS=OFS="\t"} $1=="banking77/train.csv"{$2=s} {print}' "$ROOT/datasets/manifest.tsv" >m2.tsv
TRACER_DATA=$SCRATCH/m2 TRACER_MANIFEST=$SCRATCH/m2.tsv "$TRACER" traces export banking77:gold >out 2>err
check "changed source rebuilds: 10,002 traces" [ "$(wc -l <out)" -eq 10002 ]
check "a second cache file for banking77:gold" [ "$(ls cache/traces | grep -c '^banking77_gold')" -eq 2 ]

# Offline, fetch says what is missing, where it looked, and that the download failed (no network here).
head -n 5 "$ROOT/datasets/manifest.tsv" >one.tsv
grep '^mnli/dev_matched.jsonl' "$ROOT/datasets/manifest.tsv" >>one.tsv
mkdir empty
TRACER_DATA=$SCRATCH/empty TRACER_MANIFEST=$SCRATCH/one.tsv "$TRACER" datasets fetch >out 2>err
rc=$?
if [ -e "$SCRATCH/cache/downloads/mnli/dev_matched.jsonl" ]; then
	check "fetched file checked against its sum" grep -q '^fetched  mnli/dev_matched.jsonl' out
else
	check "fetch fails offline" [ $rc -eq 1 ]
	check "fetch names the file, where it looked and the URL" \
		grep -q "mnli/dev_matched.jsonl: missing from $SCRATCH/empty/mnli/dev_matched.jsonl and the download from https://" err
fi

# A broken manifest is reported with its line.
printf 'banking77/train.csv\tnothex\t1\tx\ty\n' >bad.tsv
fails 1 'bad.tsv:1: bad sha256' "bad manifest line" env TRACER_MANIFEST="$SCRATCH/bad.tsv" "$TRACER" datasets verify
finish
