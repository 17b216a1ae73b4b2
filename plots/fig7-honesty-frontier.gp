# Figure 7: the honesty/coverage frontier. One point per gate rule × target × trace count of the honesty
# study (specs honesty, honesty-crossfit and honesty-oof): mean test coverage against the share of seeds
# whose deployed policy broke its target. A rule is honest where its points stay left of δ.
load "plots/common.gp"
t = "honesty"
allrules = rules(t)." crossfit cp-holdout-oof ltt-plan-oof"
sets = values(t, 1, "1")
n = words(sets)
# the rows of one rule from the three honesty tables (a table that is absent contributes nothing)
hrows(s, r) = "< cat ".table("honesty")." ".table("honesty-crossfit")." ".table("honesty-oof")." 2>/dev/null | awk -F'\t' '$1 == \"".s."\" && $5 == \"".r."\" && $4 != \"traces\"'"
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 480 * n, 460 font ",10" } else { set terminal svg size 480 * n, 460 dynamic font ",10" }
	set output outfile("fig7-honesty-frontier", ext)
	W = 480 * n
	H = 460
	set multiplot layout 1, n margins 90.0 / W, 0.98, 62.0 / H, keytop(H) spacing 70.0 / W, 110.0 / H title "Figure 7. Coverage vs violation rate: one point per rule × α × trace count (δ = 0.10 dashed)"
	do for [i = 1:n] {
		s = word(sets, i)
		set title s
		set xlabel "violation rate (share of seeds below α)"
		set ylabel "mean test coverage"
		set xrange [-0.02:1.02]
		set yrange [-0.02:1.02]
		set arrow 1 from 0.10, graph 0 to 0.10, graph 1 nohead lc rgb "black" dt 2
		eval keyabove(i, H)
		plot for [r in allrules] hrows(s, r) using 13:8 with points ls ruleline(r) title r
		unset arrow 1
	}
	unset multiplot
}
