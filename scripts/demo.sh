#!/usr/bin/env bash
# demo.sh - install what is missing, build, make a flyfs image, mount it,
# run a short fio job on it, print the buffer cache's statistics as the
# daemon exposes them (extended attributes), unmount, and fsck the image.
#
#   scripts/demo.sh [IMAGE [MOUNTPOINT]]
# Defaults: /var/tmp/flyfs-demo.img (2 GiB, sparse) and /tmp/flyfs-demo.
# The image must live on a filesystem with O_DIRECT (ext4, xfs, btrfs;
# not tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."

IMG=${1:-/var/tmp/flyfs-demo.img}
MNT=${2:-/tmp/flyfs-demo}
B=build

scripts/install-deps.sh
if [ ! -f $B/build.ninja ]; then
	meson setup $B >/dev/null
fi
meson compile -C $B >/dev/null

echo "== mkfs.flyfs $IMG (2 GiB)"
$B/tools/mkfs/mkfs.flyfs -f -L demo "$IMG" 2G

mkdir -p "$MNT"
if mountpoint -q "$MNT"; then
	fusermount3 -u "$MNT"
fi
echo "== flyfs $IMG $MNT -o cache_size=256M"
$B/fs/flyfs "$IMG" "$MNT" -o cache_size=256M
cleanup() { mountpoint -q "$MNT" && fusermount3 -u "$MNT"; true; }
trap cleanup EXIT

echo "== fio: 256 MiB sequential write, then 5 s of 4 KiB random reads and writes"
fio --name=seq --directory="$MNT" --filename=demo.dat --rw=write --bs=1M \
	--size=256M --ioengine=psync --end_fsync=1 --output-format=terse \
	--terse-version=3 | awk -F';' '{printf "seqwrite: %.0f MiB/s\n", $48/1024}'
fio --name=mix --directory="$MNT" --filename=demo.dat --rw=randrw \
	--rwmixread=70 --bs=4k --size=256M --ioengine=psync --runtime=5 \
	--time_based --output-format=terse --terse-version=3 |
	awk -F';' '{printf "randrw70: %d read IOPS, %d write IOPS\n", $8, $49}'

echo "== the buffer cache, as extended attributes of the mount root"
for n in bufspace hibufspace maxbufspace dirtybufspace hidirtybufspace \
	lodirtybufspace runningbufspace hirunningspace cachehits cachemisses \
	flushes flushes_hw clusterwrites readahead bdwaits; do
	printf '  flyfs.vfs.%-18s %s\n' "$n" \
		"$(getfattr --only-values -n "flyfs.vfs.$n" "$MNT" 2>/dev/null || echo '?')"
done
echo "   (all of them: getfattr -n flyfs.stats $MNT)"

echo "== unmount, then fsck.flyfs -f -n"
fusermount3 -u "$MNT"
trap - EXIT
# The daemon exits after it has written everything; wait for it.
for _ in $(seq 50); do pgrep -f "flyfs $IMG" >/dev/null || break; sleep 0.1; done
$B/tools/fsck/fsck.flyfs -f -n "$IMG"
