#!/bin/bash
# Randomized operations checked against a model (fsx_model.c): writes,
# reads, truncates, hole punches, fallocate, renames, links, unlinks and
# shared mmap over a few dozen files, in phases with a remount between
# them.  Each phase first checks every file in full against the model the
# previous phase saved, so data lost by an unmount shows there.  The
# phases mix in compressed extents and the other page cache modes.
#
# The cache is small, so that buffers are recycled and flushed during the
# run: that is where bugs hide.  The models hold some 50-80 MB; with
# cache_size=64M the cache never had to recycle a buffer (vfs.bufrecycles
# stayed 0), with 24M it recycles thousands.
#
# Two models run at the same time, each in its own directory: seed 1 makes
# the same operations in every run, so a regression shows at once; the
# other seed is new in every run (printed; FSX_SEED=S replays it), so runs
# over time cover more sequences.  Side by side they also give the daemon
# concurrent requests, which one sequential model would not.
#   FSX_SEED    the second seed (default: random)
#   FSX_OPS     operations per model per phase (default 3000)
. "$(dirname "$0")/lib.sh"
require
FSX_MODEL=${FSX_MODEL:-$BUILD/tests/integration/fsx_model}
if [ ! -x "$FSX_MODEL" ]; then
	fail "fsx_model missing: $FSX_MODEL (build first)"; exit 1
fi

OPS=${FSX_OPS:-3000}
SEEDS=1
RAND_SEED=${FSX_SEED:-$(( (RANDOM << 15 | RANDOM) + 2 ))}
[ "$RAND_SEED" != 1 ] && SEEDS="1 $RAND_SEED"
echo "fsx: seeds $SEEDS, $OPS ops per phase (replay: FSX_SEED=$RAND_SEED)"

# phase NAME FSX_MODEL-OPTIONS...: run every model once, side by side; a
# model that dies without a FAIL line of its own counts as a failure.
phase() {
	local name=$1 s rc status=0
	local -A pids
	shift
	for s in $SEEDS; do
		"$FSX_MODEL" --dir "$MNT/fsx.$s" --state "$WORK/fsx.$s.state" \
		    --seed "$s" --label "fsx: $name" "$@" \
		    >"$WORK/fsx.$s.out" 2>&1 &
		pids[$s]=$!
	done
	for s in $SEEDS; do
		wait "${pids[$s]}"
		rc=$?
		cat "$WORK/fsx.$s.out"
		if [ $rc != 0 ]; then
			status=1
			grep -q '^FAIL: ' "$WORK/fsx.$s.out" ||
			    fail "$name: fsx_model (seed $s) exited: $rc"
			FAILED=1
		fi
	done
	return $status
}

# remount_for NAME OPTS: remount with OPTS for the phase NAME.
remount_for() {
	remount -o "$2" && return 0
	fail "$1: remount -o $2"
	exit 1
}

BASE=cache_size=24M
mkimg 2G && mountfs -o $BASE || { fail "mount"; exit 1; }
phase "phase 1" --init --ops "$OPS" &&
    remount_for "phase 2" $BASE &&
    phase "phase 2" --ops "$OPS" &&
    remount_for "phase 3" $BASE,compress=zstd &&
    phase "phase 3 (compress=zstd)" --ops "$OPS" &&
    remount_for "phase 4" $BASE,cache=strict &&
    phase "phase 4 (cache=strict)" --ops "$OPS" &&
    remount_for "phase 5" $BASE,cache=writeback,compress=zstd &&
    phase "phase 5 (cache=writeback,compress=zstd)" --ops "$OPS" &&
    remount_for "final check" $BASE &&
    phase "final check" --verify-only
check "unmount" umountfs
fsck_clean
