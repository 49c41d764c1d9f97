#!/bin/bash
# SIGTERM and SIGINT: the daemon unmounts, commits and writes every dirty
# buffer before it exits; nothing was fsync'd, all of it is there.
. "$(dirname "$0")/lib.sh"
require
mkimg 512M && mountfs -o commit=3600 || { fail "mount"; exit 1; }
head -c 32M /dev/urandom > "$WORK/src"
cp "$WORK/src" "$MNT/f"
mkdir "$MNT/d" && touch "$MNT/d/x"
kill -TERM "$DAEMON_PID"
check "SIGTERM: daemon exits 0" wait "$DAEMON_PID"
DAEMON_PID=
check "SIGTERM: mount gone" sh -c "! mountpoint -q '$MNT'"
MOUNTED=
fsck_clean "after SIGTERM"
mountfs || { fail "remount"; exit 1; }
check "SIGTERM: unsynced data kept" cmp "$WORK/src" "$MNT/f"
check "SIGTERM: unsynced names kept" test -e "$MNT/d/x"
echo more > "$MNT/g"
kill -INT "$DAEMON_PID"
check "SIGINT: daemon exits 0" wait "$DAEMON_PID"
DAEMON_PID=; MOUNTED=
mountfs || { fail "remount"; exit 1; }
check "SIGINT: data kept" grep -qx more "$MNT/g"
check "unmount" umountfs
fsck_clean
