#!/bin/sh
# Makes a seed for the policy fuzz target (tests/fuzz/fuzz_policy.c) from a fitted policy directory:
# its files in the target's order, .zst files decompressed, separated by the target's separator line.
#   sh tests/fuzz/policy-seed.sh POLICY_DIR > tests/fuzz/corpus/policy/NAME
[ -d "$1" ] || { echo "usage: policy-seed.sh POLICY_DIR" >&2; exit 2; }
# A file the policy does not have gives an empty section.
first=1
for f in manifest.json featurizer.txt stage1.model.zst acceptor1.model.zst stage2.model.zst acceptor2.model.zst ood.bin.zst; do
	[ $first = 1 ] || printf '\n@@@@ tracer-fuzz next file @@@@\n'
	first=0
	[ -e "$1/$f" ] || continue
	case $f in *.zst) zstd -q -dc "$1/$f" ;; *) cat "$1/$f" ;; esac
done
