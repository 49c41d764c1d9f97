#!/bin/bash
# coreutils on the mount: cp, mv, ln, rm, mkdir, touch, stat, chmod, chown;
# what they did is still there after a remount.
. "$(dirname "$0")/lib.sh"
require
mkimg 512M && mountfs || { fail "mount"; exit 1; }
cd "$MNT" || exit 1

check "mkdir -p" mkdir -p a/b/c
check "cp a file" cp /etc/services a/b/services
check "cp -r" cp -r /etc/default a/default
check "cmp copy" cmp /etc/services a/b/services
check "mv (rename)" mv a/b/services a/services2
check "mv across dirs" mv a/services2 a/b/c/services3
check "mv dir" mv a/default a/b/default2
check "ln (hard link)" ln a/b/c/services3 hard
check "link count 2" test "$(stat -c %h hard)" = 2
check "ln -s" ln -s a/b/c/services3 sym
check "readlink" test "$(readlink sym)" = a/b/c/services3
check "read through symlink" cmp /etc/services sym
check "touch new" touch newfile
check "truncate" truncate -s 100000 newfile
check "size set" test "$(stat -c %s newfile)" = 100000
check "touch -d" touch -d "2001-02-03 04:05:06" newfile
check "mtime set" test "$(stat -c %Y newfile)" = "$(date -d '2001-02-03 04:05:06' +%s)"
check "chmod" chmod 0640 newfile
check "mode set" test "$(stat -c %a newfile)" = 640
check "chown" chown 1234:5678 newfile
check "owner set" test "$(stat -c %u:%g newfile)" = 1234:5678
check_fails "rmdir non-empty" "not empty" rmdir a/b
check_fails "rm dir without -r" "directory" rm a
check "rm" rm hard
check "link count 1" test "$(stat -c %h a/b/c/services3)" = 1
check "rm -r" rm -r a/b/default2
check "mkdir many" sh -c 'for i in $(seq 1 500); do echo $i > f$i; done'
check "ls counts 500" test "$(ls | grep -c '^f[0-9]')" = 500
check "rm many" sh -c 'rm f*'
check "mv onto existing (replace)" sh -c 'echo 1 > x && echo 2 > y && mv x y && test "$(cat y)" = 1 && ! test -e x'
check "ls -l" ls -lR .
cd /

check "remount" remount
cd "$MNT" || exit 1
check "after remount: copy" cmp /etc/services a/b/c/services3
check "after remount: symlink" test "$(readlink sym)" = a/b/c/services3
check "after remount: times/mode/owner" test "$(stat -c '%Y %a %u:%g %s' newfile)" = "$(date -d '2001-02-03 04:05:06' +%s) 640 1234:5678 100000"
check "after remount: replaced file" test "$(cat y)" = 1
check "after remount: gone stays gone" sh -c '! test -e hard && ! test -e a/b/default2'
cd /
check "unmount" umountfs
fsck_clean
