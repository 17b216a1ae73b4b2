# Files and processes under an adversary or a careless user (issue 16): path names never run commands,
# --out never deletes what tracer did not write, temporaries cannot be hijacked by a planted symlink,
# trailing slashes work, model files are covered by checksums, user paths are escaped in report.md,
# and temporaries left by a killed run are cleaned up.
. "$(dirname "$0")/lib.sh"

T=$FIX/audit/traces.jsonl
fit() { "$TRACER" fit "$T" --gate point --target 0.8 --targets 0.8 "$@"; }
no_pwned() { [ -z "$(find "$SCRATCH" -name 'PWNED*' -print -quit)" ]; }

# 1. shell commands from path names: gnuplot gets fixed names in a private directory. The injected
# commands cd to $HOME (the scratch directory here) first, so they would leave their mark wherever
# gnuplot ran; a name with a slash would be a path, so none has one.
export HOME="$SCRATCH" TMPDIR="$SCRATCH/tmp"
mkdir "$TMPDIR"
inj="x'; system 'cd ~;touch PWNED1'; print '"
ok "fit into a directory named like a gnuplot command" fit --out "$inj"
ok "audit it (default output inside the policy)" "$TRACER" audit "$inj" "$T"
check "the chart was drawn" [ -s "$inj/audit/per_label.png" ]
check "no command ran (policy name)" no_pwned
ok "audit --out '|cmd'" "$TRACER" audit "$inj" "$T" --out '|cd ~;touch PWNED2'
check "the output is a directory of that name, with a chart" [ -s '|cd ~;touch PWNED2/per_label.png' ]
check "no command ran (--out '|cmd')" no_pwned
ok "fit into a directory starting with '<'" fit --out "<cd ~;touch PWNED4;x"
ok "audit it" "$TRACER" audit "<cd ~;touch PWNED4;x" "$T"
check "no command ran ('<' path)" no_pwned
check "no private plot directory left behind" [ -z "$(ls -A "$TMPDIR")" ]

# 2. --out never deletes what tracer did not write
mkdir -p mywork/sub && echo x >mywork/thesis.tex && echo y >mywork/sub/notes
fails 1 'mywork: exists and is not a tracer artifact .*--force' "fit refuses a directory it did not write" fit --out mywork
check "thesis.tex and sub/ intact" sh -c '[ "$(cat mywork/thesis.tex)" = x ] && [ "$(cat mywork/sub/notes)" = y ]'
fails 1 'mywork: exists and is not a tracer artifact' "audit refuses it too" "$TRACER" audit "$inj" "$T" --out mywork
check "still intact" sh -c '[ "$(cat mywork/thesis.tex)" = x ] && [ -d mywork/sub ]'
ok "fit --force" fit --out mywork --force
check "--force moved the user's directory aside, intact" sh -c '[ "$(cat mywork.replaced.1/thesis.tex)" = x ] && [ "$(cat mywork.replaced.1/sub/notes)" = y ]'
check "--force said where" grep -q 'moved aside, intact, to mywork.replaced.1' err
check "and the policy is in place" [ -s mywork/manifest.json ]
echo z >notes.txt
fails 1 'notes.txt: exists and is not a directory' "a regular file as --out" fit --out notes.txt
check "the file is intact" [ "$(cat notes.txt)" = z ]
ok "fit a policy" fit --out pol --seed 1
ok "audit inside it" "$TRACER" audit pol "$T"
ok "refit over a policy tracer wrote (with its audit)" fit --out pol --seed 2
check "replaced: the new seed, the old audit gone with the old policy" sh -c 'grep -q "\"seed\": 2" pol/manifest.json && [ ! -e pol/audit ]'
echo mine >pol/mine.txt
fails 1 'pol: exists and holds "mine.txt", which tracer did not write' "a policy with a user's file in it is refused" fit --out pol
check "the user's file stays" [ "$(cat pol/mine.txt)" = mine ]
rm pol/mine.txt
ln -s "$SCRATCH/mywork" linked
fails 1 'linked: exists and is not a directory' "a symlink as --out is not followed into" fit --out linked
check "the link's target is intact" [ -s mywork/manifest.json ]

