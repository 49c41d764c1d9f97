#!/bin/bash
# Mount and unmount: foreground and background, the mount helper, read-only,
# and the errors a user meets (missing image, not flyfs, busy mount point).
. "$(dirname "$0")/lib.sh"
require

check "--version" "$FLYFS" --version
check "--help mentions cache=" sh -c '"$0" --help | grep -q "cache=MODE"' "$FLYFS"
check_fails "usage without arguments" "usage" "$FLYFS"
check_fails "missing image" "No such file" "$FLYFS" "$WORK/nope" "$MNT"
head -c 1M /dev/zero > "$WORK/zeros"
check_fails "not a flyfs image" "flyfs" "$FLYFS" "$WORK/zeros" "$MNT"
check_fails "bad option value" "cache_size" "$FLYFS" "$WORK/zeros" "$MNT" -o cache_size=lots

mkimg 256M || { fail "mkfs"; exit 1; }
if mountfs; then pass "foreground mount"; else fail "foreground mount"; exit 1; fi
check "mount is fuse.flyfs" sh -c "grep -q ' $MNT fuse.flyfs ' /proc/mounts"
check "default_permissions on" sh -c "grep ' $MNT ' /proc/mounts | grep -q default_permissions"
check "statfs" stat -f "$MNT"
check_fails "mount point busy" "busy" "$FLYFS" "$IMG" "$MNT"
mkdir -p "$WORK/mnt2"
check_fails "same image twice" "in use" timeout 30 "$FLYFS" "$IMG" "$WORK/mnt2"
echo data > "$MNT/f"
check "clean unmount (fusermount3 -u)" umountfs
check "no longer mounted" sh -c "! mountpoint -q $MNT"

# Background mode: the parent returns once the mount is up.
check "background mount" "$FLYFS" "$IMG" "$MNT"
MOUNTED=$MNT
check "data survives remount" grep -qx data "$MNT/f"
pid=$(pgrep -f "^$FLYFS $IMG $MNT\$" | head -1)
check "umount(8)" umount "$MNT"
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
check "daemon exits after umount" sh -c "! kill -0 $pid 2>/dev/null"
MOUNTED=

# Read-only.
if mountfs -o ro; then
	check_fails "ro: writes refused" "read-only" sh -c "echo x > $MNT/g"
	check "ro: reads" grep -qx data "$MNT/f"
	check "ro: unmount" umountfs
else
	fail "ro mount"
fi

# The standard mount helper: mount(8) -> /sbin/mount.fuse(3) -> "flyfs" in
# PATH.  In a private mount namespace, a tmpfs over /usr/local/sbin makes
# this build's daemon the one PATH finds, without touching the system.
if command -v unshare >/dev/null && [ -x /sbin/mount.fuse3 -o -x /sbin/mount.fuse ]; then
	check "mount -t fuse.flyfs (mount helper)" unshare -m sh -c "
		mount --make-rprivate / &&
		mount -t tmpfs none /usr/local/sbin &&
		ln -s '$FLYFS' /usr/local/sbin/flyfs &&
		mount -t fuse.flyfs -o cache_size=64M,noatime '$IMG' '$MNT' &&
		grep -qx data '$MNT/f' &&
		grep ' $MNT ' /proc/mounts | grep -q noatime &&
		umount '$MNT'"
	# The daemon of that mount finishes writing before the image is free.
	for i in $(seq 1 100); do pgrep -f "flyfs $IMG" >/dev/null || break; sleep 0.1; done
else
	skip "mount helper (no unshare or mount.fuse3)"
fi
fsck_clean
