/*
 * cache_bench.c - micro-benchmark of the buffer cache's two basic paths.
 *
 *   hit:  bread + bqrelse of blocks that are all cached (a RAM device, a
 *         working set well inside the cache), per second per thread, with
 *         1 and 2 threads picking random blocks of the same set;
 *   miss: random 4 KiB reads of an image file opened O_DIRECT, once through
 *         bread + brelse(B_NOCACHE) (every read goes to the device, and the
 *         buffer is destroyed after use) and once with blockdev_pread on
 *         the same device, same offsets, same count.  The difference is the
 *         cache's overhead on the miss path (getblk, getnewbuf, memory
 *         allocation, strategy, biodone, wakeup of the reader).  The same
 *         pair is also run on a RAM device without delay, where the
 *         device costs almost nothing and the overhead stands out.
 *
 * Usage: cache_bench [--seconds S] [--count N] [--image PATH] [--stats]
 *   --seconds  length of each hit run (default 2)
 *   --count    reads per miss run (default 20000)
 *   --image    image file to create and use (default ./cache_bench.img,
 *              128 MiB; must be on a filesystem with O_DIRECT, not tmpfs);
 *              it is removed afterwards
 *   --stats    after the runs, print every registry entry as "name value"
 *
 * A benchmark, not a test: it prints figures and checks nothing but errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "cache/buf.h"
#include "cache/bufstats.h"
#include "cache/vnode.h"

#define BSIZE		4096
#define HIT_BLOCKS	2048			/* 8 MiB working set */
#define HIT_CACHE	(64L * 1024 * 1024)
#define IMAGE_SIZE	(128L * 1024 * 1024)
#define MISS_CACHE	(16L * 1024 * 1024)

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static void
die(const char *what, int error)
{
	fprintf(stderr, "cache_bench: %s: %s\n", what, strerror(error));
	exit(1);
}

/* Every registry entry as "name value" lines (malloc'd; caller frees). */
static char *
snapshot_stats(void)
{
	size_t len = bufstat_format(NULL, 0) + 1;
	char *text = malloc(len);

	if (text == NULL)
		die("malloc", ENOMEM);
	bufstat_format(text, len);
	return text;
}

/* ---- hit path ------------------------------------------------------------ */

static struct vnode hitvn;
static int hit_stop;				/* (a) */

struct hitter {
	pthread_t	tid;
	uint64_t	rng;
	long		ops;
};

static void *
hitter_main(void *arg)
{
	struct hitter *h = arg;
	struct buf *bp;
	off_t off;
	int error;

	while (!__atomic_load_n(&hit_stop, __ATOMIC_RELAXED)) {
		off = (off_t)(rng_next(&h->rng) % HIT_BLOCKS) * BSIZE;
		error = bread(&hitvn, off, BSIZE, &bp);
		if (error)
			die("bread (hit)", error);
		bqrelse(bp);
		h->ops++;
	}
	return NULL;
}

