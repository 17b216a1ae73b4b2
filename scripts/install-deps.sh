#!/bin/sh
# Installs every Debian package TRACER-C needs. Idempotent, and quick when all are present: apt-get runs
# (after one `apt-get update`) only when a package is missing. Needs root (or sudo) to install.
set -eu

PACKAGES="build-essential pkg-config libcsv-dev libjansson-dev libzstd-dev zstd nettle-dev libgsl-dev
libopenblas-dev liblinear-dev libsvm-dev libxxhash-dev libmicrohttpd-dev gnuplot-nox curl time valgrind"

# `make fuzz` also needs clang and its libFuzzer runtime
[ "${FUZZ:-}" = 1 ] && PACKAGES="$PACKAGES clang libclang-rt-14-dev"
# the screenshot test of report.html (`make test` skips it, saying so, where chromium cannot be installed)
[ "${CHROMIUM:-}" = 1 ] && PACKAGES="$PACKAGES chromium fonts-dejavu-core"
# the Slurm test's one-node cluster
[ "${SLURM:-}" = 1 ] && PACKAGES="$PACKAGES slurm-wlm munge iproute2"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing$missing" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root to install:$missing" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
