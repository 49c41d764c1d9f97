#!/bin/bash
# Shared writable mmap in the default cache mode: writes through the
# mapping reach the file, and read back after a remount.
. "$(dirname "$0")/lib.sh"
require
mkimg 256M && mountfs || { fail "mount"; exit 1; }
check "mmap shared write" python3 - "$MNT/m" <<'PY'
import mmap, os, sys
path = sys.argv[1]
size = 8 << 20
with open(path, "wb") as f:
    f.truncate(size)
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for i in range(0, size, 4096):
    m[i:i + 8] = (i // 4096).to_bytes(8, "little")
m[size - 5:size] = b"tail!"
m.flush()
m.close()
os.close(fd)
# read(2) sees what the mapping wrote
with open(path, "rb") as f:
    d = f.read()
assert d[4096:4104] == (1).to_bytes(8, "little"), "read after msync"
assert d[-5:] == b"tail!"
PY
check "mmap without msync, then munmap+close" python3 - "$MNT/m2" <<'PY'
import mmap, os, sys
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(b"\0" * 65536)
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 65536, mmap.MAP_SHARED)
m[100:105] = b"hello"
del m
os.close(fd)
PY
check "remount" remount
check "mmap data after remount" python3 - "$MNT/m" <<'PY'
import sys
size = 8 << 20
d = open(sys.argv[1], "rb").read()
assert len(d) == size, len(d)
for i in range(0, size, 4096):
    assert d[i:i + 8] == (i // 4096).to_bytes(8, "little"), i
assert d[-5:] == b"tail!"
PY
check "unsynced mmap data after remount" sh -c "dd if='$MNT/m2' bs=1 skip=100 count=5 status=none | grep -qx hello"
check "mmap read of a written file" python3 - "$MNT/m" <<'PY'
import mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    assert m[4096:4104] == (1).to_bytes(8, "little")
PY
check "unmount" umountfs
fsck_clean
