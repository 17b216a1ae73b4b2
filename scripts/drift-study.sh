#!/bin/sh
# The drift study (PAPER.md "Drift", figure 7), run by `make reproduce`: fits the policies, replays the
# scenarios with `tracer replay` and writes RESULTS/drift/*.jsonl plus RESULTS/drift/scenarios.tsv (what
# each file holds). `tracer collect` turns them into tables and the PAPER.md section.
# Resumable: a policy directory or a summary file that exists is not recomputed (after a change of the
# policy format, remove DRIFT_WORK, default build/drift, so that the policies are refitted).
#
#   no drift      pooled traffic (the sweeps' pooled protocol, seed 0): one policy per set and α, fitted on
#                 the pooled traces; 100 seeded shuffles of the pooled test traffic reuse that policy, each
#                 with its own audit seed.
#   teacher swap  banking77:gold policy; after 1,000 inputs of its test traffic the stream continues with
#                 all 2,868 banking77:gpt-4o rows (the same texts, labelled by GPT-4o).
#   new intents   clinc150:gold policy; after 1,000 test inputs 10% or 30% of the stream are CLINC150's
#                 out-of-scope queries (teacher label oos).
#   official      banking77:gold and clinc150:gold policies on their official test traffic, no change point.
# The change-point scenarios use policy seeds 0-2 (one fit each) and 10 shuffles per policy.
set -eu
TRACER=${TRACER:-./tracer}
RESULTS=${RESULTS:-results}
WORK=${DRIFT_WORK:-build/drift}
OUT=$RESULTS/drift
RATES=0.01,0.02,0.05
METHODS=betting,mixture
mkdir -p "$OUT" "$WORK"
index=$OUT/scenarios.tsv.part
printf 'scenario\tset\talpha\tpolicy_seed\tfile\n' >"$index"

# The study's policies use the ltt gate and holdout calibration (the defaults when the study was run; fit
# defaults to ltt-plan and oof now): the monitor's behaviour does not depend on which guaranteed rule deployed
# the policy, and the committed summaries are reproduced only by the policies they were replayed on.
# fit() only notes a policy; it is fitted when a replay or timeline needs it (need), so that a run whose
# summaries are all there (a fresh clone: they are committed) fits nothing.
plan=$WORK/policies.tsv.part
: >"$plan"
fit() { # DIR TRACES TARGET SEED
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$plan"
}
need() { # DIR
	[ -d "$WORK/$1" ] && return 0
	awk -F'\t' -v d="$1" '$1 == d { print $2; print $3; print $4; exit }' "$plan" | {
		read -r traces && read -r target && read -r seed || exit 1
		"$TRACER" fit "$traces" --out "$WORK/$1" --gate ltt --calibration holdout --grid C=10 --targets 0.90,0.95 \
			--target "$target" --seed "$seed" >/dev/null
	}
}
# replay SCENARIO SET ALPHA PSEED FILE POLICY TRAFFIC [ARGS...]
replay() {
	sc=$1 set=$2 a=$3 ps=$4 f=$5 pol=$6 traffic=$7
	shift 7
	[ -s "$OUT/$f" ] || { need "$pol" && "$TRACER" replay "$WORK/$pol" "$traffic" --audit-rate $RATES \
		--method $METHODS --summary "$OUT/$f" "$@"; } || exit 1
	printf '%s\t%s\t%s\t%s\t%s\n' "$sc" "$set" "$a" "$ps" "$f" >>"$index"
}

# ---- no drift: pooled traffic ----
for set in banking77:gold clinc150:gold; do
	s=$(echo "$set" | tr ':' '-')
	[ -s "$WORK/$s-pooled-traces.jsonl" ] || "$TRACER" traces export "$set" --pooled 0 --part traces \
		--out "$WORK/$s-pooled-traces.jsonl"
	[ -s "$WORK/$s-pooled-test.jsonl" ] || "$TRACER" traces export "$set" --pooled 0 --part test \
		--out "$WORK/$s-pooled-test.jsonl"
	for a in 0.90 0.95; do
		fit "$s-pooled-$a" "$WORK/$s-pooled-traces.jsonl" $a 0
		replay nodrift "$set" $a 0 "nodrift-$s-$a.jsonl" "$s-pooled-$a" "$WORK/$s-pooled-test.jsonl" \
			--shuffle 1000 --streams 100
	done
done

# ---- change points and the official split (α = 0.95) ----
for ps in 0 1 2; do
	fit "banking77-gold-$ps" banking77:gold 0.95 $ps
	fit "clinc150-gold-$ps" clinc150:gold 0.95 $ps
	seed=$((100 * ps + 1))
	replay swap banking77:gold 0.95 $ps "swap-$ps.jsonl" "banking77-gold-$ps" banking77:gold --shuffle $seed \
		--streams 10 --switch-at 1000 --then banking77:gpt-4o --then-part all
	for mix in 0.10 0.30; do
		replay "oos$mix" clinc150:gold 0.95 $ps "oos$mix-$ps.jsonl" "clinc150-gold-$ps" clinc150:gold \
			--shuffle $seed --streams 10 --switch-at 1000 --then clinc150:gold --then-part extra --then-mix $mix
	done
	for set in banking77:gold clinc150:gold; do
		s=$(echo "$set" | tr ':' '-')
		replay official "$set" 0.95 $ps "official-$s-$ps.jsonl" "$s-$ps" "$set" --shuffle $seed --streams 10
	done
done

# ---- the figure's timelines: one stream per scenario, audit rate 0.05, the default monitor ----
timeline() { # NAME POLICY TRAFFIC [ARGS...]
	n=$1 pol=$2 traffic=$3
	shift 3
	[ -s "$OUT/timeline-$n.jsonl" ] || { need "$pol" && "$TRACER" replay "$WORK/$pol" "$traffic" --audit-rate 0.05 \
		--every 50 --timeline "$OUT/timeline-$n.jsonl" --summary "$OUT/timeline-$n.summary.json" "$@"; } || exit 1
}
timeline nodrift banking77-gold-pooled-0.95 "$WORK/banking77-gold-pooled-test.jsonl" --shuffle 1000
timeline swap banking77-gold-0 banking77:gold --shuffle 1 --switch-at 1000 --then banking77:gpt-4o --then-part all
timeline oos0.30 clinc150-gold-0 clinc150:gold --shuffle 1 --switch-at 1000 --then clinc150:gold --then-part extra \
	--then-mix 0.30
timeline official clinc150-gold-0 clinc150:gold --shuffle 1
mv "$index" "$OUT/scenarios.tsv"
echo "drift study: $(($(wc -l <"$OUT/scenarios.tsv") - 1)) summary files in $OUT"
