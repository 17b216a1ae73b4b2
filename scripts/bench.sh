#!/bin/sh
# make bench: speed and memory of the pieces that exist, as a table on stdout and results/bench.tsv.
# Each figure is the median of REPS runs (REPS=3 by default). Targets are in README ("Speed").
set -eu
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
out=results/bench.tsv
tmp=$out.tmp.$$
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf 'what\tset\tvalue\tunit\n' >"$tmp"
for set in banking77:gold clinc150:gold; do
	line=$(build/bench/bench_feat "$set")
	printf 'tfidf featurisation\t%s\t%s\ttexts/s/core\n' "$set" "$(echo "$line" | cut -f4)" >>"$tmp"
	printf 'tfidf fit (IDF)\t%s\t%s\ts\n' "$set" "$(echo "$line" | cut -f3)" >>"$tmp"
done
for set in banking77:gold clinc150:gold; do
	for b in liblinear libsvm knn; do
		case $b in liblinear) grid="C=10" ;; libsvm) grid="C=1" ;; knn) grid="k=10" ;; esac
		: >fit.$$; : >rss.$$; : >pred.$$
		i=0
		while [ $i -lt "$REPS" ]; do
			./tracer train-surrogate "$set" --backend $b --grid "$grid" >run.$$
			awk '/^seconds/ { print $7 >> "fit.'$$'"; print $9 >> "pred.'$$'"; print $12 >> "rss.'$$'" }' run.$$
			ntest=$(awk '/^traces/ { print $9 }' run.$$)
			i=$((i + 1))
		done
		fit=$(median <fit.$$); pred=$(median <pred.$$); rss=$(median <rss.$$)
		printf '%s fit (one grid point, %s)\t%s\t%s\ts\n' $b "$grid" "$set" "$fit" >>"$tmp"
		printf '%s peak RSS (whole train-surrogate)\t%s\t%s\tMB\n' $b "$set" "$rss" >>"$tmp"
		printf '%s prediction\t%s\t%s\tinputs/s/core\n' $b "$set" \
			"$(awk -v n="$ntest" -v t="$pred" 'BEGIN { printf "%.0f", t > 0 ? n / t : 0 }')" >>"$tmp"
	done
done
rm -f fit.$$ rss.$$ pred.$$ run.$$
mv "$tmp" "$out"
column -t -s '	' "$out"
