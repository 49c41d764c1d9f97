#!/bin/bash
# dd: buffered and O_DIRECT (iflag/oflag=direct) writes and reads, checked
# against the source before and after a remount.
. "$(dirname "$0")/lib.sh"
require
mkimg 1G && mountfs || { fail "mount"; exit 1; }
head -c 64M /dev/urandom > "$WORK/src"
check "dd buffered write" dd if="$WORK/src" of="$MNT/buf" bs=1M status=none conv=fsync
check "dd buffered read" cmp "$WORK/src" "$MNT/buf"
check "dd oflag=direct write" dd if="$WORK/src" of="$MNT/dir" bs=1M oflag=direct status=none
check "dd iflag=direct read" bash -c "dd if='$MNT/dir' bs=1M iflag=direct status=none | cmp - '$WORK/src'"
check "dd O_DIRECT 4k blocks" dd if="$WORK/src" of="$MNT/dir4k" bs=4k count=4096 oflag=direct status=none
check "dd O_DIRECT 4k read" bash -c "dd if='$MNT/dir4k' bs=4k iflag=direct status=none | cmp - <(head -c 16M '$WORK/src')"
check "dd into the middle (conv=notrunc)" dd if=/dev/zero of="$MNT/buf" bs=4k seek=100 count=3 conv=notrunc status=none
check "sparse seek write" dd if=/dev/zero of="$MNT/sparse" bs=1 seek=1G count=1 status=none
check "sparse size" test "$(stat -c %s "$MNT/sparse")" = $((1024 * 1024 * 1024 + 1))
check "remount" remount
check "after remount: buffered" bash -c "cmp <(head -c 409600 '$WORK/src') <(head -c 409600 '$MNT/buf') && cmp -i 421888 '$WORK/src' '$MNT/buf'"
check "after remount: zeros in the middle" bash -c "dd if='$MNT/buf' bs=4k skip=100 count=3 status=none | cmp - <(head -c 12288 /dev/zero)"
check "after remount: direct" cmp "$WORK/src" "$MNT/dir"
check "after remount: sparse reads zeros" bash -c "dd if='$MNT/sparse' bs=1M skip=512 count=1 status=none | cmp - <(head -c 1M /dev/zero)"
check "unmount" umountfs
fsck_clean