# 3. planted symlinks and directories at the names the old temporaries had (PATH.tmp.PID; exec keeps the PID)
echo precious >victim
ok "export with a symlink planted at OUT.tmp.PID" sh -c 'ln -s victim x.jsonl.tmp.$$; exec "$0" traces export "$1" --out x.jsonl' "$TRACER" "$T"
check "the symlink's target is untouched" [ "$(cat victim)" = precious ]
check "the output is a regular file" sh -c '[ -f x.jsonl ] && [ ! -L x.jsonl ] && [ "$(wc -l <x.jsonl)" -eq "$(wc -l <"$0")" ]' "$T"
ln -s victim y.jsonl
ok "export onto a symlink" "$TRACER" traces export "$T" --out y.jsonl
check "the link is replaced, its target untouched" sh -c '[ ! -L y.jsonl ] && [ "$(cat victim)" = precious ]'
ok "audit with a directory planted at OUT.tmp.PID" sh -c 'mkdir -p aud.tmp.$$ && echo planted >aud.tmp.$$/report.md; exec "$0" audit pol "$1" --out aud' "$TRACER" "$T"
check "the planted directory is not used" sh -c '[ "$(cat aud.tmp.*/report.md)" = planted ] && grep -q "^# Audit of pol" aud/report.md'

# 4. trailing slashes (the README's own example)
ok "fit --out new/" fit --out slash/
check "slash/ is a policy" [ -s slash/manifest.json ]
ok "fit --out existing/" fit --out slash/
ok "audit --out aud2/" "$TRACER" audit slash/ "$T" --out aud2/
check "aud2 is an audit" [ -s aud2/report.html ]
fails 1 'nothere.jsonl' "a failed audit" "$TRACER" audit slash "$SCRATCH/nothere.jsonl" --out aud3/
check "leaves no directory behind" [ ! -e aud3 ]
check "nor a temporary" sh -c '! ls -a | grep -q "^\.aud3\."'

# 7. model files are covered by checksums: a model swapped from another policy is refused
ok "fit a second policy with the same labels" fit --out pol2 --seed 3
cp pol2/stage1.model.zst pol/stage1.model.zst
fails 1 'pol/stage1.model.zst: sha256 mismatch' "a swapped model is refused" "$TRACER" eval pol "$T"
ok "fit a third" fit --out pol3 --seed 3
sed -i '/"ood.bin.zst": "[0-9a-f]*",/d' pol3/manifest.json
fails 1 'pol3/ood.bin.zst: not listed in manifest.json' "a model missing from the checksums is refused" "$TRACER" eval pol3 "$T"

# 7. user paths in report.md are escaped like in report.html
mkdir '<script>x' && cp "$T" '<script>x/t.jsonl'
ok "fit from a path with markup" "$TRACER" fit '<script>x/t.jsonl' --gate point --target 0.8 --targets 0.8 --out '<b>pol'
check "report.md: no raw markup from the traces path" sh -c "grep -q '&lt;script&gt;x/t.jsonl' '<b>pol/report.md' && ! grep -q '<script>' '<b>pol/report.md'"
ok "audit a policy whose name has markup" "$TRACER" audit '<b>pol' '<script>x/t.jsonl'
check "audit report.md: names escaped" sh -c "grep -q '^# Audit of &lt;b&gt;pol' '<b>pol/audit/report.md' && ! grep -q '<script>' '<b>pol/audit/report.md'"

# 7. temporaries left by a killed run are removed by the next write to the same destination
mkdir .pol.tmp.AbC123 && touch -d '1 hour ago' .pol.tmp.AbC123
touch -d '1 hour ago' .x.jsonl.tmp.QwE456
touch -d '+1 hour' .x.jsonl.tmp.NeW789
ok "fit again" fit --out pol
ok "export again" "$TRACER" traces export "$T" --out x.jsonl
check "stale temporaries removed" sh -c '[ ! -e .pol.tmp.AbC123 ] && [ ! -e .x.jsonl.tmp.QwE456 ]'
check "a temporary younger than the process (another run's) is kept" [ -e .x.jsonl.tmp.NeW789 ]
# 8. `make plots` with a results directory named like a gnuplot command: the figure scripts run awk
# through gnuplot's shell, so they only ever see a private copy of the tables under fixed names
R="$SCRATCH/r'; system 'cd ~;touch PWNED8'; print '"
mkdir -p "$R" && cp -r "$ROOT/results/tables" "$R/"
ok "make plots RESULTS=<a gnuplot command>" make -s -C "$ROOT" plots RESULTS="$R"
check "no command ran (make plots)" no_pwned
check "figure 1 drawn into that directory" [ -s "$R/figures/fig1-coverage.png" ]
printf 'set\tprotocol\nx\x27y\tofficial\n' >"$R/tables/flywheel.tsv"
fails 1 "flywheel.tsv:2: a quote or backslash in a table cell" "a table cell with a quote is refused" \
	env PLOT_RESULTS="$R" "$ROOT/scripts/plots.sh"
finish
