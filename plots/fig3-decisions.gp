# Figure 3: the gate's decision map: benchmark × α -> the family most seeds deployed, or REFUSED, per rule.
# α is on a categorical axis (one column per target in the table), so 0.97, 0.98 and 0.99 do not overlap;
# the set names label the first panel only; the legend sits below the panels.
load "plots/common.gp"
t = "coverage"
cond = "$2 == \"official\" && $4 == \"all\""
sets = values(t, 1, cond)
n = words(sets)
allrules = rules(t)
nr = words(allrules)
fams = families(t)
nf = words(fams)
fcol = col(t, "family")
alphas = system("awk -F'\t' 'NR > 1 && (".cond.") { print $6 }' ".table(t)." | sort -g | uniq | tr '\n' ' '")
na = words(alphas)
setindex(s) = index_of(sets, s)
aindex(a) = index_of(alphas, a)
# one colour per family by its position in the table's columns; refused is grey
famcolor_k(k) = k == 1 ? 0x2ca02c : k == 2 ? 0x1f77b4 : k == 3 ? 0x9467bd : k == 4 ? 0xff7f0e : k == 5 ? 0x8c564b : k == 6 ? 0xe377c2 : 0x17becf
famcolor(f) = index_of(fams, f) > 0 ? famcolor_k(index_of(fams, f)) : 0xbbbbbb
left = 0.15
right = 0.99
w = (right - left) / nr
do for [ext in "png svg"] {
	if (ext eq "png") { set terminal pngcairo size 1500, 170 + 52 * n font ",11" } else { set terminal svg size 1500, 170 + 52 * n dynamic font ",11" }
	set output outfile("fig3-decisions", ext)
	set multiplot title "Figure 3. Deployed family per benchmark and target α (official traffic; the family most seeds deployed)"
	set xrange [0.5:na + 0.5]
	set yrange [0.5:n + 0.5]
	set xtics () font ",10"
	do for [k = 1:na] { set xtics add (word(alphas, k) k) }
	set xlabel "target α"
	unset grid
	set tmargin at screen 1 - 70.0 / (170 + 52 * n)
	set bmargin at screen 110.0 / (170 + 52 * n)
	do for [i = 1:nr] {
		r = word(allrules, i)
		set lmargin at screen left + (i - 1) * w + (i > 1 ? 0.01 : 0)
		set rmargin at screen left + i * w - 0.01
		set title "rule: ".r
		set ytics () font ",10"
		do for [k = 1:n] { set ytics add ((i == 1 ? word(sets, k) : "") k) }
		cells = rows(t, cond." && $5 == \"".r."\"")
		if (i < nr) {
			unset key
			plot cells using (aindex(strcol(6))):(setindex(strcol(1))):(famcolor(strcol(fcol))) \
				with points pt 5 ps 3.2 lc rgb variable notitle
		} else {
			set key at screen 0.5, screen 0.03 center bottom horizontal maxcols 8 maxrows 1 font ",11" samplen 1 width 2
			plot cells using (aindex(strcol(6))):(setindex(strcol(1))):(famcolor(strcol(fcol))) \
				with points pt 5 ps 3.2 lc rgb variable notitle, \
			     for [k = 1:nf] keyentry with points pt 5 ps 2 lc rgb famcolor_k(k) title word(fams, k), \
			     keyentry with points pt 5 ps 2 lc rgb "#bbbbbb" title "REFUSED"
		}
	}
	unset multiplot
}
