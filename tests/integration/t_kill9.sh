#!/bin/bash
# kill -9 of the daemon at a random moment of a write-heavy load, many
# times: each time fsck -n finds the image consistent (it replays the
# journal in memory, as the mount will), the image mounts again (journal
# replay), and everything fsync'd before any kill reads back exactly.
#   KILL9_ROUNDS  kills (default 10); the moments are printed
. "$(dirname "$0")/lib.sh"
require
ROUNDS=${KILL9_ROUNDS:-10}
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
	# A random moment 0.2-1.5 s into the load.
	t=$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.2 + 1.3 * r / 32767 }')
	echo "round $r: kill -9 after ${t}s"
	sleep "$t"
	kill -9 "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
	kill "$load" 2>/dev/null; wait "$load" 2>/dev/null
	fusermount3 -u -z "$MNT" 2>/dev/null
	MOUNTED=
	if [ -x "$FSCK" ]; then
		check "round $r: fsck -n after kill -9" "$FSCK" -n -f "$IMG"
	fi
done
mountfs || { fail "final mount"; exit 1; }
ok=1
for r in $(seq 1 "$ROUNDS"); do cmp -s "$WORK/src" "$MNT/synced$r" || ok=0; done
check "every fsync'd file intact" test $ok = 1
check "unmount" umountfs
fsck_clean "final"
