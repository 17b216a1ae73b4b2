# Figure 4: violation rate vs α for each gate rule on exchangeable (pooled) traffic at 2,000 traces, with δ drawn.
load "plots/common.gp"
t = "honesty"
allrules = rules(t)
sets = values(t, 1, "$2 == \"pooled\"")
n = words(sets)
if (n == 0) { sets = values(t, 1, "1"); n = words(sets) }
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 500 * n, 450 font ",10" } else { set terminal svg size 500 * n, 450 dynamic font ",10" }
	set output outfile("fig4-honesty", ext)
	W = 500 * n
	H = 450
	set multiplot layout 1, n margins 90.0 / W, 0.98, 62.0 / H, keytop(H) spacing 70.0 / W, 110.0 / H title "Figure 4. Share of seeds whose deployed policy broke its target on the test traffic, 2,000 traces (δ = 0.10 dashed)"
	do for [i = 1:n] {
		s = word(sets, i)
		set title s
		set xlabel "target α"
		set ylabel "violation rate (share of seeds)"
		set xrange [0.79:1.0]
		set yrange [-0.02:1.02]
		eval keyabove(i, H)
		plot for [r in allrules] rows(t, "$1 == \"".s."\" && $4 == \"2000\" && $5 == \"".r."\"") using 6:13 with linespoints ls ruleline(r) title r, \
		     0.10 with lines lc rgb "black" dt 2 title "δ = 0.10"
	}
	unset multiplot
}
