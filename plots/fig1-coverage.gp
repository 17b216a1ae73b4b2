# Figure 1: coverage vs target α per benchmark and teacher (official traffic), one line per gate rule,
# the paper's claimed coverage marked: Banking77 83-100%, CLINC150 100%, NLI 0%. One legend for all
# panels, above them, so that no curve is hidden under it.
load "plots/common.gp"
t = "coverage"
allrules = rules(t)
sets = values(t, 1, "$2 == \"official\" && $4 == \"all\"")
n = words(sets)
if (n == 0) { sets = values(t, 1, "1"); n = words(sets) }
cols = n > 3 ? 3 : n
rowsn = (n + cols - 1) / cols
claim_lo(s) = s[1:9] eq "banking77" ? 0.83 : s[1:8] eq "clinc150" ? 0.995 : -0.01
claim_hi(s) = s[1:9] eq "banking77" ? 1.0 : s[1:8] eq "clinc150" ? 1.005 : 0.01
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 1500, 450 * rowsn font ",10" } else { set terminal svg size 1500, 450 * rowsn dynamic font ",10" }
	set output outfile("fig1-coverage", ext)
	W = 1500
	H = 450 * rowsn
	set multiplot layout rowsn, cols margins 90.0 / W, 0.98, 62.0 / H, keytop(H) spacing 70.0 / W, 110.0 / H \
		title "Figure 1. Test coverage vs target α (official traffic; mean over seeds; shaded: the paper's claim)"
	do for [i = 1:n] {
		eval keyabove(i, H)
		s = word(sets, i)
		set title s
		set xlabel "target α (agreement with the teacher on handled traffic)"
		set ylabel "coverage (share of test traffic handled)"
		set xrange [0.79:1.0]
		set yrange [-0.02:1.05]
		set object 1 rect from 0.79, claim_lo(s) to 1.0, claim_hi(s) fc rgb "#bbbbbb" fs transparent solid 0.35 noborder behind
		plot for [r in allrules] rows(t, "$1 == \"".s."\" && $2 == \"official\" && $4 == \"all\" && $5 == \"".r."\"") using 6:8 with linespoints ls ruleline(r) title r
		unset object 1
	}
	unset multiplot
}
