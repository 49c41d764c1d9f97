#!/bin/bash
# Compression control through flyfs.compression (root: the live
# mount-wide setting; a directory or file: its own, inherited by new
# files), the compression tunables flyfs.fs.compress_*, and the figures
# in flyfs.fs.compress_* and flyfs.file.compress_* (docs/compression.md).
. "$(dirname "$0")/lib.sh"
require
command -v getfattr >/dev/null || { skip "getfattr missing (apt-get install attr)"; exit 0; }
mkimg 256M && mountfs -o allow_other,compress=zstd || { fail "mount"; exit 1; }

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# The root: the live mount-wide setting.
check "root shows the mount option" test "$(vstat flyfs.compression)" = zstd
check "set root zstd:7" setfattr -n flyfs.compression -v zstd:7 "$MNT"
check "root took zstd:7" test "$(vstat flyfs.compression)" = zstd:7
check_fails "root: bad value EINVAL" "Invalid argument" setfattr -n flyfs.compression -v lz4 "$MNT"
check_fails "root: level 20 EINVAL" "Invalid argument" setfattr -n flyfs.compression -v zstd:20 "$MNT"
chmod 0777 "$MNT"
check_fails "root: other user EPERM" "not permitted" as_nobody setfattr -n flyfs.compression -v none "$MNT"
check "root: other user may read" as_nobody getfattr --absolute-names -n flyfs.compression "$MNT"
chmod 0755 "$MNT"
check "set root zstd" setfattr -n flyfs.compression -v zstd "$MNT"

# Tunables on the root.
check "flyfs.fs.compress_level" test "$(vstat flyfs.fs.compress_level)" = 3
check "set compress_level 5" setfattr -n flyfs.fs.compress_level -v 5 "$MNT"
check "compress_level took 5" test "$(vstat flyfs.fs.compress_level)" = 5
check "set compress_level 3" setfattr -n flyfs.fs.compress_level -v 3 "$MNT"
check_fails "compress_level 99: EINVAL" "Invalid argument" setfattr -n flyfs.fs.compress_level -v 99 "$MNT"
for t in compress_skip_after compress_retry_every compress_queue_max; do
	check "flyfs.fs.$t readable" sh -c "getfattr --absolute-names --only-values -n flyfs.fs.$t '$MNT' | grep -qx '[0-9][0-9]*'"
done
check "set compress_skip_after 4" setfattr -n flyfs.fs.compress_skip_after -v 4 "$MNT"
check "compress_skip_after took 4" test "$(vstat flyfs.fs.compress_skip_after)" = 4
check "compress_workers readable" sh -c "getfattr --absolute-names --only-values -n flyfs.fs.compress_workers '$MNT' | grep -qx '[1-9][0-9]*'"
check_fails "compress_workers read-only: EPERM" "not permitted" setfattr -n flyfs.fs.compress_workers -v 2 "$MNT"
check_fails "figure read-only: EPERM" "not permitted" setfattr -n flyfs.fs.compress_logical_bytes -v 2 "$MNT"
check "flyfs.stats lists fs.compress_level" sh -c "getfattr --absolute-names --only-values -n flyfs.stats '$MNT' | grep -q '^fs.compress_level '"

# Directories and files: their own setting, inherited.
mkdir "$MNT/off" "$MNT/on"
check "new dir: default" test "$(vstat flyfs.compression "$MNT/off")" = default
check "set dir none" setfattr -n flyfs.compression -v none "$MNT/off"
check "dir shows none" test "$(vstat flyfs.compression "$MNT/off")" = none
check "set dir zstd:3" setfattr -n flyfs.compression -v zstd:3 "$MNT/on"
check_fails "dir: bad value EINVAL" "Invalid argument" setfattr -n flyfs.compression -v zstd:x "$MNT/on"
touch "$MNT/off/f" "$MNT/on/f"
mkdir "$MNT/on/sub"
check "file inherits none" test "$(vstat flyfs.compression "$MNT/off/f")" = none
check "file inherits zstd:3" test "$(vstat flyfs.compression "$MNT/on/f")" = zstd:3
check "subdir inherits zstd:3" test "$(vstat flyfs.compression "$MNT/on/sub")" = zstd:3
check "file set default" setfattr -n flyfs.compression -v default "$MNT/on/f"
check "file shows default" test "$(vstat flyfs.compression "$MNT/on/f")" = default
check "file set zstd:3 again" setfattr -n flyfs.compression -v zstd:3 "$MNT/on/f"
chmod 0666 "$MNT/on/f"
check_fails "file: not the owner EPERM" "not permitted" as_nobody setfattr -n flyfs.compression -v none "$MNT/on/f"
check "listxattr has no flyfs.compression" sh -c "! getfattr --absolute-names -d -m - '$MNT/on/f' '$MNT/on' '$MNT' | grep -q '^flyfs\.'"
check_fails "flyfs.compression cannot be removed" "not permitted" setfattr -x flyfs.compression "$MNT/on/f"

