#!/bin/sh
# make bench: speed and memory of the pieces that exist, as a table on stdout and results/bench.tsv.
# Each figure is the median of REPS runs (REPS=3 by default). Targets are in README ("Speed").
# BENCH_ONLY=dense runs only the dense workload (into results/bench-dense.tsv); BENCH_FAMILIES (default
# "softmax liblinear") picks the families it fits, the other families' rows kept from the file as it was.
# BENCH_ONLY=fit reruns only `tracer fit banking77:gold` under holdout and oof (wall, CPU, peak RSS).
# BENCH_ONLY=search reruns only the nearest-neighbour and routing rows (knn prediction by CPU time, route
# and serve with and without the OOD guard) and replaces those rows of results/bench.tsv, keeping the others.
set -eu
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
# The calibration mode of every `tracer fit` here: holdout by default, the mode the committed rows were
# measured in (and a held-out calibration split, as the reference tool of the dense workload uses); fit's
# own default is oof (2-3x the CPU of holdout: five fold models and a refit). BENCH_CALIBRATION=oof measures it.
CAL=${BENCH_CALIBRATION:-holdout}
out=results/bench.tsv
tmp=$out.tmp.$$ # the next results file, renamed over it at the end
# every other temporary lives in a private directory, made here and removed at exit with the file above
# (nothing else is ever deleted)
W=$(mktemp -d "${TMPDIR:-/tmp}/tracer-bench.XXXXXX")
trap 'rm -rf "$W"; rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf 'what\tset\tvalue\tunit\n' >"$tmp"
# $W/one: banking77:gold's test part; $W/many: ten copies of it with unique ids
test_copies() {
	./tracer traces export banking77:gold --part test >"$W/one"
	for k in 0 1 2 3 4 5 6 7 8 9; do sed "s/^{\"id\":\"/{\"id\":\"r$k:/" "$W/one"; done >"$W/many"
}
# POLICY LABEL ARGS: median inputs per CPU second of `tracer route` over $W/many (every line must route)
route_rate() {
	n=$(wc -l <"$W/many")
	: >"$W/cpu"
	i=0
	while [ $i -lt "$REPS" ]; do
		/usr/bin/time -f "%U %S" -o "$W/t" ./tracer route "$1" $3 <"$W/many" >"$W/routed"
		awk '{ print $1 + $2 }' "$W/t" >>"$W/cpu"
		if grep -q '"error"' "$W/routed"; then echo "bench: route wrote error lines" >&2; exit 1; fi
		i=$((i + 1))
	done
	printf '%s\tbanking77:gold\t%.0f\tinputs/s/core\n' "$2" \
		"$(awk -v n="$n" -v t="$(median <"$W/cpu")" 'BEGIN { print n / t }')" >>"$tmp"
	rm -f "$W/cpu" "$W/routed"
}
# route rows: policies $pol/p (OOD guard on) and $pol/q (--no-ood)
route_rows() {
	route_rate "$pol/p" 'route --batch 256 (OOD guard on)' '--batch 256'
	route_rate "$pol/q" 'route --batch 256 (--no-ood)' '--batch 256'
	route_rate "$pol/q" 'route, flushed per line (--no-ood)' ''
}
# FAMILY SET GRID: fit seconds, peak RSS and prediction throughput of train-surrogate (medians)
family_rows() {
	: >"$W/fit"; : >"$W/rss"; : >"$W/pred"
	i=0
	while [ $i -lt "$REPS" ]; do
		./tracer train-surrogate "$2" --backend "$1" --grid "$3" --quiet >"$W/run"
		awk -v w="$W" '/^seconds/ { print $7 >> (w "/fit"); print $9 >> (w "/pred"); print $12 >> (w "/rss") }' "$W/run"
		ntest=$(awk '/^traces/ { print $9 }' "$W/run")
		i=$((i + 1))
	done
	fit=$(median <"$W/fit"); pred=$(median <"$W/pred"); rss=$(median <"$W/rss")
	printf '%s fit (one grid point, %s)\t%s\t%s\ts\n' "$1" "$3" "$2" "$fit" >>"$tmp"
	printf '%s peak RSS (whole train-surrogate)\t%s\t%s\tMB\n' "$1" "$2" "$rss" >>"$tmp"
	printf '%s prediction\t%s\t%s\tinputs/s/core\n' "$1" "$2" \
		"$(awk -v n="$ntest" -v t="$pred" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')" >>"$tmp"
	rm -f "$W/fit" "$W/rss" "$W/pred" "$W/run"
}
# knn prediction per second of CPU (build/bench/bench_knn: k=10 on every trace, the test part, median of 5)
knn_rows() {
	for set in banking77:gold clinc150:gold; do
		printf 'knn prediction, CPU time (k=10, all traces)\t%s\t%s\tinputs/s/core\n' "$set" \
			"$(build/bench/bench_knn "$set" | cut -f4)" >>"$tmp"
	done
}
# tracer fit banking77:gold with every default target (liblinear, tf-idf, ltt-plan) under holdout and under
# the default oof: wall seconds, CPU seconds (user + system) and peak RSS, medians of REPS runs
fit_rows() {
	fpol=$(mktemp -d "$W/pol.XXXXXX")
	for c in holdout oof; do
		: >"$W/wall"; : >"$W/mem"; : >"$W/cpu"
		i=0
		while [ $i -lt "$REPS" ]; do
			/usr/bin/time -f "%e %M %U %S" -o "$W/t" ./tracer fit --calibration $c banking77:gold --out "$fpol/p" --quiet >/dev/null
			awk -v w="$W" '{ print $1 >> (w "/wall"); print $2 / 1024 >> (w "/mem"); print $3 + $4 >> (w "/cpu") }' "$W/t"
			i=$((i + 1))
		done
		printf 'tracer fit (%s), all default targets\tbanking77:gold\t%s\ts\n' $c "$(median <"$W/wall")" >>"$tmp"
		printf 'tracer fit (%s) CPU, user + system\tbanking77:gold\t%.1f\ts\n' $c "$(median <"$W/cpu")" >>"$tmp"
		printf 'tracer fit (%s) peak RSS\tbanking77:gold\t%.0f\tMB\n' $c "$(median <"$W/mem")" >>"$tmp"
	done
	rm -rf "$fpol"
}
# tracer serve on 127.0.0.1 (ephemeral port, a thread per core), closed-loop load from build/bench/serve_load:
# C keep-alive connections POST the same body for SERVE_SECONDS; requests/s, p50 and p99 latency (ms)
SERVE_SECONDS=${SERVE_SECONDS:-10}
serve_bench() { # POLICY LABEL PATH BODY CONNECTIONS INPUTS_PER_REQUEST
	./tracer serve "$1" --listen 127.0.0.1:0 --feedback-out /dev/null >"$W/srv" 2>/dev/null &
	spid=$!
	k=0
	while [ $k -lt 100 ] && ! grep -q '^listening' "$W/srv"; do sleep 0.1; k=$((k + 1)); done
	port=$(sed -n 's/^listening on http:\/\/127.0.0.1://p' "$W/srv")
	r=$(build/bench/serve_load "$port" "$3" "$4" "$5" "$SERVE_SECONDS")
	kill -TERM $spid; wait $spid || true
	printf 'serve %s, %s connections\tbanking77:gold\t%s\trequests/s\n' "$2" "$5" "$(echo "$r" | cut -f3)" >>"$tmp"
	[ "$6" = 1 ] || printf 'serve %s, %s connections\tbanking77:gold\t%s\tinputs/s\n' "$2" "$5" \
		"$(echo "$r" | awk -F'\t' -v k="$6" '{ print $3 * k }')" >>"$tmp"
	printf 'serve %s, %s connections: p50 latency\tbanking77:gold\t%s\tms\n' "$2" "$5" "$(echo "$r" | cut -f4)" >>"$tmp"
	printf 'serve %s, %s connections: p99 latency\tbanking77:gold\t%s\tms\n' "$2" "$5" "$(echo "$r" | cut -f5)" >>"$tmp"
	printf 'serve %s, %s connections: non-200 answers\tbanking77:gold\t%s\trequests\n' "$2" "$5" "$(echo "$r" | cut -f6)" >>"$tmp"
}
# serve rows: policies $pol/p and $pol/q, requests from $W/one (test_copies)
serve_rows() {
	head -n 1 "$W/one" >"$W/req1"
	head -n 50 "$W/one" >"$W/req50"
	serve_bench "$pol/q" "POST /route (--no-ood)" /route "$W/req1" 16 1
	serve_bench "$pol/q" "POST /route/batch of 50 (--no-ood)" /route/batch "$W/req50" 4 50
	serve_bench "$pol/p" "POST /route (OOD guard on)" /route "$W/req1" 16 1
	rm -f "$W/req1" "$W/req50" "$W/srv"
}
# merge_rows DROP: results/bench.tsv with the rows of $tmp replacing those of the same what, set and unit
# (a serve batch row gives requests/s and inputs/s under one what); rows
# whose what matches the regular expression DROP and that were not rerun go; the others stay
merge_rows() {
	awk -F'\t' -v drop="$1" 'NR == FNR { if (FNR > 1) { v[$1 FS $2 FS $4] = $0; order[++n] = $1 FS $2 FS $4 } next }
		FNR == 1 { print; next }
		{ k = $1 FS $2 FS $4; if (k in v) { print v[k]; done[k] = 1 } else if ($1 !~ drop) print }
		END { for (i = 1; i <= n; i++) if (!(order[i] in done)) print v[order[i]] }' "$tmp" "$out" >"$W/merged"
	mv "$W/merged" "$out"
	rm -f "$tmp"
	column -t -s '	' "$out"
}
# BENCH_ONLY=fit reruns only the rows of fit_rows (the old rows without a calibration in their name go)
if [ "${BENCH_ONLY:-}" = fit ]; then
	fit_rows
	merge_rows '^tracer fit(, all default targets| peak RSS)'
	exit 0
