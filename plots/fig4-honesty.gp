# Figure 4: violation rate vs α for each gate rule on exchangeable (pooled) traffic, with δ drawn: a row
# of panels at 2,000 traces (specs honesty, honesty-oof and honesty-oof-teachers) and one at 4,000 traces
# (spec honesty-4k: the gold sets only; a set without 4,000-trace rows leaves its panel empty).
load "plots/common.gp"
t = "honesty"
allrules = rules(t)." cp-holdout-oof ltt-plan-oof"
sets = values(t, 1, "$2 == \"pooled\"")
n = words(sets)
if (n == 0) { sets = values(t, 1, "1"); n = words(sets) }
hcat = "cat ".table("honesty")." ".table("honesty-oof")." ".table("honesty-oof-teachers")." ".table("honesty-4k")." 2>/dev/null"
# rows of set s, trace count c and rule r from those tables (a table that is absent contributes nothing)
hrows(s, c, r) = "< ".hcat." | awk -F'\t' '$1 == \"".s."\" && $4 == \"".c."\" && $5 == \"".r."\"'"
# the rules with rows for set s at trace count c, in the order of allrules
hhave(s, c) = " ".system(hcat." | awk -F'\t' '$1 == \"".s."\" && $4 == \"".c."\" { print $5 }' | awk '!seen[$0]++' | tr '\n' ' '")
counts = "2000"
if (strlen(hhave(word(sets, 1), "4000")) > 1) { counts = "2000 4000" }
m = words(counts)
do for [ext in "png svg"] {
	W = 500 * n
	H = 80 + 370 * m
	if (ext eq "png") { set terminal pngcairo size W, H font ",10" } else { set terminal svg size W, H dynamic font ",10" }
	set output outfile("fig4-honesty", ext)
	set multiplot layout m, n margins 90.0 / W, 0.98, 62.0 / H, keytop(H) - 20.0 / H spacing 70.0 / W, 110.0 / H title "Figure 4. Share of seeds whose deployed policy broke its target on the test traffic (δ = 0.10 dashed)"
	do for [j = 1:m] {
		c = word(counts, j)
		do for [i = 1:n] {
			s = word(sets, i)
			have = hhave(s, c)
			shown = ""
			do for [r in allrules] { if (strstrt(have, " ".r." ") > 0) { shown = shown.r." " } }
			if (words(shown) == 0) {
				set multiplot next
			} else {
				set title s.", ".c." traces"
				set xlabel "target α"
				set ylabel "violation rate (share of seeds)"
				set xrange [0.79:1.0]
				set yrange [-0.02:1.02]
				eval keyabove(i + n * (j - 1), H)
				plot for [r in shown] hrows(s, c, r) using 6:13 with linespoints ls ruleline(r) title r, \
				     0.10 with lines lc rgb "black" dt 2 title "δ = 0.10"
			}
		}
	}
	unset multiplot
}
