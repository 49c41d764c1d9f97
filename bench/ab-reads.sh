#!/usr/bin/env bash
# bench/ab-reads.sh [-r ROUNDS] [-t SECONDS] NAME=BUILDDIR [NAME=BUILDDIR...]
#
# A/B of the cold random-read path through the mount, builds alternating
# in one session (the machines are noisy: compare within a run only).
# For each round and build: a fresh 4 GiB image, mount with cache_size=1G,
# write a 1 GiB file, empty both caches, then 4 KiB random O_DIRECT reads
# at qd1 (psync) and at qd32 (libaio), SECONDS each, emptying the caches
# between them.  Prints one line per run: IOPS and mean latency in us for
# each depth, and flyfs.fs.dev_own_reads / flyfs.fs.async_reads (which
# read path served them).
#
# Build the builds with e.g. `meson setup B --buildtype=release
# -Dinvariants=false` (an old commit in a `git worktree`).  Needs root,
# fio and attr; SCRATCH (default /var/tmp/flyfs-bench) must be on a local
# disk filesystem (the image is opened O_DIRECT).
set -euo pipefail

ROUNDS=2
RT=10
while getopts "r:t:h" o; do
	case $o in
	r) ROUNDS=$OPTARG ;;
	t) RT=$OPTARG ;;
	*) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'
	   exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { echo "usage: $0 [-r ROUNDS] [-t SECONDS] NAME=BUILDDIR..." >&2; exit 2; }

SCRATCH=${SCRATCH:-/var/tmp/flyfs-bench}
M=$SCRATCH/ab-mnt
I=$SCRATCH/ab.img
mkdir -p "$M"
trap 'fusermount3 -u "$M" 2>/dev/null || true; rm -f "$I"' EXIT

cold() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
	setfattr -n flyfs.vfs.drop_caches -v 3 "$M"
}

# fio JSON on stdin -> "IOPS mean-latency-us"
iops() {
	python3 -c 'import json,sys
j = json.load(sys.stdin)["jobs"][0]["read"]
print(round(j["iops"]), round(j["clat_ns"]["mean"] / 1000))'
}

stat_of() {
	getfattr --only-values -n "flyfs.fs.$1" "$M" 2>/dev/null || echo -
}

for ((r = 1; r <= ROUNDS; r++)); do
	for nb in "$@"; do
		name=${nb%%=*}
		B=${nb#*=}
		rm -f "$I"
		truncate -s 4G "$I"
		"$B/tools/mkfs/mkfs.flyfs" -q -f "$I"
		"$B/fs/flyfs" "$I" "$M" -f -o cache_size=1G &
		pid=$!
		for _ in $(seq 50); do mountpoint -q "$M" && break; sleep 0.1; done
		fio --name=fill --filename="$M/f" --rw=write --bs=1M --size=1G \
		    --end_fsync=1 --output=/dev/null
		cold
		q1=$(fio --name=qd1 --filename="$M/f" --rw=randread --bs=4k \
		    --size=1G --ioengine=psync --direct=1 --runtime="$RT" \
		    --time_based --output-format=json | iops)
		cold
		q32=$(fio --name=qd32 --filename="$M/f" --rw=randread --bs=4k \
		    --size=1G --ioengine=libaio --iodepth=32 --direct=1 \
		    --runtime="$RT" --time_based --output-format=json | iops)
		echo "$name round $r: qd1 $q1 qd32 $q32" \
		    "own=$(stat_of dev_own_reads) async=$(stat_of async_reads)" \
		    "load $(cut -d' ' -f1 /proc/loadavg)"
		fusermount3 -u "$M"
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	done
done
