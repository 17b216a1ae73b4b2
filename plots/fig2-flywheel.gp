# Figure 2: coverage vs number of traces (the flywheel) at α = 0.90 and 0.95, official traffic.
load "plots/common.gp"
t = "flywheel"
sets = values(t, 1, "$2 == \"official\"")
n = words(sets)
ucol = col(t, "traces_used")
set style line 11 lc rgb "#d62728" lw 2 pt 7 dt 2
set style line 12 lc rgb "#d62728" lw 2 pt 7
set style line 13 lc rgb "#2ca02c" lw 2 pt 9 dt 2
set style line 14 lc rgb "#2ca02c" lw 2 pt 9
set style line 15 lc rgb "#9467bd" lw 2 pt 11 dt 2
set style line 16 lc rgb "#9467bd" lw 2 pt 11
set key bottom right
combostyle(c) = (c[1:8] eq "ltt-plan" ? 15 : c[1:3] eq "ltt" ? 13 : 11) + (c[strlen(c) - 1:] eq "95" ? 1 : 0)
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 500 * n, 450 font ",10" } else { set terminal svg size 500 * n, 450 dynamic font ",10" }
	set output outfile("fig2-flywheel", ext)
	set multiplot layout 1, n title "Figure 2. Test coverage vs traces used for fitting (official traffic)"
	do for [i = 1:n] {
		s = word(sets, i)
		set title s
		set logscale x 2
		set xrange [100:25000]
		set xlabel "traces used for fitting (count, log scale)"
		set ylabel "coverage (share of test traffic handled)"
		set yrange [-0.02:1.05]
		combos = "point:0.90 point:0.95 ltt:0.90 ltt:0.95 ltt-plan:0.90 ltt-plan:0.95"
		plot for [c in combos] \
			rows(t, "$1 == \"".s."\" && $2 == \"official\" && $5 == \"".c[1:strstrt(c, ":") - 1]."\" && $6 == \"".c[strstrt(c, ":") + 1:]."\"") \
			using ucol:8 with linespoints ls combostyle(c) \
			title c[1:strstrt(c, ":") - 1]." α=".c[strstrt(c, ":") + 1:]
		unset logscale x
	}
	unset multiplot
}
