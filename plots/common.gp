# Shared settings of the figure scripts. scripts/plots.sh runs them with -e "results='.'; only='SPEC'" in a
# private directory holding copies of the tables, so gnuplot never sees a user's path: tables are read
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
# 10 cov max, 11 agreement, 12 violations, 13 violation rate, 14 cal coverage, 15 e2e, 16 gold (all
# with the OOD guard), then the columns col() finds by name: family (modal), traces_used, fit_seconds,
# coverage_no_ood, agreement_no_ood, violations_no_ood, refused, and one count per policy family.
# Rules and families come from the tables themselves (rules(), families()), never from a list here.
# a column's number from its header name
col(name, c) = int(system("awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == \"".c."\") print i }' ".table(name)))
# the gate rules of a table, in order of appearance; the policy families (the columns after "refused")
rules(name) = values(name, 5, "1")
families(name) = system("awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if (f) printf \"%s \", $i; else if ($i == \"refused\") f = 1 }' ".table(name))
index_of(list, w) = sum [k = 1:words(list)] (word(list, k) eq w ? k : 0)
set datafile separator "\t"
set datafile missing "NaN"
set key top right font ",9"
set grid
# one line style per rule, by its position in `allrules` (set by each script from its table)
set style line 1 lc rgb "#d62728" lw 2 pt 7
set style line 2 lc rgb "#1f77b4" lw 2 pt 5
set style line 3 lc rgb "#2ca02c" lw 2 pt 9
set style line 4 lc rgb "#9467bd" lw 2 pt 11
set style line 5 lc rgb "#ff7f0e" lw 2 pt 13
set style line 6 lc rgb "#8c564b" lw 2 pt 15
set style line 7 lc rgb "#17becf" lw 2 pt 4
allrules = ""
ruleline(r) = 1 + (index_of(allrules, r) + 6) % 7
outfile(name, ext) = results."/figures/".name.".".ext
# One legend for all panels of a multiplot, in a band above them, so that no data ever lies under it: a
# figure W × H pixels lays out its panels with
#   set multiplot layout R, C margins 90.0 / W, 0.98, 62.0 / H, keytop(H) spacing 70.0 / W, 110.0 / H
# and runs `eval keyabove(i, H)` before panel i's plot (the first panel's key is drawn in the band).
keytop(H) = 1 - 115.0 / H
keyabove(i, H) = i == 1 ? sprintf("set key at screen 0.5, screen %.4f center center horizontal font ',11' samplen 2 width 1", 1 - 53.0 / H) : "unset key"