fi
if [ "${BENCH_ONLY:-}" = search ]; then
	knn_rows
	pol=$(mktemp -d "$W/pol.XXXXXX")
	./tracer fit --calibration "$CAL" banking77:gold --out "$pol/p" --quiet >/dev/null
	./tracer fit --calibration "$CAL" banking77:gold --no-ood --out "$pol/q" --quiet >/dev/null
	test_copies
	route_rows
	serve_rows
	rm -rf "$pol" "$W/one" "$W/many" "$W/t"
	# the new rows replace the rows of the same what and set (route and serve rows of other names go)
	merge_rows '^(route|serve)[ ,]'
	exit 0
fi


# The fixed dense workload (../shared/bench/banking77-lsa256, README there): `tracer fit` with the
# reference's four targets, wall seconds and peak RSS (medians), their ratios to the reference tool's
# 159.6 s and 204 MB, and test coverage / agreement on handled per target (one fit per --target).
# --cap 0: all 10,003 traces, as the reference tool used (the default cap would drop 2,000 of them).
dw=${BENCH_DENSE:-../shared/bench/banking77-lsa256}
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
if [ -f "$dw/traces.jsonl" ]; then
	pol=$(mktemp -d "$W/pol.XXXXXX")
	for b in ${BENCH_FAMILIES:-softmax liblinear}; do
		: >"$W/wall"; : >"$W/mem"; : >"$W/cpu"
		i=0
		while [ $i -lt "$REPS" ]; do
			/usr/bin/time -f "%e %M %U %S" -o "$W/t" ./tracer fit --calibration "$CAL" "$dw/traces.jsonl" --embeddings "$dw/traces.npy.zst" \
				--backend $b --cap 0 --targets 0.85,0.90,0.95,0.98 --target 0.95 --out "$pol/d" >/dev/null
			awk -v w="$W" '{ print $1 >> (w "/wall"); print $2 / 1024 >> (w "/mem"); print $3 + $4 >> (w "/cpu") }' "$W/t"
			i=$((i + 1))
		done
		wall=$(median <"$W/wall"); mem=$(median <"$W/mem")
		printf 'dense workload, %s: tracer fit, 4 targets (%s)\tbanking77-lsa256\t%s\ts\n' "$CAL" $b "$wall" >>"$tmp"
		# CPU seconds too: on a machine shared with other work the wall time says more of the load than of tracer
		printf 'dense workload, %s: tracer fit CPU, user + system (%s)\tbanking77-lsa256\t%.2f\ts\n' "$CAL" $b \
			"$(median <"$W/cpu")" >>"$tmp"
		printf 'dense workload, %s: speed-up over the reference 159.6 s (%s)\tbanking77-lsa256\t%.1f\tx\n' "$CAL" $b \
			"$(awk -v w="$wall" 'BEGIN { print 159.6 / w }')" >>"$tmp"
		printf 'dense workload, %s: peak RSS (%s; reference 204 MB)\tbanking77-lsa256\t%.0f\tMB\n' "$CAL" $b "$mem" >>"$tmp"
		for t in 0.85 0.90 0.95 0.98; do
			./tracer fit --calibration "$CAL" "$dw/traces.jsonl" --embeddings "$dw/traces.npy.zst" --backend $b --cap 0 \
				--targets 0.85,0.90,0.95,0.98 --target $t --out "$pol/t" >/dev/null 2>&1 || {
				printf 'dense workload, %s: test coverage at %s (%s)\tbanking77-lsa256\trefused\t-\n' "$CAL" $t $b >>"$tmp"
				continue; }
			./tracer eval "$pol/t" "$dw/test.jsonl" --embeddings "$dw/test.npy.zst" --json >"$W/ev"
			printf 'dense workload, %s: test coverage at %s (%s)\tbanking77-lsa256\t%.3f\t-\n' "$CAL" $t $b "$(field coverage <"$W/ev")" >>"$tmp"
			printf 'dense workload, %s: test agreement on handled at %s (%s)\tbanking77-lsa256\t%.3f\t-\n' "$CAL" $t $b \
				"$(field agreement_handled <"$W/ev")" >>"$tmp"
			rm -rf "$pol/t"
		done
	done
	rm -rf "$pol" "$W/wall" "$W/mem" "$W/cpu" "$W/t" "$W/ev"
	grep '^dense workload' "$tmp" | column -t -s '	'
