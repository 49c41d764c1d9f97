#!/bin/bash
# posix: posix_check's POSIX conformance checks (errno of the failing
# cases, link counts, permissions as user nobody, sticky directories,
# timestamps, lseek holes, readdir) on a fresh mount.  posix_check prints
# its own PASS/FAIL lines; the expected answers are ext4's.
#
# allow_other lets the unprivileged children reach the mount.  The atime
# a read leaves follows the mount's policy (flyfs: relatime unless
# -o noatime), which posix_check reads from statvfs; but flyfs stamps it
# only on reads that reach it, and in the default cache=keep mode the
# kernel serves re-reads from its page cache (the kernel never stamps a
# FUSE inode's atime itself).  So the first pass skips the atime-on-read
# checks (-R) and a second pass on a cache=strict mount, where every open
# drops the file's pages, runs them all.
. "$(dirname "$0")/lib.sh"
POSIX_CHECK=${POSIX_CHECK:-$BUILD/tests/integration/posix_check}
require
if [ ! -x "$POSIX_CHECK" ]; then
	fail "posix_check missing: $POSIX_CHECK (build first)"; exit 1
fi
mkimg 1G || { fail "mkfs"; exit 1; }
mountfs -o allow_other || { fail "mount"; exit 1; }
"$POSIX_CHECK" -R "$MNT" posix || fail "posix_check could not run (status $?)"
remount -o allow_other,cache=strict || { fail "remount cache=strict"; exit 1; }
"$POSIX_CHECK" "$MNT" posix-strict ||
	fail "posix_check (cache=strict) could not run (status $?)"
check "unmount" umountfs
fsck_clean