static double
run_hits(int nthreads, double seconds)
{
	struct hitter h[2];
	long ops = 0;
	double t0, t;
	int i;

	__atomic_store_n(&hit_stop, 0, __ATOMIC_RELAXED);
	t0 = now_sec();
	for (i = 0; i < nthreads; i++) {
		h[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
		h[i].ops = 0;
		if (pthread_create(&h[i].tid, NULL, hitter_main, &h[i]) != 0)
			die("pthread_create", EAGAIN);
	}
	while (now_sec() - t0 < seconds)
		usleep(10000);
	__atomic_store_n(&hit_stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < nthreads; i++) {
		pthread_join(h[i].tid, NULL);
		ops += h[i].ops;
	}
	t = now_sec() - t0;
	return ops / t / nthreads;
}

static void
bench_hits(double seconds, double *per_thread1, double *per_thread2)
{
	struct bufinit_args args = { 0 };
	struct blockdev *bd;
	struct buf *bp;
	long before, after;
	int i, error;

	error = blockdev_open_ram(HIT_BLOCKS * (uint64_t)BSIZE, 4096, 0, 0, &bd);
	if (error)
		die("blockdev_open_ram", error);
	vn_devvp_init(&hitvn, bd);
	args.cache_size = HIT_CACHE;
	if ((error = bufinit(&args)) != 0)
		die("bufinit", error);

	/* Warm up: every block read once and kept. */
	for (i = 0; i < HIT_BLOCKS; i++) {
		if ((error = bread(&hitvn, (off_t)i * BSIZE, BSIZE, &bp)) != 0)
			die("bread (warm-up)", error);
		bqrelse(bp);
	}
	bufstat_get("cachemisses", &before);
	*per_thread1 = run_hits(1, seconds);
	*per_thread2 = run_hits(2, seconds);
	bufstat_get("cachemisses", &after);
	if (after != before)
		fprintf(stderr, "cache_bench: warning: %ld misses during the "
		    "hit runs\n", after - before);
	if ((error = buf_shutdown()) != 0)
		die("buf_shutdown", error);
	vn_uninit(&hitvn);
	blockdev_close(bd);
}

/* ---- miss path ----------------------------------------------------------- */

static void
make_image(const char *path)
{
	char *chunk;
	long done;
	int fd;

	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0)
		die(path, errno);
	chunk = malloc(1 << 20);
	if (chunk == NULL)
		die("malloc", ENOMEM);
	/* Real data, not holes: a hole would be read without device I/O. */
	for (done = 0; done < IMAGE_SIZE; done += 1 << 20) {
		memset(chunk, (int)(done >> 20) | 1, 1 << 20);
		if (write(fd, chunk, 1 << 20) != 1 << 20)
			die("write image", errno ? errno : EIO);
	}
	free(chunk);
	if (fsync(fd) != 0)
		die("fsync image", errno);
	close(fd);
}

static double
miss_raw(struct blockdev *bd, const off_t *offs, int count)
{
	void *mem = blockdev_alloc_buf(bd, BSIZE);
	double t0;
	int i, error;

	if (mem == NULL)
		die("blockdev_alloc_buf", ENOMEM);
	t0 = now_sec();
	for (i = 0; i < count; i++)
		if ((error = blockdev_pread(bd, mem, BSIZE, offs[i])) != 0)
			die("blockdev_pread", error);
	t0 = now_sec() - t0;
	blockdev_free_buf(mem);
	return t0 / count * 1e6;
}

static double
miss_cache(struct vnode *vp, const off_t *offs, int count)
{
	struct buf *bp;
	double t0;
	int i, error;

	t0 = now_sec();
	for (i = 0; i < count; i++) {
		if ((error = bread(vp, offs[i], BSIZE, &bp)) != 0)
			die("bread (miss)", error);
		bp->b_flags |= B_NOCACHE;
		brelse(bp);
	}
	return (now_sec() - t0) / count * 1e6;
}

/*
 * Time COUNT random reads at OFFS on BD, raw and through the cache (a
 * fresh cache on a device vnode over BD), alternating twice and keeping
 * each one's best run.  With STATS, snapshot the registry before shutdown.
 */
static void
miss_pair(struct blockdev *bd, const off_t *offs, int count, char **stats,
    double *raw_us, double *cache_us, long *misses)
{
	struct bufinit_args args = { 0 };
	struct vnode vn;
	long m0, m1;
	double r, c;
	int rep, error;

	vn_devvp_init(&vn, bd);
	args.cache_size = MISS_CACHE;
	if ((error = bufinit(&args)) != 0)
		die("bufinit", error);
	*raw_us = *cache_us = 1e30;
	bufstat_get("cachemisses", &m0);
	for (rep = 0; rep < 2; rep++) {
		r = miss_raw(bd, offs, count);
		c = miss_cache(&vn, offs, count);
		if (r < *raw_us)
			*raw_us = r;
		if (c < *cache_us)
			*cache_us = c;
	}
	bufstat_get("cachemisses", &m1);
	*misses = m1 - m0;
	if (stats != NULL)
		*stats = snapshot_stats();
	if ((error = buf_shutdown()) != 0)
		die("buf_shutdown", error);
	vn_uninit(&vn);
}

