# Figure 5: coverage vs agreement on handled on the test traffic: each point is one target α.
load "plots/common.gp"
t = "coverage"
allrules = rules(t)
sets = values(t, 1, "$2 == \"official\"")
n = words(sets)
cols = n > 3 ? 3 : n
rowsn = (n + cols - 1) / cols
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 1500, 450 * rowsn font ",10" } else { set terminal svg size 1500, 450 * rowsn dynamic font ",10" }
	set output outfile("fig5-frontier", ext)
	W = 1500
	H = 450 * rowsn
	set multiplot layout rowsn, cols margins 90.0 / W, 0.98, 62.0 / H, keytop(H) spacing 70.0 / W, 110.0 / H title "Figure 5. Coverage vs agreement on handled, test traffic (one point per target α; official traffic)"
	do for [i = 1:n] {
		s = word(sets, i)
		set title s
		set xlabel "coverage (share of test traffic handled)"
		set ylabel "agreement with the teacher on handled"
		set xrange [-0.02:1.02]
		set yrange [0.5:1.005]
		eval keyabove(i, H)
		# the rules that handle something on set s, in the order of allrules (a set every rule refuses at
		# every α, as MNLI, gets a note instead of empty plots)
		have = " ".values(t, 5, "$1 == \"".s."\" && $2 == \"official\" && $4 == \"all\" && $8 > 0")
		shown = ""
		do for [r in allrules] { if (strstrt(have, " ".r." ") > 0) { shown = shown.r." " } }
		if (words(shown) == 0) {
			set label 1 "every rule refused at every α: nothing handled" at graph 0.5, 0.5 center
			plot 2 notitle
			unset label 1
		} else {
			plot for [r in shown] rows(t, "$1 == \"".s."\" && $2 == \"official\" && $4 == \"all\" && $5 == \"".r."\" && $8 > 0") using 8:11 with linespoints ls ruleline(r) title r
		}
	}
	unset multiplot
}