else
	echo "bench: $dw not found: the dense workload is skipped" >&2
fi
if [ "${BENCH_ONLY:-}" = dense ]; then
	if [ -n "${BENCH_FAMILIES:-}" ] && [ -f results/bench-dense.tsv ]; then
		# keep the rows of the families not rerun and of the other calibration mode (the family is in
		# brackets in the first column, the mode after "dense workload, ")
		awk -F'\t' -v fams=" $BENCH_FAMILIES " -v cal="$CAL" 'NR > 1 { f = $1; sub(/.*\(/, "", f); sub(/[;)].*/, "", f)
			c = $1; sub(/^dense workload, /, "", c); sub(/:.*/, "", c)
			if (index(fams, " " f " ") == 0 || c != cal) print }' results/bench-dense.tsv >>"$tmp"
	fi
	mv "$tmp" results/bench-dense.tsv
	exit 0
fi
for set in banking77:gold clinc150:gold; do
	line=$(build/bench/bench_feat "$set")
	printf 'tfidf featurisation\t%s\t%s\ttexts/s/core\n' "$set" "$(echo "$line" | cut -f4)" >>"$tmp"
	printf 'tfidf fit (IDF)\t%s\t%s\ts\n' "$set" "$(echo "$line" | cut -f3)" >>"$tmp"
