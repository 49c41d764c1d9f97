#!/usr/bin/env bash
# install-deps.sh - install what a fresh Debian 12 machine lacks to build,
# test, benchmark and run flyfs.  Idempotent: it asks apt only when a
# package is missing, and does nothing otherwise.  Must run as root (or
# with everything already installed).
set -euo pipefail

PKGS=(
	gcc libc6-dev pkg-config meson ninja-build   # toolchain
	libaio-dev libzstd-dev libfuse3-dev fuse3    # libraries
	check                                        # unit tests
	fio attr e2fsprogs python3 xxd rsync         # tests, demo, benchmarks
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root, or install them with apt-get" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
