#!/bin/bash
# The virtual flyfs.* xattrs with the real getfattr/setfattr, and real
# user.* xattrs living beside them (cp -a, rsync -X must not see flyfs.*).
. "$(dirname "$0")/lib.sh"
require
command -v getfattr >/dev/null || { skip "getfattr --absolute-names missing (apt-get install attr)"; exit 0; }
mkimg 256M && mountfs -o allow_other || { fail "mount"; exit 1; }

check "flyfs.stats readable" sh -c "getfattr --absolute-names --only-values -n flyfs.stats '$MNT' | grep -q '^vfs.bufspace [0-9]'"
check "flyfs.stats has fs. lines" sh -c "getfattr --absolute-names --only-values -n flyfs.stats '$MNT' | grep -q '^fs\.'"
check "flyfs.vfs.hidirtybufspace" sh -c "getfattr --absolute-names --only-values -n flyfs.vfs.hidirtybufspace '$MNT' | grep -qx '[0-9][0-9]*'"
fsname=$(getfattr --absolute-names --only-values -n flyfs.stats "$MNT" | awk '/^fs\./ { sub(/^fs\./, "", $1); print $1; exit }')
if [ -n "$fsname" ]; then
	check "flyfs.fs.$fsname" sh -c "getfattr --absolute-names --only-values -n flyfs.fs.$fsname '$MNT' | grep -qx '[0-9][0-9]*'"
fi
check_fails "unknown name: ENODATA" "No such attribute" getfattr --absolute-names -n flyfs.vfs.nosuchthing "$MNT"
check_fails "vfs name on a file: ENODATA" "No such attribute" sh -c "touch '$MNT/f' && getfattr --absolute-names -n flyfs.vfs.bufspace '$MNT/f'"
old=$(vstat flyfs.vfs.hidirtybufspace)
check "set tunable (setfattr)" setfattr -n flyfs.vfs.hidirtybufspace -v 48M "$MNT"
check "tunable took the value" test "$(vstat flyfs.vfs.hidirtybufspace)" = $((48 << 20))
check "restore tunable" setfattr -n flyfs.vfs.hidirtybufspace -v "$old" "$MNT"
check_fails "bad value: EINVAL" "Invalid argument" setfattr -n flyfs.vfs.hidirtybufspace -v banana "$MNT"
check_fails "out of range: EINVAL" "Invalid argument" setfattr -n flyfs.vfs.flushperqueue -v 0 "$MNT"
check_fails "read-only counter: EPERM" "not permitted" setfattr -n flyfs.vfs.bufspace -v 1 "$MNT"
check_fails "unknown tunable: ENODATA" "No such attribute" setfattr -n flyfs.vfs.nosuchthing -v 1 "$MNT"
# Another user (the kernel lets it write the root dir once it is 0777).
chmod 0777 "$MNT"
check_fails "other user: EPERM" "not permitted" setpriv --reuid=65534 --regid=65534 --clear-groups setfattr -n flyfs.vfs.hidirtybufspace -v 48M "$MNT"
check "other user may read" setpriv --reuid=65534 --regid=65534 --clear-groups getfattr --absolute-names -n flyfs.vfs.bufspace "$MNT"
chmod 0755 "$MNT"

# Per-file figures.
head -c 1M /dev/urandom > "$MNT/data"
check "flyfs.file.* on a file" sh -c "getfattr --absolute-names --only-values -n flyfs.stats '$MNT/data' | grep -q '^file\.'"
fname=$(getfattr --absolute-names --only-values -n flyfs.stats "$MNT/data" | awk '/^file\./ { sub(/^file\./, "", $1); print $1; exit }')
[ -n "$fname" ] && check "flyfs.file.$fname" sh -c "getfattr --absolute-names --only-values -n flyfs.file.$fname '$MNT/data' | grep -qx '[0-9][0-9]*'"

