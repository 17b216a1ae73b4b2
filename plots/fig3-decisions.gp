# Figure 3: the gate's decision map: benchmark × α -> the family most seeds deployed, or REFUSED, per rule.
load "plots/common.gp"
t = "coverage"
sets = values(t, 1, "$2 == \"official\"")
n = words(sets)
allrules = rules(t)
fams = families(t)
nf = words(fams)
fcol = col(t, "family")
famcode(f) = index_of(fams, f)
setindex(s) = index_of(sets, s)
set palette defined (0 "#d62728", 1 "#2ca02c", 2 "#1f77b4", 3 "#9467bd", 4 "#ff7f0e", 5 "#8c564b", 6 "#e377c2") maxcolors nf + 1
set cbrange [-0.5:nf + 0.5]
set cbtics ("REFUSED" 0)
do for [k = 1:nf] { set cbtics add (word(fams, k) k) }
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 1500, 120 + 60 * n font ",10" } else { set terminal svg size 1500, 120 + 60 * n dynamic font ",10" }
	set output outfile("fig3-decisions", ext)
	set multiplot layout 1, words(allrules) title "Figure 3. Deployed family per benchmark and target α (official traffic; the family most seeds deployed)"
	do for [r in allrules] {
		set title "rule: ".r
		set xlabel "target α"
		set xrange [0.775:1.0]
		set yrange [0.5:n + 0.5]
		set ytics () font ",8"
		do for [k = 1:n] { set ytics add (word(sets, k) k) }
		unset colorbox
		if (r eq word(allrules, words(allrules))) { set colorbox }
		plot rows(t, "$2 == \"official\" && $4 == \"all\" && $5 == \"".r."\"") using 6:(setindex(strcol(1))):(famcode(strcol(fcol))) with points pt 5 ps 3.5 palette notitle, \
		     rows(t, "$2 == \"official\" && $4 == \"all\" && $5 == \"".r."\"") using 6:(setindex(strcol(1))):(strcol(fcol) eq "refused" ? "R" : "") with labels font ",8" tc rgb "white" notitle
	}
	unset multiplot
}
