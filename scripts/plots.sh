#!/bin/sh
# Draws every figure (plots/fig*.gp) from $PLOT_RESULTS/tables into $PLOT_RESULTS/figures (PNG and SVG);
# PLOT_TABLES=SPEC draws all of them from SPEC's table (the quick run). `make plots` sets both.
#
# gnuplot runs shell commands of its own (awk through `system` and `< pipes`), so it never sees a name
# the user chose: the tables are copied into a private directory under fixed names, gnuplot runs there
# with results='.', and the figures (fixed names too) are moved out. Table cells end up inside those awk
# programs, so a table holding a quote or a backslash is refused.
set -eu
results=${PLOT_RESULTS:-results}
only=${PLOT_TABLES:-}
root=$(cd "$(dirname "$0")/.." && pwd)
case $only in
*[!a-z0-9_-]*) echo "plots: TABLES=$only: expected a spec name (a-z, 0-9, _ and -)" >&2; exit 2 ;;
esac
if [ ! -d "$results/tables" ]; then
	echo "plots: $results/tables: no such directory" >&2
	exit 1
fi
set -- "$results"/tables/*.tsv
if [ ! -e "$1" ]; then
	echo "plots: $results/tables: no tables" >&2
	exit 1
fi
for t in "$@"; do
	case ${t##*/} in
	*[!A-Za-z0-9._-]*) echo "plots: $t: unexpected table name (a-z, 0-9, '.', '_' and '-')" >&2; exit 1 ;;
	esac
	bad=$(awk -v q="'" 'index($0, q) || index($0, "\"") || index($0, "\\") { print FNR; exit }' "$t")
	if [ -n "$bad" ]; then
		echo "plots: $t:$bad: a quote or backslash in a table cell (the figure scripts cannot take it)" >&2
		exit 1
	fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/tables" "$tmp/figures"
cp "$@" "$tmp/tables/"
ln -s "$root/plots" "$tmp/plots"
for f in "$root"/plots/fig*.gp; do
	(cd "$tmp" && gnuplot -e "results='.'; only='$only'" "plots/${f##*/}")
done
mkdir -p "$results/figures"
n=0
for f in "$tmp"/figures/*; do
	[ -e "$f" ] || continue
	mv -f "$f" "$results/figures/"
	n=$((n + 1))
done
echo "plots: $n files in $results/figures"