# drop_caches empties the clean part of the cache.
cat "$MNT/data" > /dev/null
before=$(stat_of vfs.bufspace)
check "drop_caches=1" setfattr -n flyfs.vfs.drop_caches -v 1 "$MNT"
after=$(stat_of vfs.bufspace)
check "bufspace did not grow ($before -> $after)" test "${after:-1}" -le "${before:-0}"
check "drop_caches=3 (sync first)" setfattr -n flyfs.vfs.drop_caches -v 3 "$MNT"
check_fails "drop_caches=7: EINVAL" "Invalid argument" setfattr -n flyfs.vfs.drop_caches -v 7 "$MNT"
check "data intact after drop" cmp "$MNT/data" "$MNT/data"

# Real user xattrs.
check "setfattr user.color" setfattr -n user.color -v blue "$MNT/data"
check "getfattr --absolute-names user.color" test "$(getfattr --absolute-names --only-values -n user.color "$MNT/data")" = blue
check "getfattr --absolute-names -d lists only real names" sh -c "getfattr --absolute-names -d -m - '$MNT/data' | grep -v '^#' | grep -v '^\$' | grep -vx 'user.color=\"blue\"' | wc -l | grep -qx 0"
check "listxattr has no flyfs.*" sh -c "! getfattr --absolute-names -d -m - '$MNT/data' | grep -q '^flyfs\.'"
check "cp -a keeps user.* and no flyfs.*" sh -c "cp -a '$MNT/data' '$MNT/copy' && getfattr --absolute-names -d -m - '$MNT/copy' | grep -q 'user.color=\"blue\"' && ! getfattr --absolute-names -d -m - '$MNT/copy' | grep -q '^flyfs\.'"
check "cp -a out to host keeps user.*" sh -c "cp -a '$MNT/data' '$WORK/out' && getfattr --absolute-names -n user.color '$WORK/out' | grep -q blue"
if command -v rsync >/dev/null; then
	check "rsync -X" sh -c "rsync -aX '$MNT/data' '$MNT/rs' && getfattr --absolute-names -d -m - '$MNT/rs' | grep -q user.color && ! getfattr --absolute-names -d -m - '$MNT/rs' | grep -q '^flyfs\.'"
else
	skip "rsync not installed"
fi
check "removexattr user.color" setfattr -x user.color "$MNT/data"
check_fails "removed: ENODATA" "No such attribute" getfattr --absolute-names -n user.color "$MNT/data"
check_fails "virtual names cannot be removed" "not permitted" setfattr -x flyfs.vfs.bufspace "$MNT"
# File capabilities go with a write, a truncate and a chown, as on ext4.
# The kernel leaves that to flyfs (FUSE_HANDLE_KILLPRIV_V2, fs/fuse_wire.c)
# and in return stops asking for security.capability before every write.
capv=0x0100000200040000000000000000000000000000	# v2, cap_net_bind_service+ep
nocap() { ! getfattr --absolute-names -n security.capability "$1" >/dev/null 2>&1; }
for how in write truncate chown; do
	f=$MNT/cap-$how
	head -c 64K /dev/urandom > "$f"
	if ! check "$how: set security.capability" setfattr -n security.capability -v $capv "$f"; then
		continue
	fi
	case $how in
	write) dd if=/dev/zero of="$f" bs=4k count=1 seek=3 conv=notrunc status=none ;;
	truncate) truncate -s 8K "$f" ;;
	chown) chown 0:0 "$f" ;;
	esac
	check "$how drops security.capability" nocap "$f"
done
g0=$(stat_of fs.xattr_gets)
dd if=/dev/zero of="$MNT/probe" bs=4k count=200 status=none
g1=$(stat_of fs.xattr_gets)
check "200 writes, at most 2 getxattr probes (saw $((g1 - g0)))" test $((g1 - g0)) -le 2
check "user xattr survives remount" sh -c "setfattr -n user.k -v v '$MNT/copy' && true"
check "remount" remount
check "after remount" test "$(getfattr --absolute-names --only-values -n user.k "$MNT/copy")" = v
check "capability still gone after remount" nocap "$MNT/cap-write"
if [ -x "$FLYFS_STAT" ]; then
	check "flyfs-stat -m" sh -c "'$FLYFS_STAT' -m -c 1 '$MNT' | grep -q bufspace"
	check "flyfs-stat (2 samples)" "$FLYFS_STAT" -c 2 "$MNT" 1
else
	skip "flyfs-stat not built"
fi
check "unmount" umountfs
fsck_clean