# Compressible data: the figures move.
lb0=$(vstat flyfs.fs.compress_logical_bytes)
wb0=$(vstat flyfs.fs.compress_written_bytes)
line="flyfs compresses this line on flush, $(date)"
yes "$line" | head -c 8M > "$MNT/on/f"
yes "$line" | head -c 8M > "$WORK/ref"
cp "$WORK/ref" "$MNT/off/f"
sync "$MNT/on/f" "$MNT/off/f"	# fsync: the FUSE kernel sends no syncfs
lb=$(( $(vstat flyfs.fs.compress_logical_bytes) - lb0 ))
wb=$(( $(vstat flyfs.fs.compress_written_bytes) - wb0 ))
check "fs logical bytes >= 16M ($lb)" test "$lb" -ge $((16 << 20))
# 8M raw (the "none" file) + at most 1/4 of 8M (a data block of text
# fits in one 4 KiB block, the least a compressed extent takes).
check "fs written bytes <= 10M ($wb of $lb)" test "$wb" -le $((10 << 20))
check "fs compressed blocks > 0" test "$(vstat flyfs.fs.compress_compressed_blocks)" -gt 0
check "fs compress_cpu_ns > 0" test "$(vstat flyfs.fs.compress_cpu_ns)" -gt 0
check "file logical bytes = 8M" test "$(vstat flyfs.file.compress_logical_bytes "$MNT/on/f")" = $((8 << 20))
check "file written <= 2M" test "$(vstat flyfs.file.compress_written_bytes "$MNT/on/f")" -le $((2 << 20))
check "file compressed blocks > 0" test "$(vstat flyfs.file.compress_compressed_blocks "$MNT/on/f")" -gt 0
check "file compress_cpu_ns > 0" test "$(vstat flyfs.file.compress_cpu_ns "$MNT/on/f")" -gt 0
check "none file: 0 compressed" test "$(vstat flyfs.file.compress_compressed_blocks "$MNT/off/f")" = 0
check "none file: written = 8M" test "$(vstat flyfs.file.compress_written_bytes "$MNT/off/f")" = $((8 << 20))
check "none file: disk_bytes 8M" test "$(vstat flyfs.file.disk_bytes "$MNT/off/f")" -ge $((8 << 20))
db=$(vstat flyfs.file.disk_bytes "$MNT/on/f")
check "zstd file: disk_bytes <= 2M+64K ($db)" test "$db" -le $(((2 << 20) + (64 << 10)))
head -c 1M /dev/zero > "$MNT/on/zero"; sync "$MNT/on/zero"
check "zero blocks -> holes" test "$(vstat flyfs.file.compress_zero_blocks "$MNT/on/zero")" -gt 0

# Settings in inodes survive a remount; the live one does not.
setfattr -n flyfs.compression -v none "$MNT"
check "remount" remount -o allow_other,compress=zstd
check "root back to the mount option" test "$(vstat flyfs.compression)" = zstd
check "dir none kept" test "$(vstat flyfs.compression "$MNT/off")" = none
check "dir zstd:3 kept" test "$(vstat flyfs.compression "$MNT/on")" = zstd:3
check "file zstd:3 kept" test "$(vstat flyfs.compression "$MNT/on/f")" = zstd:3
check "compressed file intact after remount" cmp "$WORK/ref" "$MNT/on/f"
check "raw file intact after remount" cmp "$WORK/ref" "$MNT/off/f"
check "unmount" umountfs
fsck_clean
