#!/bin/bash
# kill -9 of the daemon: the image mounts again (journal replay), fsck is
# clean, and everything fsync'd before the kill reads back exactly.
. "$(dirname "$0")/lib.sh"
require
ROUNDS=${KILL9_ROUNDS:-3}
mkimg 1G || { fail "mkfs"; exit 1; }
head -c 16M /dev/urandom > "$WORK/src"
for r in $(seq 1 "$ROUNDS"); do
	mountfs || { fail "round $r: mount (replay)"; exit 1; }
	pass "round $r: mount after kill -9 (replay)"
	for old in $(seq 1 $((r - 1))); do
		cmp -s "$WORK/src" "$MNT/synced$old" || fail "round $r: fsync'd file $old damaged"
	done
	dd if="$WORK/src" of="$MNT/synced$r" bs=1M conv=fsync status=none
	# Unsynced load, killed in the middle.
	( i=0; while :; do head -c 1M "$WORK/src" > "$MNT/load$((i % 50))"; i=$((i + 1)); done ) 2>/dev/null &
	load=$!
	sleep 1
	kill -9 "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
	kill "$load" 2>/dev/null; wait "$load" 2>/dev/null
	fusermount3 -u -z "$MNT" 2>/dev/null
	MOUNTED=
done
mountfs || { fail "final mount"; exit 1; }
ok=1
for r in $(seq 1 "$ROUNDS"); do cmp -s "$WORK/src" "$MNT/synced$r" || ok=0; done
check "every fsync'd file intact" test $ok = 1
check "unmount" umountfs
fsck_clean "final"
