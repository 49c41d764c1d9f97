#!/bin/bash
# fio with --verify, and the run showing in the buffer cache's statistics.
. "$(dirname "$0")/lib.sh"
require
command -v fio >/dev/null || { skip "fio not installed"; exit 0; }
mkimg 1G && mountfs || { fail "mount"; exit 1; }
hits0=$(stat_of vfs.cachehits); miss0=$(stat_of vfs.cachemisses)
w0=$(stat_of vfs.byteswritten)
# fio writes its verify state files into the current directory.
cd "$WORK" || exit 1
check "fio seq write + verify" fio --name=seq --directory="$MNT" --rw=write --bs=1M --size=128M --verify=crc32c --do_verify=1 --end_fsync=1 --output="$WORK/fio1"
check "fio randwrite 4k + verify" fio --name=rnd --directory="$MNT" --rw=randwrite --bs=4k --size=32M --verify=crc32c --verify_fatal=1 --output="$WORK/fio2"
check "fio randrw libaio direct + verify" fio --name=dio --directory="$MNT" --ioengine=libaio --iodepth=16 --direct=1 --rw=randwrite --bs=4k --size=16M --verify=md5 --output="$WORK/fio3"
check "fio 4 jobs + verify" fio --name=par --directory="$MNT" --numjobs=4 --rw=randwrite --bs=16k --size=8M --verify=crc32c --output="$WORK/fio4"
setfattr -n flyfs.vfs.drop_caches -v 3 "$MNT"
hits1=$(stat_of vfs.cachehits); miss1=$(stat_of vfs.cachemisses)
w1=$(stat_of vfs.byteswritten)
check "fio visible: getblk lookups grew" test $((hits1 + miss1)) -gt $((hits0 + miss0))
check "fio visible: >= 128 MiB written to the device" test $((w1 - w0)) -ge $((128 << 20))
check "remount" remount
check "fio verify-only after remount" fio --name=seq --directory="$MNT" --rw=read --bs=1M --size=128M --verify=crc32c --verify_only --output="$WORK/fio5"
# Random reads of uncached blocks are answered from I/O completion
# (flyfs.fs.async_reads): read both random files back that way.
a0=$(stat_of fs.async_reads)
check "fio O_DIRECT qd32 random verify-only" fio --name=dio --directory="$MNT" --ioengine=libaio --iodepth=32 --direct=1 --rw=randwrite --bs=4k --size=16M --verify=md5 --verify_only --output="$WORK/fio6"
check "fio buffered random verify-only" fio --name=rnd --directory="$MNT" --rw=randwrite --bs=4k --size=32M --verify=crc32c --verify_only --output="$WORK/fio7"
a1=$(stat_of fs.async_reads)
check "random reads answered from completion ($a0 -> $a1)" test $((a1 - a0)) -ge 1024
check "unmount" umountfs
fsck_clean