done
for set in banking77:gold clinc150:gold; do
	for b in $(./tracer train-surrogate 2>&1 | sed -n 's/.*--backend \([a-z0-9|]*\).*/\1/p' | head -n 1 | tr '|' ' '); do
		case $b in liblinear | softmax) grid="C=10" ;; libsvm) grid="C=1" ;; knn) grid="k=10" ;; *) grid="" ;; esac
		family_rows $b "$set" "$grid"
	done
done
knn_rows

fit_rows
pol=$(mktemp -d "$W/pol.XXXXXX")
./tracer fit --calibration "$CAL" banking77:gold --out "$pol/p" --quiet >/dev/null

# route throughput on one core: the test split ten times over, each copy's ids made unique (a repeated
# id is an error line, not a routed input); inputs per second of CPU (user + system, policy load
# included), so other work on the machine does not count against it
./tracer fit --calibration "$CAL" banking77:gold --no-ood --out "$pol/q" --quiet >/dev/null
test_copies
route_rows

serve_rows

# how fit time grows with the number of traces: slope of log(seconds) on log(traces)
: >"$W/grow"
for cap in 250 500 1000 2000 4000 8000 0; do
	/usr/bin/time -f "%e" -o "$W/t" ./tracer fit --calibration "$CAL" banking77:gold --cap $cap --out "$pol/g" >/dev/null
	used=$(sed -n 's/.*(\([0-9]*\) used.*/\1/p' "$pol/g/report.md")
	printf '%s %s\n' "$used" "$(cat "$W/t")" >>"$W/grow"
	printf 'tracer fit, %s traces\tbanking77:gold\t%s\ts\n' "$used" "$(cat "$W/t")" >>"$tmp"
done
slope=$(awk '{ x = log($1); y = log($2); sx += x; sy += y; sxx += x * x; sxy += x * y; n++ }
	END { printf "%.2f", (n * sxy - sx * sy) / (n * sxx - sx * sx) }' "$W/grow")
printf 'fit time growth exponent (log-log slope)\tbanking77:gold\t%s\t-\n' "$slope" >>"$tmp"
rm -rf "$pol" "$W/wall" "$W/mem" "$W/t" "$W/one" "$W/many" "$W/grow"
mv "$tmp" "$out"
column -t -s '	' "$out"