/*
 * The miss path on the image file (O_DIRECT: the device's latency is in
 * both figures) and on a RAM device of the same size without delay (the
 * cache's CPU cost alone, plus one completion-thread hand-off each way).
 */
static void
bench_misses(const char *path, int count, char **stats, double *img_raw,
    double *img_cache, double *ram_raw, double *ram_cache, long *misses)
{
	struct blockdev_opts opts = { 0 };
	struct blockdev *bd;
	char errbuf[256];
	uint64_t rng = 42;
	off_t *offs;
	long m;
	int i, error;

	offs = malloc(sizeof(*offs) * (size_t)count);
	if (offs == NULL)
		die("malloc", ENOMEM);
	for (i = 0; i < count; i++)
		offs[i] = (off_t)(rng_next(&rng) % (IMAGE_SIZE / BSIZE)) * BSIZE;

	error = blockdev_open_ram(IMAGE_SIZE, 4096, 0, 0, &bd);
	if (error)
		die("blockdev_open_ram", error);
	miss_pair(bd, offs, count, NULL, ram_raw, ram_cache, &m);
	blockdev_close(bd);

	make_image(path);
	error = blockdev_open(path, &opts, &bd, errbuf, sizeof(errbuf));
	if (error) {
		fprintf(stderr, "cache_bench: %s\n", errbuf);
		exit(1);
	}
	miss_pair(bd, offs, count, stats, img_raw, img_cache, misses);
	blockdev_close(bd);
	unlink(path);
	free(offs);
}

int
main(int argc, char **argv)
{
	const char *image = "cache_bench.img";
	double seconds = 2.0;
	int count = 20000;
	bool stats = false;
	char *stats_text = NULL;
	double h1, h2, raw_us, cache_us, ram_raw, ram_cache;
	long misses;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--stats") == 0)
			stats = true;
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = atoi(argv[++i]);
		else if (strcmp(argv[i], "--image") == 0 && i + 1 < argc)
			image = argv[++i];
		else {
			fprintf(stderr, "usage: cache_bench [--seconds S] "
			    "[--count N] [--image PATH] [--stats]\n");
			return 2;
		}
	}
	if (seconds <= 0 || count <= 0) {
		fprintf(stderr, "cache_bench: bad --seconds or --count\n");
		return 2;
	}

	bench_hits(seconds, &h1, &h2);
	bench_misses(image, count, stats ? &stats_text : NULL, &raw_us,
	    &cache_us, &ram_raw, &ram_cache, &misses);

	printf("\n| path | threads | figure |\n|---|---|---|\n");
	printf("| hit: bread+bqrelse | 1 | %.2f M ops/s per thread |\n",
	    h1 / 1e6);
	printf("| hit: bread+bqrelse | 2 | %.2f M ops/s per thread "
	    "(%.2f M total) |\n", h2 / 1e6, 2 * h2 / 1e6);
	printf("| miss, image O_DIRECT: blockdev_pread 4 KiB | 1 | %.1f us/read "
	    "|\n", raw_us);
	printf("| miss, image O_DIRECT: bread+brelse(B_NOCACHE) | 1 | %.1f "
	    "us/read |\n", cache_us);
	printf("| miss, image: cache overhead | 1 | %+.1f us/read (%+.1f%%) "
	    "|\n", cache_us - raw_us, (cache_us - raw_us) / raw_us * 100);
	printf("| miss, RAM device: blockdev_pread 4 KiB | 1 | %.1f us/read |\n",
	    ram_raw);
	printf("| miss, RAM device: bread+brelse(B_NOCACHE) | 1 | %.1f us/read "
	    "|\n", ram_cache);
	printf("| miss, RAM: cache overhead | 1 | %+.1f us/read |\n",
	    ram_cache - ram_raw);
	printf("\n%d random 4 KiB reads per run, best of 2; %ld misses counted "
	    "on the image (must be 2 x %d)\n", count, misses, count);
	if (stats_text != NULL) {
		printf("\nregistry after the miss runs:\n%s", stats_text);
		free(stats_text);
	}
	return 0;
}
