#!/usr/bin/env bash
# bench/run-suite.sh [options]
#
# Benchmark flyfs against its peers with the shared fio suite, in one
# command: build a release daemon, then for each round make a fresh image,
# mount it, run ../shared/bench/fio-suite.sh on it, unmount and fsck it;
# then run the anchors (kernel-ext4, fuse2fs) in the same session and print
# summarize.sh's tables plus the flyfs/fuse2fs ratios and the memory check.
#
# Options:
#   --rounds N        rounds of flyfs and of each anchor (default 3)
#   --cache-size SZ   flyfs -o cache_size (default 1G)
#   --mount-opts O    extra flyfs -o options (e.g. cache=keep,compress=zstd)
#   --anchors "A B"   anchors to run (default "kernel-ext4 fuse2fs"); "" = none
#   --no-anchors      flyfs only
#   --anchors-csv F   reuse anchor rows from F instead of running anchors
#   --flyfs-from DIR  reuse the flyfs rounds of an earlier run's results
#                     directory (flyfs.csv, rss.txt) instead of running them
#   --no-build        use the existing build directory as is
#   --build DIR       build directory (default BUILD or build-perf)
#   --out DIR         results directory (default $SCRATCH/run-<date>)
#   --smoke           CI smoke test: FILE_SIZE=64M RUNTIME=2 CAP=10 NFILES=200,
#                     1 round, flyfs only, cache_size=64M; < 1 minute
#   -h, --help        this text
# Environment: SCRATCH (default /var/tmp/flyfs-bench; must be on a local
# disk filesystem such as ext4 - not tmpfs: the image is opened O_DIRECT),
# SHARED_BENCH (default: <repo>/../shared/bench), and fio-suite.sh knobs
# (FILE_SIZE, RUNTIME, CAP, NFILES, SUITE_JOBS), passed through to the
# anchors too.  Needs root (mount, drop_caches), fio, fuse3, attr, bc.
#
# Output in the results directory: results.csv (all rows), flyfs.csv,
# anchors/ (anchors.sh's own results), rss.txt (peak RSS per round),
# summary.md (what is printed at the end).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'; exit "${1:-2}"; }

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
ROUNDS=3
CACHE_SIZE=1G
MOUNT_OPTS=""
ANCHORS="kernel-ext4 fuse2fs"
ANCHORS_CSV=""
FLYFS_FROM=""
BUILD_DIR=${BUILD:-"$REPO/build-perf"}
DO_BUILD=1
OUTDIR=""
SMOKE=0
SCRATCH=${SCRATCH:-/var/tmp/flyfs-bench}
IMG_SIZE=4G

while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --cache-size) CACHE_SIZE=$2; shift 2 ;;
        --mount-opts) MOUNT_OPTS=$2; shift 2 ;;
        --anchors) ANCHORS=$2; shift 2 ;;
        --no-anchors) ANCHORS=""; shift ;;
        --anchors-csv) ANCHORS_CSV=$2; ANCHORS=""; shift 2 ;;
        --flyfs-from) FLYFS_FROM=$(cd "$2" && pwd); DO_BUILD=0; shift 2 ;;
        --no-build) DO_BUILD=0; shift ;;
        --build) BUILD_DIR=$2; shift 2 ;;
        --out) OUTDIR=$2; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "run-suite.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

