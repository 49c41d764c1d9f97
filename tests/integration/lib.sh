# lib.sh - shared helpers of the flyfs integration tests (sourced).
#
# Each test script is one area: it sources this file, calls pass/fail/skip
# once per check (one "PASS: area: what" line each), and exits 0 when it
# could run at all.  run.sh adds the lines up.  Everything mounted is
# unmounted, and every daemon started is waited for, even on failure
# (the EXIT trap).
#
# Environment (set by meson, or guessed from a build dir):
#   FLYFS       the daemon              (default: $BUILD/fs/flyfs)
#   MKFS        mkfs.flyfs              (default: $BUILD/tools/mkfs/mkfs.flyfs)
#   FSCK        fsck.flyfs, optional    (default: $BUILD/tools/fsck/fsck.flyfs)
#   FLYFS_STAT  flyfs-stat, optional    (default: $BUILD/tools/flyfs-stat/flyfs-stat)
#   BUILD       build directory         (default: build-fuse at the top)

set -u

AREA=$(basename "$0" .sh)
AREA=${AREA#t_}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-$TOP/build-fuse}
FLYFS=${FLYFS:-$BUILD/fs/flyfs}
MKFS=${MKFS:-$BUILD/tools/mkfs/mkfs.flyfs}
FSCK=${FSCK:-$BUILD/tools/fsck/fsck.flyfs}
FLYFS_STAT=${FLYFS_STAT:-$BUILD/tools/flyfs-stat/flyfs-stat}

WORK=$(mktemp -d /tmp/flyfs-it-"$AREA".XXXXXX)
MNT=$WORK/mnt
IMG=$WORK/image
mkdir -p "$MNT"
chmod 0755 "$WORK"     # other users reach the mount in some tests
DAEMON_PID=
MOUNTED=
FAILED=

pass() { echo "PASS: $AREA: $*"; }
fail() { echo "FAIL: $AREA: $*"; FAILED=1; }
skip() { echo "SKIP: $AREA: $*"; }
# check WHAT CMD...: PASS if CMD succeeds.
check() {
	local what=$1; shift
	if "$@" >"$WORK/check.out" 2>&1; then
		pass "$what"
	else
		fail "$what (status $?: $(head -c 300 "$WORK/check.out" | tr '\n' ' '))"
	fi
}
# check_fails WHAT ERRTEXT CMD...: PASS if CMD fails and says ERRTEXT.
check_fails() {
	local what=$1 text=$2; shift 2
	if "$@" >"$WORK/check.out" 2>&1; then
		fail "$what (succeeded)"
	elif grep -qi -- "$text" "$WORK/check.out"; then
		pass "$what"
	else
		fail "$what (wanted '$text': $(head -c 300 "$WORK/check.out" | tr '\n' ' '))"
	fi
}

cleanup() {
	if [ -n "$MOUNTED" ] && mountpoint -q "$MOUNTED" 2>/dev/null; then
		fusermount3 -u "$MOUNTED" 2>/dev/null || umount -l "$MOUNTED"
	fi
	if [ -n "$DAEMON_PID" ]; then
		kill -TERM "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	# A dead daemon leaves "Transport endpoint is not connected".
	fusermount3 -u -z "$MNT" 2>/dev/null
	if [ -n "$FAILED" ] && [ -s "$WORK/daemon.log" ]; then
		echo "--- last lines of the daemon's log:"
		tail -20 "$WORK/daemon.log" | sed 's/^/daemon: /'
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binaries must exist, and we must be root with /dev/fuse.
require() {
	if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
		skip "needs root and /dev/fuse"; exit 0
	fi
	if [ ! -x "$FLYFS" ] || [ ! -x "$MKFS" ]; then
		fail "binaries missing: $FLYFS / $MKFS (build first)"; exit 1
	fi
}

# mkimg [SIZE [MKFS OPTIONS...]]: a fresh image at $IMG.
mkimg() {
	local size=${1:-1G}
	[ $# -gt 0 ] && shift
	rm -f "$IMG"
	"$MKFS" -q "$@" "$IMG" "$size"
}

# mountfs [-o OPTS]: run the daemon in the foreground (so we know its pid)
# and wait until the mount is up.  Sets DAEMON_PID.
mountfs() {
	# A script's background job ignores SIGINT, and libfuse leaves an
	# ignored signal alone: give the daemon the default back.
	env --default-signal=INT "$FLYFS" "$IMG" "$MNT" -f "$@" \
	    >>"$WORK/daemon.log" 2>&1 &
	DAEMON_PID=$!
	MOUNTED=$MNT
	local i
	for i in $(seq 1 200); do
		if mountpoint -q "$MNT" && stat "$MNT" >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			wait "$DAEMON_PID" 2>/dev/null
			DAEMON_PID=
			echo "daemon exited: $(tail -3 "$WORK/daemon.log")" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "mount did not come up" >&2
	return 1
}

# umountfs: unmount and wait for the daemon to finish writing.  The
# daemon's exit status is returned (0: clean unmount).
umountfs() {
	local rc=0
	fusermount3 -u "$MNT" || rc=$?
	if [ -n "$DAEMON_PID" ]; then
		wait "$DAEMON_PID" || rc=$?
	fi
	DAEMON_PID=
	MOUNTED=
	return $rc
}

remount() {
	umountfs && mountfs "$@"
}

# fsck_clean: the image passes fsck (when fsck.flyfs exists).
fsck_clean() {
	if [ -x "$FSCK" ]; then
		check "fsck clean${1:+ ($1)}" "$FSCK" -n -f "$IMG"
	else
		skip "fsck.flyfs not built"
	fi
}

# vstat NAME: one virtual xattr's value ("" if it fails).
vstat() {
	getfattr --absolute-names --only-values -n "$1" "${2:-$MNT}" 2>/dev/null
}
# stat_of NAME: one line of flyfs.stats ("vfs.bufspace", "fs.reads").
stat_of() {
	getfattr --absolute-names --only-values -n flyfs.stats "$MNT" 2>/dev/null |
	    awk -v n="$1" '$1 == n { print $2 }'
}
