/*
 * blockdev_bench.c - drive a blockdev the way fio drives a file, to
 * measure what the layer costs on top of O_DIRECT + libaio.
 *
 *   blockdev_bench --mode randread --bs 4096 --qd 32 --runtime 10 IMAGE
 *   blockdev_bench --mode seqwrite --bs 1M --qd 4 --runtime 10 IMAGE
 *
 * It keeps QD requests in flight for RUNTIME seconds and prints IOPS,
 * MiB/s and completion-latency percentiles (submission to callback).  As
 * in fio's libaio engine, one thread does the work: each completion
 * callback, on the device's completion thread, submits the next request,
 * so the figures measure the layer, not a hand-off between threads.
 * The last line ("RESULT ...") is for scripts.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"

enum mode { RANDREAD, RANDWRITE, SEQREAD, SEQWRITE };

/*
 * Latency histogram, log-linear: 32 sub-buckets per power of two of
 * nanoseconds, so a percentile is within about 3% of the true value.
 */
#define SUB_BITS	5
#define NBUCKETS	(64 << SUB_BITS)

struct slot {
	struct blockdev_req s_req;
	struct iovec s_iov;
	uint64_t s_rng;			/* per-slot generator (random modes) */
	uint64_t s_start;		/* submission time, ns */
};

struct bench {
	struct blockdev *b_bd;		/* (c) */
	enum mode b_mode;		/* (c) */
	size_t b_bs;			/* (c) */
	uint64_t b_blocks;		/* (c) bs-sized blocks in the range */
	atomic_bool b_stop;		/* (a) no more submissions */
	uint64_t b_next;		/* completion thread: next seq block */
	/* Completion thread only until b_lock/b_outstanding say done. */
	uint64_t b_ios, b_bytes, b_errors, b_lat_sum, b_lat_max;
	uint64_t b_hist[NBUCKETS];
	pthread_mutex_t b_lock;
	pthread_cond_t b_cv;		/* "drained" */
	unsigned b_outstanding;		/* (b_lock) */
	int b_first_error;		/* (b_lock) */
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

static unsigned
bucket_of(uint64_t v)
{
	unsigned msb;

	if (v < (1u << SUB_BITS))
		return ((unsigned)v);
	msb = 63 - (unsigned)__builtin_clzll(v);
	return ((msb << SUB_BITS) + (unsigned)((v >> (msb - SUB_BITS)) &
	    ((1u << SUB_BITS) - 1)));
}

/* The middle of bucket I, in ns. */
static double
bucket_value(unsigned i)
{
	unsigned msb = i >> SUB_BITS, sub = i & ((1u << SUB_BITS) - 1);
	double lo, width;

	if (i < (1u << SUB_BITS))
		return (i);
	width = (double)(1ull << (msb - SUB_BITS));
	lo = (double)(1ull << msb) + sub * width;
	return (lo + width / 2);
}

static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (*s);
}

static off_t
next_offset(struct bench *b, struct slot *s)
{
	uint64_t blk;

	if (b->b_mode == RANDREAD || b->b_mode == RANDWRITE)
		blk = xorshift(&s->s_rng) % b->b_blocks;
	else
		blk = b->b_next++ % b->b_blocks;
	return ((off_t)(blk * b->b_bs));
}

static void
bench_done(struct blockdev_req *req)
{
	struct slot *s = (struct slot *)req;
	struct bench *b = req->r_arg;
	uint64_t t = now_ns(), lat = t - s->s_start;
	int error;

	if (!atomic_load_explicit(&b->b_stop, memory_order_relaxed)) {
		if (req->r_error == 0) {
			b->b_ios++;
			b->b_bytes += req->r_bytes;
			b->b_lat_sum += lat;
			if (lat > b->b_lat_max)
				b->b_lat_max = lat;
			b->b_hist[bucket_of(lat)]++;
			req->r_offset = next_offset(b, s);
			s->s_start = t;
			if ((error = blockdev_submit(b->b_bd, req)) == 0)
				return;
		} else {
			error = req->r_error;
		}
		b->b_errors++;
		pthread_mutex_lock(&b->b_lock);
		if (b->b_first_error == 0)
			b->b_first_error = error;
		pthread_mutex_unlock(&b->b_lock);
	}
	pthread_mutex_lock(&b->b_lock);
	if (--b->b_outstanding == 0)
		pthread_cond_signal(&b->b_cv);
	pthread_mutex_unlock(&b->b_lock);
}

static double
percentile(const struct bench *b, double p)
{
	uint64_t want = (uint64_t)(p / 100.0 * (double)b->b_ios), seen = 0;
	unsigned i;

	for (i = 0; i < NBUCKETS; i++) {
		seen += b->b_hist[i];
		if (seen > want)
			return (bucket_value(i) / 1000.0);
	}
	return ((double)b->b_lat_max / 1000.0);
}

static int
parse_size(const char *arg, uint64_t *v)
{
	char *end;
	unsigned long long n = strtoull(arg, &end, 10);

	switch (*end) {
	case 'k': case 'K': n <<= 10; end++; break;
	case 'm': case 'M': n <<= 20; end++; break;
	case 'g': case 'G': n <<= 30; end++; break;
	}
	if (*end == 'i' || *end == 'b' || *end == 'B')
		end++;
	if (*end != '\0' || end == arg)
		return (EINVAL);
	*v = n;
	return (0);
}