log() { printf '[%s] run-suite: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- prerequisites ----------------------------------------------------------
SHARED_BENCH=${SHARED_BENCH:-"$REPO/../shared/bench"}
for f in fio-suite.sh anchors.sh summarize.sh benchlib.py; do
    [[ -f $SHARED_BENCH/$f ]] || die "$SHARED_BENCH/$f not found: the shared benchmark harness must sit beside the checkout (../shared/bench from the repository top), or set SHARED_BENCH"
done
SHARED_BENCH=$(cd "$SHARED_BENCH" && pwd)
[[ $(id -u) == 0 ]] || die "must run as root (FUSE mount, drop_caches, anchors)"
for c in fio getfattr setfattr fusermount3 bc python3 meson ninja; do
    command -v "$c" >/dev/null || die "'$c' missing (apt-get install fio attr fuse3 bc python3 meson ninja-build)"
done

if [[ $SMOKE == 1 ]]; then
    export FILE_SIZE=${FILE_SIZE:-64M} RUNTIME=${RUNTIME:-2} CAP=${CAP:-10} NFILES=${NFILES:-200}
    ROUNDS=1
    ANCHORS=""
    ANCHORS_CSV=""
    [[ $CACHE_SIZE == 1G ]] && CACHE_SIZE=64M
    IMG_SIZE=1G
fi

[[ -n $OUTDIR ]] || OUTDIR="$SCRATCH/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$SCRATCH" "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

# The harness starts python3 three times per job.  A version-manager shim
# (pyenv) in front of the system python costs ~0.6 s per start on this kind
# of box, i.e. minutes per suite: call the interpreter directly.
PYREAL=$(python3 -c 'import sys; print(sys.executable)')
mkdir -p "$OUTDIR/.bin"
ln -sf "$PYREAL" "$OUTDIR/.bin/python3"
export PATH="$OUTDIR/.bin:$PATH"
MNT="$SCRATCH/flyfs-mnt"
IMG="$SCRATCH/flyfs.img"
mkdir -p "$MNT"
FSTYPE=$(findmnt -n -o FSTYPE --target "$SCRATCH")
[[ $FSTYPE != tmpfs ]] || die "$SCRATCH is on tmpfs (no O_DIRECT); set SCRATCH to a disk directory"

# ---- build -------------------------------------------------------------------
if [[ -n $FLYFS_FROM ]]; then
    [[ -f $FLYFS_FROM/flyfs.csv ]] || die "$FLYFS_FROM/flyfs.csv missing"
fi
if [[ $DO_BUILD == 1 ]]; then
    if [[ ! -f $BUILD_DIR/build.ninja ]]; then
        log "configuring release build in $BUILD_DIR"
        meson setup "$BUILD_DIR" "$REPO" -Dbuildtype=release -Dinvariants=false >/dev/null
    fi
    log "building $BUILD_DIR"
    ninja -C "$BUILD_DIR" fs/flyfs tools/mkfs/mkfs.flyfs tools/fsck/fsck.flyfs >/dev/null \
        || die "build failed (ninja -C $BUILD_DIR)"
fi
# Measure a snapshot: a rebuild during the run must not change the binary
# between rounds.
mkdir -p "$OUTDIR/bin"
for b in fs/flyfs tools/mkfs/mkfs.flyfs tools/fsck/fsck.flyfs; do
    [[ -n $FLYFS_FROM ]] && break
    [[ -x $BUILD_DIR/$b ]] || die "$BUILD_DIR/$b missing (build first)"
    cp "$BUILD_DIR/$b" "$OUTDIR/bin/"
done
FLYFS="$OUTDIR/bin/flyfs"
MKFS="$OUTDIR/bin/mkfs.flyfs"
FSCK="$OUTDIR/bin/fsck.flyfs"

# ---- mount / unmount ---------------------------------------------------------
DPID=""
SAMPLER=""
CHILD=""
cleanup() {
    # A suite or anchors run of ours still going (interrupted): stop its
    # process group (setsid below), i.e. fio-suite.sh and its fio.
    if [[ -n $CHILD ]]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 -- "-$CHILD" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$CHILD" 2>/dev/null || true
    fi
    CHILD=""
    [[ -n $SAMPLER ]] && { kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; }
    SAMPLER=""
    if mountpoint -q "$MNT"; then
        fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT" || true
    fi
    if [[ -n $DPID ]]; then
        # The daemon writes its dirty buffers after the unmount: wait for it.
        for _ in $(seq 1 600); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$DPID" 2>/dev/null && { log "daemon $DPID still running; TERM"; kill "$DPID" || true; }
    fi
    DPID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

to_bytes() { numfmt --from=iec "${1%[iIbB]}"; }
LIMIT_KB=$(( ($(to_bytes "$CACHE_SIZE") + 64 * 1048576) / 1024 ))

mount_fresh() {
    rm -f "$IMG"
    truncate -s "$IMG_SIZE" "$IMG"
    "$MKFS" -q -f "$IMG" >/dev/null || die "mkfs.flyfs failed"
    local opts="cache_size=$CACHE_SIZE${MOUNT_OPTS:+,$MOUNT_OPTS}"
    "$FLYFS" "$IMG" "$MNT" -f -o "$opts" >"$OUTDIR/flyfs-$1.log" 2>&1 &
    DPID=$!
    for _ in $(seq 1 100); do
        mountpoint -q "$MNT" && break
        kill -0 "$DPID" 2>/dev/null || die "flyfs exited (see $OUTDIR/flyfs-$1.log)"
        sleep 0.1
    done
    mountpoint -q "$MNT" || die "flyfs did not mount"
    log "mounted $IMG on $MNT (pid $DPID, -o $opts)"
}

# Peak RSS: the kernel's own high-water mark (VmHWM), sampled every 0.5 s
# so that the last value before exit is kept.
start_sampler() {
    local pid=$1 out=$2
    ( while kill -0 "$pid" 2>/dev/null; do
          awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null > "$out.tmp" && mv "$out.tmp" "$out"
          sleep 0.5
      done ) &
    SAMPLER=$!
}

# ---- flyfs rounds --------------------------------------------------------------
FLYCSV="$OUTDIR/flyfs.csv"
RSSFILE="$OUTDIR/rss.txt"
: > "$RSSFILE"
{
    echo "date: $(date -Is)  kernel: $(uname -r)  cpus: $(nproc)"
    echo "flyfs: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') build=$BUILD_DIR"
    echo "cache_size=$CACHE_SIZE mount_opts=${MOUNT_OPTS:-none} rounds=$ROUNDS smoke=$SMOKE"
    echo "scratch: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS --target "$SCRATCH")"
    echo "knobs: FILE_SIZE=${FILE_SIZE:-1G} RUNTIME=${RUNTIME:-10} CAP=${CAP:-30} NFILES=${NFILES:-10000}"
} > "$OUTDIR/env.txt"

# Bytes written to the image: the blockdev's completed-write counter
# (data, metadata, journal, superblock, O_DIRECT bounce writes); if the
# daemon predates fs.dev_write_bytes, the buffer cache's vfs.byteswritten
# (misses the journal's own log writes).
BACKING="v=\$(getfattr --absolute-names --only-values -n flyfs.fs.dev_write_bytes '$MNT' 2>/dev/null) || v=\$(getfattr --absolute-names --only-values -n flyfs.vfs.byteswritten '$MNT'); echo \$v"
COLD="sync; echo 3 > /proc/sys/vm/drop_caches; setfattr -n flyfs.vfs.drop_caches -v 3 '$MNT'"

if [[ -n $FLYFS_FROM ]]; then
    log "flyfs rounds taken from $FLYFS_FROM"
    cp "$FLYFS_FROM/flyfs.csv" "$FLYCSV"
    cp "$FLYFS_FROM/rss.txt" "$RSSFILE"
    echo "flyfs rows from: $FLYFS_FROM ($(head -1 "$FLYFS_FROM/env.txt"))" >> "$OUTDIR/env.txt"
fi
for r in $(seq 1 "$ROUNDS"); do
    [[ -n $FLYFS_FROM ]] && break
    log "=== flyfs round $r/$ROUNDS"
    mount_fresh "$r"
    start_sampler "$DPID" "$OUTDIR/hwm-$r"
    # In its own process group, waited for with "wait" so that a signal to
    # this script is handled at once and cleanup can stop the group.
    DAEMON_PID=$DPID COLD_HOOK=$COLD BACKING_CMD=$BACKING FLUSH_HOOK=sync \
        setsid "$SHARED_BENCH/fio-suite.sh" "$MNT" flyfs "$FLYCSV" \
        > >(tee -a "$OUTDIR/log.txt" >&2) 2>&1 &
    CHILD=$!
    wait "$CHILD" || log "fio-suite failed on flyfs (round $r)"
    CHILD=""
    getfattr --absolute-names --only-values -n flyfs.stats "$MNT" > "$OUTDIR/stats-$r.txt" 2>/dev/null || true
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$DPID/status" 2>/dev/null || cat "$OUTDIR/hwm-$r")
    cleanup
    [[ -z $hwm ]] && hwm=$(cat "$OUTDIR/hwm-$r" 2>/dev/null || echo 0)
    verdict=$([[ $hwm -lt $LIMIT_KB ]] && echo OK || echo OVER)
    echo "round $r: peak RSS $((hwm / 1024)) MiB, limit $((LIMIT_KB / 1024)) MiB (cache_size $CACHE_SIZE + 64 MiB): $verdict" | tee -a "$RSSFILE" >&2
    echo "flyfs,suite,peak_rss,$((hwm / 1024)),MiB" >> "$FLYCSV"
    if "$FSCK" -n "$IMG" > "$OUTDIR/fsck-$r.txt" 2>&1; then
        log "fsck clean"
    else
        log "fsck reported problems (see $OUTDIR/fsck-$r.txt)"; echo "round $r: fsck NOT clean" >> "$RSSFILE"
    fi
    rm -f "$IMG"
done

# ---- anchors ---------------------------------------------------------------------
ALL="$OUTDIR/results.csv"
grep -h -v '^label,' "$FLYCSV" > "$ALL.rows" || true
if [[ -n $ANCHORS ]]; then
    # anchors.sh installs its Debian packages only when asked (--install).
    need_install=0
    for c in fio mkfs.ext4 losetup pkg-config gcc; do command -v "$c" >/dev/null || need_install=1; done
    [[ " $ANCHORS " == *" fuse2fs "* ]] && ! command -v fuse2fs >/dev/null && need_install=1
    if [[ $need_install == 1 ]]; then
        log "installing the anchors' packages (anchors.sh --install)"
        "$SHARED_BENCH/anchors.sh" --install > "$OUTDIR/anchors-install.log" 2>&1 \
            || die "anchors.sh --install failed (see $OUTDIR/anchors-install.log)"
    fi
    log "=== anchors: $ANCHORS ($ROUNDS rounds)"
    # shellcheck disable=SC2086  # one word per anchor
    # anchors.sh tears its anchor down on TERM (its own EXIT trap).
    SCRATCH="$SCRATCH/anchors" setsid "$SHARED_BENCH/anchors.sh" --rounds "$ROUNDS" \
        --out "$OUTDIR/anchors" $ANCHORS > >(tee -a "$OUTDIR/log.txt" >&2) 2>&1 &
    CHILD=$!
    wait "$CHILD" || log "anchors.sh failed"
    CHILD=""
    ANCHORS_CSV="$OUTDIR/anchors/results.csv"
fi
if [[ -n $ANCHORS_CSV && -f $ANCHORS_CSV ]]; then
    grep -h -v '^label,' "$ANCHORS_CSV" >> "$ALL.rows" || true
fi
{ echo "label,job,metric,value,unit"; cat "$ALL.rows"; } > "$ALL"
rm -f "$ALL.rows"

# ---- summary -------------------------------------------------------------------------
LABELS=(kernel-ext4 flyfs fuse2fs)
{
    echo "## flyfs benchmark $(date -Is)"
    echo
    sed 's/^/    /' "$OUTDIR/env.txt"
    echo
    "$SHARED_BENCH/summarize.sh" "$ALL" "${LABELS[@]}"
    echo
    echo "### flyfs / fuse2fs and flyfs / kernel-ext4 (ratios of medians)"
    echo
    python3 "$SHARED_BENCH/benchlib.py" ratios "$ALL" --keys \
"seqwrite:bw,seqread:bw,randread4k:iops,seqread-cold:bw,randread4k-direct:iops,\
randread4k-qd32:iops,randwrite4k:iops,randwrite4k-fsync32:iops,randrw70:iops,\
meta-create:ops,meta-stat:ops,meta-delete:ops,seqwrite-compress50:bw,seqwrite:backing_ratio" \
        flyfs/fuse2fs flyfs/kernel-ext4 2>/dev/null || echo "(no anchor rows to compare with)"
    echo
    echo "### Peak RSS (VmHWM)"
    echo
    sed 's/^/    /' "$RSSFILE"
    echo
    echo "### Floors (issue 5): flyfs median >= fuse2fs on every job, >= 3x on the four marked"
    echo
    python3 - "$ALL" <<'PY'
import csv, statistics, sys
vals = {}
for r in csv.reader(open(sys.argv[1])):
    if len(r) == 5 and r[0] != "label":
        try: vals.setdefault((r[0], r[1], r[2]), []).append(float(r[3]))
        except ValueError: pass
jobs = [("seqwrite","bw",3), ("seqread","bw",1), ("randread4k","iops",1),
        ("seqread-cold","bw",3), ("randread4k-direct","iops",1),
        ("randread4k-qd32","iops",3), ("randwrite4k","iops",1),
        ("randwrite4k-fsync32","iops",1), ("randrw70","iops",1),
        ("meta-create","ops",3), ("meta-stat","ops",1), ("meta-delete","ops",1),
        ("seqwrite-compress50","bw",1)]
print("| job | flyfs | fuse2fs | ratio | floor | |")
print("|---|---|---|---|---|---|")
for job, m, k in jobs:
    a, b = vals.get(("flyfs", job, m)), vals.get(("fuse2fs", job, m))
    if not a or not b:
        print("| %s | %s | %s | - | %dx | no data |" % (job, a and "%.1f" % statistics.median(a) or "-", b and "%.1f" % statistics.median(b) or "-", k)); continue
    x, y = statistics.median(a), statistics.median(b)
    print("| %s | %.1f | %.1f | %.2f | %dx | %s |" % (job, x, y, x / y, k, "ok" if x >= k * y else "BELOW"))
PY
} > "$OUTDIR/summary.md"
cat "$OUTDIR/summary.md"
log "results in $OUTDIR"
