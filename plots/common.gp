# Shared settings of the figure scripts. Called with -e "results='DIR'; only='SPEC'": tables are read
# from DIR/tables/NAME.tsv (or all from DIR/tables/SPEC.tsv when `only` is set, as for the quick run)
# and figures written to DIR/figures/ as PNG and SVG.
if (!exists("results")) results = "results"
if (!exists("only")) only = ""
table(name) = results."/tables/".(only ne "" ? only : name).".tsv"
# rows of a table matching an awk condition, header dropped (columns below are 1-based)
rows(name, cond) = "< awk -F'\t' 'NR > 1 && (".cond.")' ".table(name)
# distinct values of a column (optionally under a condition), space-separated
values(name, col, cond) = system("awk -F'\t' 'NR > 1 && (".cond.") { print $".col." }' ".table(name)." | awk '!seen[$0]++' | tr '\n' ' '")
# columns: 1 set, 2 protocol, 3 backend, 4 traces, 5 rule, 6 target, 7 seeds, 8 coverage, 9 cov min,
# 10 cov max, 11 agreement, 12 violations, 13 violation rate, 14 cal coverage, 15 e2e, 16 gold,
# 17-20 refused/global/l2d/rsb counts, 21 modal family, 22 traces used, 23 fit seconds
set datafile separator "\t"
set datafile missing "NaN"
set key top right font ",9"
set grid
rulecolor(r) = r eq "point" ? "#d62728" : r eq "cp-holdout" ? "#1f77b4" : "#2ca02c"
set style line 1 lc rgb "#d62728" lw 2 pt 7
set style line 2 lc rgb "#1f77b4" lw 2 pt 5
set style line 3 lc rgb "#2ca02c" lw 2 pt 9
ruleline(r) = r eq "point" ? 1 : r eq "cp-holdout" ? 2 : 3
outfile(name, ext) = results."/figures/".name.".".ext
