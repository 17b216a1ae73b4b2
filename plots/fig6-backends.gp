# Figure 6: surrogate families compared: coverage at α = 0.90 and 0.95 (bars) and fit seconds (labels, in a
# row above every bar so that none overlaps a bar; the legend in a band above the panels).
load "plots/common.gp"
t = "backends"
fcol = col(t, "fit_seconds")
sets = values(t, 1, "1")
n = words(sets)
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 550 * n, 450 font ",10" } else { set terminal svg size 550 * n, 450 dynamic font ",10" }
	set output outfile("fig6-backends", ext)
	W = 550 * n
	H = 450
	set multiplot layout 1, n margins 90.0 / W, 0.98, 62.0 / H, keytop(H) spacing 70.0 / W, 110.0 / H title "Figure 6. Surrogate families (ltt gate): test coverage at α = 0.90 / 0.95; fit seconds above the bars"
	do for [i = 1:n] {
		s = word(sets, i)
		set title s
		set xlabel "surrogate family"
		set ylabel "coverage (share of test traffic handled)"
		set yrange [0:1.15]
		eval keyabove(i, H)
		plot rows(t, "$1 == \"".s."\" && $5 == \"ltt\" && $6 == \"0.90\"") using 8:xtic(3) title "α = 0.90" lc rgb "#1f77b4", \
		     rows(t, "$1 == \"".s."\" && $5 == \"ltt\" && $6 == \"0.95\"") using 8 title "α = 0.95" lc rgb "#2ca02c", \
		     rows(t, "$1 == \"".s."\" && $5 == \"ltt\" && $6 == \"0.95\"") using ($0):(1.08):(sprintf("fit %.1f s", column(fcol))) with labels notitle
	}
	unset multiplot
}
