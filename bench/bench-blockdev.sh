#!/bin/sh
# bench-blockdev.sh - blockdev_bench against fio on the same image file, in
# the same session: 4 KiB random reads at queue depth 32 and 1 MiB
# sequential writes, alternating the two tools, ROUNDS rounds; prints the
# median of each and the ratio blockdev_bench / fio (target: >= 0.90).
#
# Environment (all optional):
#   BENCH    path of blockdev_bench   (default: build/bench/blockdev_bench,
#            else the first build*/bench/blockdev_bench found)
#   IMAGE    image file, on ext4/xfs/btrfs (default /var/tmp/flyfs-bench.img)
#   SIZE     image size                (default 2G)
#   RUNTIME  seconds per run           (default 10)
#   ROUNDS   rounds                    (default 3)
#   WQD      queue depth of the 1 MiB sequential writes (default 8)
#
# The image is overwritten.
set -eu

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-/var/tmp/flyfs-bench.img}
SIZE=${SIZE:-2G}
RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
WQD=${WQD:-8}

if [ -z "${BENCH:-}" ]; then
	for b in build/bench/blockdev_bench build*/bench/blockdev_bench; do
		if [ -x "$b" ]; then BENCH=$b; break; fi
	done
fi
if [ -z "${BENCH:-}" ] || [ ! -x "$BENCH" ]; then
	echo "bench-blockdev: blockdev_bench not built; run" \
	    "'meson setup build && ninja -C build' or set BENCH" >&2
	exit 1
fi
command -v fio >/dev/null || apt-get install -y fio >/dev/null

fstype=$(df --output=fstype "$(dirname "$IMAGE")" | tail -n 1)
case $fstype in
tmpfs|ramfs)
	echo "bench-blockdev: $IMAGE is on $fstype; put it on ext4/xfs/btrfs" >&2
	exit 1;;
esac

# Allocate and write every block once, so neither tool pays for
# converting unwritten extents and both see the same file.
bytes=$(numfmt --from=iec "$SIZE")
if [ ! -f "$IMAGE" ] || [ "$(stat -c %s "$IMAGE")" != "$bytes" ]; then
	rm -f "$IMAGE"
	fallocate -l "$bytes" "$IMAGE"
	dd if=/dev/zero of="$IMAGE" bs=1M count=$((bytes / 1048576)) \
	    oflag=direct conv=notrunc status=none
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run_fio NAME RW BS QD: append "iops mibps" to $tmp/fio.NAME
run_fio() {
	fio --name="$1" --filename="$IMAGE" --direct=1 --ioengine=libaio \
	    --rw="$2" --bs="$3" --iodepth="$4" --runtime="$RUNTIME" \
	    --time_based --size="$bytes" --numjobs=1 \
	    --output-format=terse --terse-version=3 |
	awk -F';' -v rw="$2" '{
		if (rw ~ /read/) { bw = $7; iops = $8 } else { bw = $48; iops = $49 }
		printf "%d %.1f\n", iops, bw / 1024 }' >>"$tmp/fio.$1"
	tail -n 1 "$tmp/fio.$1" | awk -v n="$1" -v r="$r" \
	    '{ printf "    [%s round %s]   fio IOPS %s  bandwidth %s MiB/s\n", n, r, $1, $2 }' >&2
}

# run_bench NAME MODE BS QD: append "iops mibps" to $tmp/bench.NAME
run_bench() {
	"$BENCH" --mode "$2" --bs "$3" --qd "$4" --runtime "$RUNTIME" \
	    "$IMAGE" | tee "$tmp/last" | sed -n 's/^RESULT .*iops=\([0-9]*\) mibps=\([0-9.]*\).*/\1 \2/p' \
	    >>"$tmp/bench.$1"
	sed -n '2,3p' "$tmp/last" | sed "s/^/    [$1 round $r] /" >&2
}

median() {	# column $2 of file $1
	sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c }
	    END { printf "%s", v[int((NR + 1) / 2)] }'
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
	echo "round $r/$ROUNDS" >&2
	run_fio randread randread 4k 32
	run_bench randread randread 4k 32
	run_bench seqwrite seqwrite 1M "$WQD"
	run_fio seqwrite write 1M "$WQD"
	r=$((r + 1))
done

printf '\nmedians of %s rounds, %ss each, %s on %s (%s)\n' "$ROUNDS" \
    "$RUNTIME" "$IMAGE" "$fstype" "$SIZE"
printf '%-22s %12s %12s %10s %10s %7s\n' test "fio IOPS" "bench IOPS" \
    "fio MiB/s" "bench MiB/s" ratio
for t in randread seqwrite; do
	case $t in
	randread) label="randread 4k qd32";;
	seqwrite) label="seqwrite 1M qd$WQD";;
	esac
	fi=$(median "$tmp/fio.$t" 1); fb=$(median "$tmp/fio.$t" 2)
	bi=$(median "$tmp/bench.$t" 1); bb=$(median "$tmp/bench.$t" 2)
	printf '%-22s %12s %12s %10s %10s %7s\n' "$label" "$fi" "$bi" \
	    "$fb" "$bb" "$(awk -v a="$bi" -v b="$fi" \
	    'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
done