static void
usage(void)
{
	fprintf(stderr, "usage: blockdev_bench --mode randread|randwrite|"
	    "seqread|seqwrite\n"
	    "           [--bs SIZE] [--qd N] [--runtime SECONDS] "
	    "[--size SIZE] IMAGE\n"
	    "Writing modes overwrite IMAGE.\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },
		{ "runtime", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *modes[] = { "randread", "randwrite", "seqread",
	    "seqwrite" };
	struct blockdev_opts o = { 0 };
	struct bench *b;
	struct slot *slots;
	uint64_t bs = 4096, qd = 32, size = 0, t0, t1;
	double runtime = 10, secs;
	char err[512];
	int c, error;
	unsigned i;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return (1);
	b->b_mode = RANDREAD;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			for (i = 0; i < 4 && strcmp(optarg, modes[i]); i++)
				continue;
			if (i == 4)
				usage();
			b->b_mode = (enum mode)i;
			break;
		case 'b':
			if (parse_size(optarg, &bs) != 0 || bs == 0)
				usage();
			break;
		case 'q':
			if (parse_size(optarg, &qd) != 0 || qd == 0)
				usage();
			break;
		case 'r':
			runtime = atof(optarg);
			break;
		case 's':
			if (parse_size(optarg, &size) != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || runtime <= 0)
		usage();

	o.o_queue_depth = (unsigned)qd;
	o.o_readonly = b->b_mode == RANDREAD || b->b_mode == SEQREAD;
	if ((error = blockdev_open(argv[optind], &o, &b->b_bd, err,
	    sizeof(err))) != 0) {
		fprintf(stderr, "blockdev_bench: %s\n", err);
		return (1);
	}
	if (size == 0 || size > blockdev_size(b->b_bd))
		size = blockdev_size(b->b_bd);
	if (bs % blockdev_align(b->b_bd) != 0 || size < bs) {
		fprintf(stderr, "blockdev_bench: --bs must be a multiple of "
		    "%u and at most the size\n", blockdev_align(b->b_bd));
		return (1);
	}
	b->b_bs = bs;
	b->b_blocks = size / bs;
	pthread_mutex_init(&b->b_lock, NULL);
	pthread_cond_init(&b->b_cv, NULL);
	if ((slots = calloc(qd, sizeof(*slots))) == NULL)
		return (1);

	for (i = 0; i < qd; i++) {
		struct slot *s = &slots[i];

		if ((s->s_iov.iov_base = blockdev_alloc_buf(b->b_bd, bs)) ==
		    NULL)
			return (1);
		memset(s->s_iov.iov_base, 0xa5 ^ i, bs);
		s->s_iov.iov_len = bs;
		s->s_rng = 0x9e3779b97f4a7c15ull * (i + 1);
		s->s_req.r_op = o.o_readonly ? BLOCKDEV_READ : BLOCKDEV_WRITE;
		s->s_req.r_iov = &s->s_iov;
		s->s_req.r_iovcnt = 1;
		s->s_req.r_done = bench_done;
		s->s_req.r_arg = b;
	}
	/*
	 * Offsets for the first QD requests are chosen here, before the
	 * completion thread can choose any: b_next is then its alone.
	 */
	for (i = 0; i < qd; i++)
		slots[i].s_req.r_offset = next_offset(b, &slots[i]);
	b->b_outstanding = (unsigned)qd;
	t0 = now_ns();
	for (i = 0; i < qd; i++) {
		slots[i].s_start = now_ns();
		if ((error = blockdev_submit(b->b_bd, &slots[i].s_req)) != 0) {
			fprintf(stderr, "blockdev_bench: submit: %s\n",
			    strerror(error));
			return (1);
		}
	}
	usleep((useconds_t)(runtime * 1e6));
	atomic_store(&b->b_stop, true);
	t1 = now_ns();
	pthread_mutex_lock(&b->b_lock);
	while (b->b_outstanding > 0)
		pthread_cond_wait(&b->b_cv, &b->b_lock);
	error = b->b_first_error;
	pthread_mutex_unlock(&b->b_lock);
	blockdev_close(b->b_bd);
	if (error != 0) {
		fprintf(stderr, "blockdev_bench: I/O error: %s\n",
		    strerror(error));
		return (1);
	}

	secs = (double)(t1 - t0) / 1e9;
	printf("%s bs=%llu qd=%llu runtime=%.1fs: %llu ios\n",
	    modes[b->b_mode], (unsigned long long)bs,
	    (unsigned long long)qd, secs, (unsigned long long)b->b_ios);
	printf("  IOPS %.0f  bandwidth %.1f MiB/s\n", (double)b->b_ios / secs,
	    (double)b->b_bytes / secs / 1048576.0);
	printf("  latency us: avg %.1f  p50 %.1f  p90 %.1f  p99 %.1f  "
	    "p99.9 %.1f  max %.1f\n",
	    b->b_ios ? (double)b->b_lat_sum / (double)b->b_ios / 1000.0 : 0,
	    percentile(b, 50), percentile(b, 90), percentile(b, 99),
	    percentile(b, 99.9), (double)b->b_lat_max / 1000.0);
	printf("RESULT mode=%s iops=%.0f mibps=%.1f p50_us=%.1f p99_us=%.1f\n",
	    modes[b->b_mode], (double)b->b_ios / secs,
	    (double)b->b_bytes / secs / 1048576.0, percentile(b, 50),
	    percentile(b, 99));
	for (i = 0; i < qd; i++)
		blockdev_free_buf(slots[i].s_iov.iov_base);
	free(slots);
	pthread_cond_destroy(&b->b_cv);
	pthread_mutex_destroy(&b->b_lock);
	free(b);
	return (0);
}
