# Figure 7: the honesty/coverage frontier. One point per gate rule × target × trace count of the honesty
# study (specs honesty, honesty-crossfit, honesty-oof, honesty-oof-teachers and honesty-4k): mean test
# coverage against the share of seeds whose deployed policy broke its target. A rule is honest where its
# points stay left of δ.
load "plots/common.gp"
t = "honesty"
allrules = rules(t)." crossfit cp-holdout-oof ltt-plan-oof"
sets = values(t, 1, "1")
n = words(sets)
# the rows of the honesty tables (a table that is absent contributes nothing)
hcat = "cat ".table("honesty")." ".table("honesty-crossfit")." ".table("honesty-oof")." ".table("honesty-oof-teachers")." ".table("honesty-4k")." 2>/dev/null"
hrows(s, r) = "< ".hcat." | awk -F'\t' '$1 == \"".s."\" && $5 == \"".r."\" && $4 != \"traces\"'"
# the rules with rows for set s, in the order of allrules (a rule without rows there is not plotted)
hhave(s) = " ".system(hcat." | awk -F'\t' '$1 == \"".s."\" && $4 != \"traces\" { print $5 }' | awk '!seen[$0]++' | tr '\n' ' '")
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 480 * n, 460 font ",10" } else { set terminal svg size 480 * n, 460 dynamic font ",10" }
	set output outfile("fig7-honesty-frontier", ext)
	W = 480 * n
	H = 460
	set multiplot layout 1, n margins 90.0 / W, 0.98, 62.0 / H, keytop(H) - 20.0 / H spacing 70.0 / W, 110.0 / H title "Figure 7. Coverage vs violation rate: one point per rule × α × trace count (δ = 0.10 dashed)"
	do for [i = 1:n] {
		s = word(sets, i)
		have = hhave(s)
		shown = ""
		do for [r in allrules] { if (strstrt(have, " ".r." ") > 0) { shown = shown.r." " } }
		set title s
		set xlabel "violation rate (share of seeds below α)"
		set ylabel "mean test coverage"
		set xrange [-0.02:1.02]
		set yrange [-0.02:1.02]
		set arrow 1 from 0.10, graph 0 to 0.10, graph 1 nohead lc rgb "black" dt 2
		eval keyabove(i, H)
		plot for [r in shown] hrows(s, r) using 13:8 with points ls ruleline(r) title r
		unset arrow 1
	}
	unset multiplot
}
