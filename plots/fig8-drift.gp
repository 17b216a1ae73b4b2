# Figure 8: one stream per drift scenario: agreement on handled over the last 250 handled inputs (known
# offline only), the monitor's anytime-valid upper bound on agreement, α, the change point and the moment
# the gate closed. From RESULTS/tables/drift-timeline.tsv (tracer collect, from scripts/drift-study.sh).
load "plots/common.gp"
f = results."/tables/drift-timeline.tsv"
if (only ne "" || system("test -s ".f." && echo y") ne "y") { exit }
tl(cond) = "< awk -F'\t' 'NR > 1 && (".cond.")' ".f
scen = system("awk -F'\t' 'NR > 1 { print $1 }' ".f." | awk '!seen[$0]++' | tr '\n' ' '")
n = words(scen)
rows = (n + 1) / 2
title(s) = s eq "nodrift" ? "no drift (banking77:gold, pooled traffic)" : \
	   s eq "swap" ? "teacher swap (banking77:gold → GPT-4o labels)" : \
	   s eq "oos0.30" ? "new intents (clinc150:gold, 30% oos)" : \
	   s eq "official" ? "official test split (clinc150:gold)" : s
# columns: 1 scenario, 2 t, 3 phase, 4 coverage, 5 agreement (cumulative), 6 agreement (last 250 handled),
# 7 upper bound, 8 closed, 9 ln W, 10 ln(1/δ), 11 switch_at, 12 detect_at
col(s, c) = system("awk -F'\t' 'NR > 1 && $1 == \"".s."\" { print $".c."; exit }' ".f)
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 1100, 420 * rows font ",10" } else { set terminal svg size 1100, 420 * rows dynamic font ",10" }
	set output outfile("fig8-drift", ext)
	W = 1100
	H = 420 * rows
	set multiplot layout rows, 2 margins 90.0 / W, 0.98, 62.0 / H, keytop(H) spacing 70.0 / W, 110.0 / H title "Figure 8. Agreement on handled over one stream (α = 0.95, audit rate 0.05, betting monitor, δ_m = 0.05)"
	do for [i = 1:n] {
		s = word(scen, i)
		set title title(s)
		set xlabel "inputs routed"
		set ylabel "agreement with the teacher"
		set yrange [0.7:1.02]
		set xrange [0:*]
		unset key
		unset arrow
		sw = col(s, 11)
		dt = col(s, 12)
		if (sw ne "NaN" && sw ne "") { set arrow 1 from real(sw), 0.7 to real(sw), 1.02 nohead lc rgb "#7f7f7f" dt 2 lw 1.5 }
		if (dt ne "NaN" && dt ne "") { set arrow 2 from real(dt), 0.7 to real(dt), 1.02 nohead lc rgb "#d62728" lw 2 }
		plot tl("$1 == \"".s."\"") using 2:6 with lines lc rgb "#1f77b4" lw 2 title "agreement, last 250 handled", \
		     tl("$1 == \"".s."\"") using 2:5 with lines lc rgb "#9467bd" lw 1 dt 3 title "agreement, cumulative", \
		     tl("$1 == \"".s."\"") using 2:7 with steps lc rgb "#2ca02c" lw 2 title "monitor's upper bound", \
		     0.95 with lines lc rgb "black" dt 2 title "α = 0.95", \
		     NaN with lines lc rgb "#7f7f7f" dt 2 title "change point", \
		     NaN with lines lc rgb "#d62728" lw 2 title "gate closed"
	}
	# the legend alone, across the figure's width in the band above the panels (its entries are too long
	# for one panel's width, where gnuplot would stack them)
	set lmargin at screen 0.05
	set rmargin at screen 0.95
	set tmargin at screen 1 - 28.0 / H
	set bmargin at screen 1 - 74.0 / H
	unset border
	unset tics
	unset xlabel
	unset ylabel
	unset title
	unset grid
	unset arrow
	set xrange [0:1]
	set yrange [0:1]
	set key center center horizontal maxrows 2 font ",10" samplen 2 width 2
	plot NaN notitle, keyentry with lines lc rgb "#1f77b4" lw 2 title "agreement, last 250 handled", \
	     keyentry with lines lc rgb "#9467bd" lw 1 dt 3 title "agreement, cumulative", \
	     keyentry with lines lc rgb "#2ca02c" lw 2 title "monitor's upper bound", \
	     keyentry with lines lc rgb "black" dt 2 title "α = 0.95", \
	     keyentry with lines lc rgb "#7f7f7f" dt 2 title "change point", \
	     keyentry with lines lc rgb "#d62728" lw 2 title "gate closed"
	set border
	set tics
	set grid
	unset multiplot
}
