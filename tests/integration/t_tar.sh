#!/bin/bash
# A real tree (/usr/include) in and out with tar, compared byte for byte
# after a remount: contents, and names, modes, times, links through tar -d.
. "$(dirname "$0")/lib.sh"
require
SRC=${TAR_SRC:-/usr/include}
[ -d "$SRC" ] || { skip "$SRC missing"; exit 0; }
mkimg 2G && mountfs || { fail "mount"; exit 1; }
tar -C "$(dirname "$SRC")" -cf "$WORK/src.tar" "$(basename "$SRC")"
check "tar extract into flyfs" tar -C "$MNT" -xpf "$WORK/src.tar"
check "remount" remount
check "diff -r after remount" diff -r --no-dereference "$SRC" "$MNT/$(basename "$SRC")"
check "tar -d (metadata) after remount" tar -C "$MNT" -df "$WORK/src.tar"
check "tar back out" sh -c "tar -C '$MNT' -cf '$WORK/back.tar' '$(basename "$SRC")'"
check "file count" test "$(tar -tf "$WORK/src.tar" | wc -l)" = "$(tar -tf "$WORK/back.tar" | wc -l)"
check "unmount" umountfs
fsck_clean
