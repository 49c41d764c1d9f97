/*
 * check_blockdev.c - unit tests of blockdev/: both backends, the barrier,
 * the ring, short transfers, open errors and the test hooks.
 *
 * Most cases are loop tests over the two backends (_i == 0: RAM, _i == 1:
 * an image file on ext4 under /var/tmp).  Each TCase gets a fresh
 * temporary directory and every test a fresh device; check runs every test
 * in its own process (CK_FORK), so a crash fails one test only.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "blockdev/blockdev_impl.h"

#define TIMEOUT		120
#define DEVSIZE		(4u << 20)
#define BS		4096u
#define KIND_RAM	0
#define KIND_IMAGE	1

static char tmpdir[PATH_MAX];
static char shmpath[64];		/* a tmpfs file name for open_errors */

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return (remove(p));
}

/*
 * Unchecked fixtures: they run in the parent around each TCase's tests,
 * so the directory is removed even when a test dies half-way.
 */
static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/var/tmp/flyfs-bd-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(shmpath, sizeof(shmpath), "/dev/shm/flyfs-bd-%d",
	    (int)getpid());
}

static void
teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	unlink(shmpath);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/* Deterministic content: each 8-byte word names its offset and a seed. */
static void
fill(void *buf, size_t len, uint64_t off, uint64_t seed)
{
	uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		w[i] = (off + i * 8) * 0x9e3779b97f4a7c15ull ^ seed;
}

static bool
check_fill(const void *buf, size_t len, uint64_t off, uint64_t seed)
{
	const uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		if (w[i] != ((off + i * 8) * 0x9e3779b97f4a7c15ull ^ seed))
			return (false);
	return (true);
}

/* An image file of SIZE bytes, every block written (no holes). */
static void
make_image(const char *path, size_t size, uint64_t seed)
{
	size_t off, chunk = 1u << 20;
	void *buf = malloc(chunk);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	ck_assert_int_ge(fd, 0);
	for (off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		fill(buf, n, off, seed);
		ck_assert_int_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	ck_assert_int_eq(fsync(fd), 0);
	close(fd);
	free(buf);
}

static void
tmp_path(char *p, size_t len, const char *name)
{
	snprintf(p, len, "%s/%s", tmpdir, name);
}

/*
 * A fresh device of kind KIND: RAM filled with seed-1 content like the
 * image, so both kinds start with the same bytes.
 */
static struct blockdev *
open_kind(int kind, unsigned qdepth, uint64_t delay_ns)
{
	struct blockdev_opts o = { .o_queue_depth = qdepth };
	struct blockdev *bd;
	char path[PATH_MAX + 32], err[512];
	void *buf;

	if (kind == KIND_IMAGE) {
		tmp_path(path, sizeof(path), "image");
		make_image(path, DEVSIZE, 1);
		ck_assert_msg(blockdev_open(path, &o, &bd, err,
		    sizeof(err)) == 0, "open: %s", err);
		return (bd);
	}
	ck_assert_int_eq(blockdev_open_ram(DEVSIZE, 512, qdepth, delay_ns,
	    &bd), 0);
	buf = blockdev_alloc_buf(bd, DEVSIZE);
	fill(buf, DEVSIZE, 0, 1);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, DEVSIZE, 0), 0);
	blockdev_free_buf(buf);
	return (bd);
}

/* Completion counting for asynchronous requests. */
struct waitgroup {
	pthread_mutex_t wg_lock;
	pthread_cond_t wg_cv;
	int wg_done;
	int wg_errors;
	atomic_int wg_stamp;		/* completion order */
};
static struct waitgroup wg = {
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0
};

/* Per-request record for tests that look at completion order. */
struct treq {
	struct blockdev_req t_req;
	struct iovec t_iov;
	int t_stamp;
};

static void
wg_done(struct blockdev_req *req)
{
	struct treq *t = req->r_arg;

	if (t != NULL)
		t->t_stamp = atomic_fetch_add(&wg.wg_stamp, 1);
	pthread_mutex_lock(&wg.wg_lock);
	wg.wg_done++;
	if (req->r_error != 0)
		wg.wg_errors++;
	pthread_cond_broadcast(&wg.wg_cv);
	pthread_mutex_unlock(&wg.wg_lock);
}

static void
wg_wait(int n)
{
	pthread_mutex_lock(&wg.wg_lock);
	while (wg.wg_done < n)
		pthread_cond_wait(&wg.wg_cv, &wg.wg_lock);
	pthread_mutex_unlock(&wg.wg_lock);
}

static void
treq_prep(struct treq *t, enum blockdev_op op, void *buf, size_t len,
    off_t off)
{
	memset(t, 0, sizeof(*t));
	t->t_iov.iov_base = buf;
	t->t_iov.iov_len = len;
	t->t_req.r_op = op;
	t->t_req.r_offset = off;
	t->t_req.r_iov = op == BLOCKDEV_FLUSH ? NULL : &t->t_iov;
	t->t_req.r_iovcnt = op == BLOCKDEV_FLUSH ? 0 : 1;
	t->t_req.r_done = wg_done;
	t->t_req.r_arg = t;
	t->t_stamp = -1;
}

/* ---- reads and writes ------------------------------------------- */

START_TEST(test_read_write)
{
	struct blockdev *bd = open_kind(_i, 0, 0);
	struct blockdev_stats st;
	unsigned char *buf = blockdev_alloc_buf(bd, 64 * 1024);
	uint64_t hist = 0;
	int i;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(blockdev_size(bd), DEVSIZE);
	ck_assert_uint_ge(blockdev_align(bd), 512);
	/* The initial content is there. */
	ck_assert_int_eq(blockdev_pread(bd, buf, 64 * 1024, 128 * 1024), 0);
	ck_assert(check_fill(buf, 64 * 1024, 128 * 1024, 1));
	for (i = 0; i < 8; i++) {
		fill(buf, 64 * 1024, (uint64_t)i << 16, 7);
		ck_assert_int_eq(blockdev_pwrite(bd, buf, 64 * 1024,
		    (off_t)i << 16), 0);
	}
	ck_assert_int_eq(blockdev_flush(bd), 0);
	for (i = 7; i >= 0; i--) {
		memset(buf, 0, 64 * 1024);
		ck_assert_int_eq(blockdev_pread(bd, buf, 64 * 1024,
		    (off_t)i << 16), 0);
		ck_assert(check_fill(buf, 64 * 1024, (uint64_t)i << 16, 7));
	}
	/* The last block of the device is reachable. */
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, DEVSIZE - BS), 0);
	ck_assert(check_fill(buf, BS, DEVSIZE - BS, 1));

	blockdev_get_stats(bd, &st);
	ck_assert_uint_eq(st.writes, 8 + (_i == KIND_RAM));
	ck_assert_uint_eq(st.reads, 10);
	ck_assert_uint_eq(st.flushes, 1);
	ck_assert_uint_ge(st.syncs, 1);
	ck_assert_uint_eq(st.read_bytes, 9 * 64 * 1024 + BS);
	ck_assert_uint_eq(st.errors, 0);
	ck_assert_uint_eq(st.inflight, 0);
	for (i = 0; i < BLOCKDEV_LAT_BUCKETS; i++)
		hist += st.lat_hist[i];
	ck_assert_uint_eq(hist, st.reads + st.writes + st.flushes);
	ck_assert_uint_gt(st.lat_total_ns, 0);
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

START_TEST(test_vectored)
{
	struct blockdev *bd = open_kind(_i, 0, 0);
	unsigned char *seg[4], *big = blockdev_alloc_buf(bd, 4 * BS);
	struct iovec iov[4];
	struct treq t;
	int i;

	for (i = 0; i < 4; i++) {
		seg[i] = blockdev_alloc_buf(bd, BS);
		fill(seg[i], BS, 8 * BS + (uint64_t)i * BS, 3);
		iov[i].iov_base = seg[i];
		iov[i].iov_len = BS;
	}
	/* One request, four segments, scattered in memory. */
	treq_prep(&t, BLOCKDEV_WRITE, NULL, 0, 8 * BS);
	t.t_req.r_iov = iov;
	t.t_req.r_iovcnt = 4;
	ck_assert_int_eq(blockdev_submit(bd, &t.t_req), 0);
	wg_wait(1);
	ck_assert_int_eq(t.t_req.r_error, 0);
	ck_assert_uint_eq(t.t_req.r_bytes, 4 * BS);
	ck_assert_int_eq(blockdev_pread(bd, big, 4 * BS, 8 * BS), 0);
	ck_assert(check_fill(big, 4 * BS, 8 * BS, 3));

	/* And a gathering read of uneven segments: 4K, 8K, 4K. */
	iov[0].iov_base = seg[0];
	iov[0].iov_len = BS;
	iov[1].iov_base = big;
	iov[1].iov_len = 2 * BS;
	iov[2].iov_base = seg[3];
	iov[2].iov_len = BS;
	memset(big, 0, 4 * BS);
	memset(seg[0], 0, BS);
	memset(seg[3], 0, BS);
	treq_prep(&t, BLOCKDEV_READ, NULL, 0, 8 * BS);
	t.t_req.r_iov = iov;
	t.t_req.r_iovcnt = 3;
	ck_assert_int_eq(blockdev_submit(bd, &t.t_req), 0);
	wg_wait(2);
	ck_assert_int_eq(t.t_req.r_error, 0);
	ck_assert_uint_eq(t.t_req.r_bytes, 4 * BS);
	ck_assert(check_fill(seg[0], BS, 8 * BS, 3));
	ck_assert(check_fill(big, 2 * BS, 9 * BS, 3));
	ck_assert(check_fill(seg[3], BS, 11 * BS, 3));
	for (i = 0; i < 4; i++)
		blockdev_free_buf(seg[i]);
	blockdev_free_buf(big);
	blockdev_close(bd);
}
END_TEST

/* ---- refused requests ------------------------------------------- */

static int
submit_one(struct blockdev *bd, enum blockdev_op op, void *buf, size_t len,
    off_t off)
{
	struct treq t;

	treq_prep(&t, op, buf, len, off);
	return (blockdev_submit(bd, &t.t_req));
}

START_TEST(test_misaligned)
{
	struct blockdev *bd;
	unsigned a;
	unsigned char *buf;
	struct iovec iov[2];
	struct treq t;

	if (_i == KIND_RAM)
		ck_assert_int_eq(blockdev_open_ram(DEVSIZE, 4096, 0, 0, &bd),
		    0);
	else
		bd = open_kind(_i, 0, 0);
	a = blockdev_align(bd);
	buf = blockdev_alloc_buf(bd, 4 * a);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_READ, buf, a, a / 2),
	    EINVAL);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_READ, buf, a / 2, 0),
	    EINVAL);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_WRITE, buf + a / 2, a, 0),
	    EINVAL);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_READ, buf, a, -(off_t)a),
	    EINVAL);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_READ, buf, a, DEVSIZE),
	    EINVAL);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_WRITE, buf, 2 * a,
	    DEVSIZE - a), EINVAL);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_READ, buf, 0, 0), EINVAL);
	ck_assert_int_eq(submit_one(bd, (enum blockdev_op)9, buf, a, 0),
	    EINVAL);
	/* A bad segment anywhere in the vector refuses the whole request. */
	iov[0].iov_base = buf;
	iov[0].iov_len = a;
	iov[1].iov_base = buf + a + 8;
	iov[1].iov_len = a;
	treq_prep(&t, BLOCKDEV_WRITE, NULL, 0, 0);
	t.t_req.r_iov = iov;
	t.t_req.r_iovcnt = 2;
	ck_assert_int_eq(blockdev_submit(bd, &t.t_req), EINVAL);
	t.t_req.r_iovcnt = 0;
	ck_assert_int_eq(blockdev_submit(bd, &t.t_req), EINVAL);
	treq_prep(&t, BLOCKDEV_READ, buf, a, 0);
	t.t_req.r_done = NULL;
	ck_assert_int_eq(blockdev_submit(bd, &t.t_req), EINVAL);
	/* Refused requests never complete. */
	ck_assert_int_eq(blockdev_flush(bd), 0);
	ck_assert_int_eq(wg.wg_done, 0);
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* ---- fault injection -------------------------------------------- */

START_TEST(test_fault_count)
{
	struct blockdev *bd = open_kind(_i, 0, 0);
	struct blockdev_fault f = {
		.f_mode = BLOCKDEV_FAULT_COUNT, .f_ops = BLOCKDEV_FAULT_WRITES,
		.f_nth = 3, .f_count = 2,
	};
	unsigned char *buf = blockdev_alloc_buf(bd, BS);
	int i, err;

	blockdev_set_fault(bd, &f);
	for (i = 0; i < 8; i++) {
		fill(buf, BS, (uint64_t)i * BS, 5);
		/* Reads do not count towards a write fault. */
		ck_assert_int_eq(blockdev_pread(bd, buf, BS, 0), 0);
		fill(buf, BS, (uint64_t)i * BS, 5);
		err = blockdev_pwrite(bd, buf, BS, (off_t)i * BS);
		ck_assert_int_eq(err, i == 2 || i == 3 ? EIO : 0);
	}
	ck_assert_uint_eq(blockdev_faults_injected(bd), 2);
	for (i = 0; i < 8; i++) {
		ck_assert_int_eq(blockdev_pread(bd, buf, BS, (off_t)i * BS), 0);
		/* A failed write left the old content in place. */
		ck_assert(check_fill(buf, BS, (uint64_t)i * BS,
		    i == 2 || i == 3 ? 1 : 5));
	}

	/* A failed read leaves the caller's memory alone. */
	f.f_ops = BLOCKDEV_FAULT_READS;
	f.f_nth = 1;
	f.f_count = 1;
	blockdev_set_fault(bd, &f);
	memset(buf, 0xee, BS);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 0), EIO);
	ck_assert_uint_eq(buf[0], 0xee);
	ck_assert_uint_eq(buf[BS - 1], 0xee);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 0), 0);

	/* Barriers can fail too. */
	f.f_ops = BLOCKDEV_FAULT_FLUSH;
	blockdev_set_fault(bd, &f);
	ck_assert_int_eq(blockdev_flush(bd), EIO);
	ck_assert_int_eq(blockdev_flush(bd), 0);
	ck_assert_uint_eq(blockdev_faults_injected(bd), 4);

	blockdev_set_fault(bd, NULL);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, BS, 0), 0);
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

START_TEST(test_fault_range)
{
	struct blockdev *bd = open_kind(_i, 0, 0);
	struct blockdev_fault f = {
		.f_mode = BLOCKDEV_FAULT_RANGE,
		.f_ops = BLOCKDEV_FAULT_READS | BLOCKDEV_FAULT_WRITES |
		    BLOCKDEV_FAULT_FLUSH,
		.f_offset = 5 * BS, .f_len = BS,
	};
	unsigned char *buf = blockdev_alloc_buf(bd, 4 * BS);
	int i;

	blockdev_set_fault(bd, &f);
	for (i = 0; i < 8; i++) {
		fill(buf, BS, (uint64_t)i * BS, 6);
		ck_assert_int_eq(blockdev_pwrite(bd, buf, BS, (off_t)i * BS),
		    i == 5 ? EIO : 0);
	}
	/* Any overlap fails the whole request, and leaves the data. */
	fill(buf, 4 * BS, 3 * BS, 9);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, 4 * BS, 3 * BS), EIO);
	ck_assert_int_eq(blockdev_pread(bd, buf, 2 * BS, 4 * BS), EIO);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 4 * BS), 0);
	ck_assert(check_fill(buf, BS, 4 * BS, 6));
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 6 * BS), 0);
	ck_assert(check_fill(buf, BS, 6 * BS, 6));
	/* A barrier has no extent: a range never fails it. */
	ck_assert_int_eq(blockdev_flush(bd), 0);
	ck_assert_uint_eq(blockdev_faults_injected(bd), 3);

	blockdev_set_fault(bd, NULL);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 5 * BS), 0);
	ck_assert(check_fill(buf, BS, 5 * BS, 1));
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

START_TEST(test_fault_random)
{
	struct blockdev *bd = open_kind(_i, 0, 0);
	struct blockdev_fault f = {
		.f_mode = BLOCKDEV_FAULT_RANDOM, .f_ops = BLOCKDEV_FAULT_WRITES,
		.f_ppm = 300000, .f_seed = 42,
	};
	unsigned char *buf = blockdev_alloc_buf(bd, BS);
	bool failed[2][256];
	int round, i, n = 0;

	/* The same seed fails the same requests. */
	for (round = 0; round < 2; round++) {
		blockdev_set_fault(bd, &f);
		for (i = 0; i < 256; i++) {
			fill(buf, BS, (uint64_t)i * BS, 20 + round);
			failed[round][i] = blockdev_pwrite(bd, buf, BS,
			    (off_t)i * BS) == EIO;
		}
	}
	for (i = 0; i < 256; i++) {
		ck_assert(failed[0][i] == failed[1][i]);
		n += failed[0][i];
	}
	/* 30% of 256 is 77; a wide band keeps this about the mechanism. */
	ck_assert_int_gt(n, 40);
	ck_assert_int_lt(n, 120);
	ck_assert_uint_eq(blockdev_faults_injected(bd), 2 * (unsigned)n);
	blockdev_set_fault(bd, NULL);
	for (i = 0; i < 256; i++) {
		ck_assert_int_eq(blockdev_pread(bd, buf, BS, (off_t)i * BS), 0);
		ck_assert(check_fill(buf, BS, (uint64_t)i * BS,
		    failed[0][i] ? 1 : 21));
	}
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* ---- back-pressure ---------------------------------------------- */

#define BP_THREADS	8
#define BP_PER		25

static atomic_uint bp_max_seen;
static struct blockdev *bp_bd;

static void
bp_done(struct blockdev_req *req)
{
	struct blockdev_stats st;

	blockdev_get_stats(bp_bd, &st);
	if (st.inflight > atomic_load(&bp_max_seen))
		atomic_store(&bp_max_seen, (unsigned)st.inflight);
	wg_done(req);
}

static void *
bp_submitter(void *arg)
{
	intptr_t id = (intptr_t)arg;
	struct treq *t = calloc(BP_PER, sizeof(*t));
	unsigned char *buf = blockdev_alloc_buf(bp_bd, BP_PER * BS);
	int i;

	for (i = 0; i < BP_PER; i++) {
		off_t off = (off_t)(id * BP_PER + i) * BS;

		fill(buf + i * BS, BS, (uint64_t)off, 11);
		treq_prep(&t[i], BLOCKDEV_WRITE, buf + i * BS, BS, off);
		t[i].t_req.r_done = bp_done;
		ck_assert_int_eq(blockdev_submit(bp_bd, &t[i].t_req), 0);
	}
	/* The requests and buffers must live until they complete. */
	wg_wait(BP_THREADS * BP_PER);
	free(t);
	blockdev_free_buf(buf);
	return (NULL);
}

START_TEST(test_backpressure)
{
	pthread_t th[BP_THREADS];
	struct blockdev_stats st;
	struct rusage r0, r1;
	unsigned char *buf;
	uint64_t t0, wall, cpu;
	intptr_t i;

	bp_bd = open_kind(_i, 2, 2000000);
	getrusage(RUSAGE_SELF, &r0);
	t0 = now_ns();
	for (i = 0; i < BP_THREADS; i++)
		pthread_create(&th[i], NULL, bp_submitter, (void *)i);
	for (i = 0; i < BP_THREADS; i++)
		pthread_join(th[i], NULL);
	wall = now_ns() - t0;
	getrusage(RUSAGE_SELF, &r1);
	cpu = (uint64_t)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec +
	    r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000000000u +
	    (uint64_t)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec +
	    r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) * 1000u;

	blockdev_get_stats(bp_bd, &st);
	ck_assert_int_eq(wg.wg_done, BP_THREADS * BP_PER);
	ck_assert_int_eq(wg.wg_errors, 0);
	ck_assert_uint_le(atomic_load(&bp_max_seen), 2);
	ck_assert_uint_eq(st.max_inflight, 2);
	ck_assert_uint_gt(st.ring_waits, 0);
	ck_assert_uint_eq(st.writes, BP_THREADS * BP_PER + (_i == KIND_RAM));
	/* Sleeping, not spinning: 8 spinners would burn about 2 CPUs. */
	if (_i == KIND_RAM)
		ck_assert_msg(cpu < wall, "cpu %llu ns over wall %llu ns",
		    (unsigned long long)cpu, (unsigned long long)wall);
	/* Nothing was dropped. */
	buf = blockdev_alloc_buf(bp_bd, BP_THREADS * BP_PER * BS);
	ck_assert_int_eq(blockdev_pread(bp_bd, buf, BP_THREADS * BP_PER * BS,
	    0), 0);
	ck_assert(check_fill(buf, BP_THREADS * BP_PER * BS, 0, 11));
	blockdev_free_buf(buf);
	blockdev_close(bp_bd);
}
END_TEST

/* ---- barriers --------------------------------------------------- */

START_TEST(test_barrier_order)
{
	/*
	 * The RAM device's 50 ms delay dwarfs the time to submit all 17
	 * requests, even under TSan: the later writes are queued before the
	 * barrier's sync, which is queued only when the first 8 complete.
	 */
	struct blockdev *bd = open_kind(_i, 16, 50000000);
	struct treq t[17];
	struct blockdev_wlog_entry e;
	struct blockdev_stats st;
	unsigned char *buf = blockdev_alloc_buf(bd, 16 * BS);
	size_t n, k, flush_at = 0, before_seen = 0;
	bool later_first = false;
	int i;

	blockdev_wlog_start(bd);
	for (i = 0; i < 17; i++) {
		if (i == 8) {
			treq_prep(&t[i], BLOCKDEV_FLUSH, NULL, 0, 0);
		} else {
			int blk = i < 8 ? i : i - 1;

			fill(buf + blk * BS, BS, (uint64_t)blk * BS, 13);
			treq_prep(&t[i], BLOCKDEV_WRITE, buf + blk * BS, BS,
			    (off_t)blk * BS);
		}
		ck_assert_int_eq(blockdev_submit(bd, &t[i].t_req), 0);
	}
	wg_wait(17);
	ck_assert_int_eq(wg.wg_errors, 0);
	/* The barrier completed after every write submitted before it... */
	for (i = 0; i < 8; i++)
		ck_assert_int_lt(t[i].t_stamp, t[8].t_stamp);
	/* ...and did not hold back the writes submitted after it. */
	for (i = 9; i < 17; i++)
		later_first |= t[i].t_stamp < t[8].t_stamp;
	if (_i == KIND_RAM)
		ck_assert(later_first);

	/* The write log agrees: the barrier follows the first 8 writes. */
	n = blockdev_wlog_count(bd);
	ck_assert_uint_eq(n, 17);
	for (k = 0; k < n; k++) {
		ck_assert_int_eq(blockdev_wlog_get(bd, k, &e), 0);
		if (e.e_type == BLOCKDEV_WLOG_FLUSH) {
			flush_at = k;
			break;
		}
		if (e.e_offset < 8 * (off_t)BS)
			before_seen++;
	}
	ck_assert_uint_eq(before_seen, 8);
	ck_assert_uint_ge(flush_at, 8);

	/* Barriers with nothing before them complete, and may share syncs. */
	for (i = 0; i < 4; i++) {
		treq_prep(&t[i], BLOCKDEV_FLUSH, NULL, 0, 0);
		ck_assert_int_eq(blockdev_submit(bd, &t[i].t_req), 0);
	}
	wg_wait(21);
	blockdev_get_stats(bd, &st);
	ck_assert_uint_eq(st.flushes, 5);
	ck_assert_uint_ge(st.syncs, 1);
	ck_assert_uint_le(st.syncs, 5);
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* ---- concurrent submitters -------------------------------------- */

#define CC_THREADS	4
#define CC_BLOCKS	64

struct cc_arg {
	struct blockdev *bd;
	int id;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int done, errors;		/* (lock) */
};

static void
cc_done(struct blockdev_req *req)
{
	struct cc_arg *a = req->r_arg;

	pthread_mutex_lock(&a->lock);
	a->done++;
	if (req->r_error != 0)
		a->errors++;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->lock);
}

static void *
cc_thread(void *arg)
{
	struct cc_arg *a = arg;
	struct treq t[8];
	unsigned char *buf = blockdev_alloc_buf(a->bd, 8 * BS);
	int b, j, pass;

	/* Two passes over this thread's region, in batches of 8 requests. */
	for (pass = 0; pass < 2; pass++) {
		for (b = 0; b < CC_BLOCKS; b += 8) {
			pthread_mutex_lock(&a->lock);
			a->done = 0;
			pthread_mutex_unlock(&a->lock);
			for (j = 0; j < 8; j++) {
				off_t off = (off_t)(a->id * CC_BLOCKS + b + j) *
				    BS;

				fill(buf + j * BS, BS, (uint64_t)off,
				    100 + (uint64_t)pass);
				treq_prep(&t[j], BLOCKDEV_WRITE, buf + j * BS,
				    BS, off);
				t[j].t_req.r_done = cc_done;
				t[j].t_req.r_arg = a;
				ck_assert_int_eq(blockdev_submit(a->bd,
				    &t[j].t_req), 0);
			}
			pthread_mutex_lock(&a->lock);
			while (a->done < 8)
				pthread_cond_wait(&a->cv, &a->lock);
			pthread_mutex_unlock(&a->lock);
		}
	}
	for (b = 0; b < CC_BLOCKS; b++) {
		off_t off = (off_t)(a->id * CC_BLOCKS + b) * BS;

		ck_assert_int_eq(blockdev_pread(a->bd, buf, BS, off), 0);
		ck_assert(check_fill(buf, BS, (uint64_t)off, 101));
	}
	blockdev_free_buf(buf);
	return (NULL);
}

START_TEST(test_concurrent)
{
	struct blockdev *bd = open_kind(_i, 8, 0);
	struct cc_arg a[CC_THREADS];
	pthread_t th[CC_THREADS];
	struct blockdev_stats st;
	unsigned char *buf;
	int i;

	for (i = 0; i < CC_THREADS; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].bd = bd;
		a[i].id = i;
		pthread_mutex_init(&a[i].lock, NULL);
		pthread_cond_init(&a[i].cv, NULL);
		pthread_create(&th[i], NULL, cc_thread, &a[i]);
	}
	for (i = 0; i < CC_THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(a[i].errors, 0);
	}
	blockdev_get_stats(bd, &st);
	ck_assert_uint_le(st.max_inflight, 8);
	buf = blockdev_alloc_buf(bd, CC_THREADS * CC_BLOCKS * BS);
	ck_assert_int_eq(blockdev_pread(bd, buf, CC_THREADS * CC_BLOCKS * BS,
	    0), 0);
	ck_assert(check_fill(buf, CC_THREADS * CC_BLOCKS * BS, 0, 101));
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* ---- short transfers -------------------------------------------- */

static pthread_t wr_done_on;		/* thread that ran the last r_done */

static void
wr_done(struct blockdev_req *req)
{
	wr_done_on = pthread_self();
	wg_done(req);
}

/*
 * Submit a waited read of LEN bytes at OFF into BUF and reap it the way
 * biowait() does.  Returns whether r_done ran on this thread.
 */
static bool
waited_read(struct blockdev *bd, struct treq *t, void *buf, size_t len,
    off_t off, int nth)
{
	bool reaped = false;

	treq_prep(t, BLOCKDEV_READ, buf, len, off);
	t->t_req.r_flags = BLOCKDEV_REQ_WAITED;
	t->t_req.r_done = wr_done;
	ck_assert_int_eq(blockdev_submit(bd, &t->t_req), 0);
	while (blockdev_reap_own())
		reaped = true;
	wg_wait(nth);
	return (reaped && pthread_equal(wr_done_on, pthread_self()));
}


START_TEST(test_short_read)
{
	struct blockdev *bd = open_kind(KIND_IMAGE, 0, 0);
	char path[PATH_MAX + 32];
	unsigned char *buf = blockdev_alloc_buf(bd, 64 * 1024);
	struct blockdev_stats st;
	struct treq t;

	/*
	 * Shrink the file under the open device: the request is in range
	 * for the device but the file now ends inside it.
	 */
	tmp_path(path, sizeof(path), "image");
	ck_assert_int_eq(truncate(path, 512 * 1024), 0);
	if (_i == 0) {
		treq_prep(&t, BLOCKDEV_READ, buf, 64 * 1024, 480 * 1024);
		ck_assert_int_eq(blockdev_submit(bd, &t.t_req), 0);
		wg_wait(1);
	} else {
		/* Waited: continued, and ended, on this thread. */
		ck_assert(waited_read(bd, &t, buf, 64 * 1024, 480 * 1024, 1));
	}
	ck_assert_int_eq(t.t_req.r_error, EIO);
	ck_assert_uint_eq(t.t_req.r_bytes, 32 * 1024);
	ck_assert(check_fill(buf, 32 * 1024, 480 * 1024, 1));
	blockdev_get_stats(bd, &st);
	ck_assert_uint_ge(st.short_retries, 1);
	ck_assert_uint_eq(st.errors, 1);
	ck_assert_uint_eq(st.own_reads, (uint64_t)_i);

	/* An end that is not on a block boundary cannot be continued. */
	ck_assert_int_eq(truncate(path, 512 * 1024 + 1000), 0);
	treq_prep(&t, BLOCKDEV_READ, buf, 8 * 1024, 512 * 1024);
	ck_assert_int_eq(blockdev_submit(bd, &t.t_req), 0);
	wg_wait(2);
	ck_assert_int_eq(t.t_req.r_error, EIO);
	ck_assert_uint_eq(t.t_req.r_bytes, 1000);

	/* Entirely past the end: nothing transferred, still an error. */
	treq_prep(&t, BLOCKDEV_READ, buf, BS, 1024 * 1024);
	ck_assert_int_eq(blockdev_submit(bd, &t.t_req), 0);
	wg_wait(3);
	ck_assert_int_eq(t.t_req.r_error, EIO);
	ck_assert_uint_eq(t.t_req.r_bytes, 0);
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* ---- write log -------------------------------------------------- */

static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (*s);
}

/* Apply log entries [0, n) to MODEL, as replay should. */
static void
model_apply(struct blockdev *bd, size_t n, unsigned char *model)
{
	struct blockdev_wlog_entry e;
	size_t i;

	for (i = 0; i < n; i++) {
		ck_assert_int_eq(blockdev_wlog_get(bd, i, &e), 0);
		if (e.e_type == BLOCKDEV_WLOG_WRITE)
			memcpy(model + e.e_offset, e.e_data, e.e_len);
	}
}

/* A replica of the initial content (seed 1) of the same kind. */
static struct blockdev *
replica(int kind, const char *name)
{
	struct blockdev *bd;
	char path[PATH_MAX + 32], err[512];
	void *buf;

	if (kind == KIND_IMAGE) {
		tmp_path(path, sizeof(path), name);
		make_image(path, DEVSIZE, 1);
		ck_assert_msg(blockdev_open(path, NULL, &bd, err,
		    sizeof(err)) == 0, "%s", err);
		return (bd);
	}
	ck_assert_int_eq(blockdev_open_ram(DEVSIZE, 512, 0, 0, &bd), 0);
	buf = blockdev_alloc_buf(bd, DEVSIZE);
	fill(buf, DEVSIZE, 0, 1);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, DEVSIZE, 0), 0);
	blockdev_free_buf(buf);
	return (bd);
}

START_TEST(test_wlog_replay)
{
	struct blockdev *bd = open_kind(_i, 16, 0), *dst;
	unsigned char *buf = blockdev_alloc_buf(bd, 32 * 8 * BS);
	unsigned char *img = blockdev_alloc_buf(bd, DEVSIZE);
	unsigned char *got = blockdev_alloc_buf(bd, DEVSIZE);
	unsigned char *model = malloc(DEVSIZE);
	struct treq t[33];
	uint64_t s = 12345;
	size_t n, cut;
	int batch, i, submitted = 0, writes = 0;

	blockdev_wlog_start(bd);
	for (batch = 0; batch < 4; batch++) {
		for (i = 0; i < 32; i++) {
			/*
			 * Writes in flight together do not overlap (their
			 * order on disk would be unspecified); batches do.
			 */
			size_t len = (rnd(&s) % 8 + 1) * BS;
			off_t off = (off_t)i * (DEVSIZE / 32) +
			    (off_t)(rnd(&s) % (DEVSIZE / 32 / BS - 8)) * BS;

			fill(buf + i * 8 * BS, len, (uint64_t)off,
			    rnd(&s) & ~7ull);
			treq_prep(&t[i], BLOCKDEV_WRITE, buf + i * 8 * BS,
			    len, off);
			ck_assert_int_eq(blockdev_submit(bd, &t[i].t_req), 0);
			writes++;
		}
		treq_prep(&t[32], BLOCKDEV_FLUSH, NULL, 0, 0);
		ck_assert_int_eq(blockdev_submit(bd, &t[32].t_req), 0);
		submitted += 33;
		wg_wait(submitted);
	}
	blockdev_wlog_stop(bd);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, BS, 0), 0);
	n = blockdev_wlog_count(bd);
	ck_assert_uint_eq(n, (size_t)writes + 4);
	ck_assert_int_eq(blockdev_pread(bd, img, DEVSIZE, 0), 0);

	/* Replaying everything rebuilds the image (bar the unlogged write). */
	dst = replica(_i, "replica0");
	ck_assert_int_eq(blockdev_wlog_replay(bd, n, dst), 0);
	ck_assert_int_eq(blockdev_pwrite(dst, buf, BS, 0), 0);
	ck_assert_int_eq(blockdev_pread(dst, got, DEVSIZE, 0), 0);
	ck_assert(memcmp(got, img, DEVSIZE) == 0);
	blockdev_close(dst);

	/* Any prefix rebuilds the image as it was after that entry. */
	for (cut = 1; cut < n; cut += n / 3) {
		dst = replica(_i, cut % 2 ? "replica1" : "replica2");
		ck_assert_int_eq(blockdev_wlog_replay(bd, cut, dst), 0);
		fill(model, DEVSIZE, 0, 1);
		model_apply(bd, cut, model);
		ck_assert_int_eq(blockdev_pread(dst, got, DEVSIZE, 0), 0);
		ck_assert(memcmp(got, model, DEVSIZE) == 0);
		blockdev_close(dst);
	}
	ck_assert_int_eq(blockdev_wlog_replay(bd, n + 1, bd), EINVAL);
	blockdev_wlog_clear(bd);
	ck_assert_uint_eq(blockdev_wlog_count(bd), 0);
	free(model);
	blockdev_free_buf(got);
	blockdev_free_buf(img);
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* ---- power cut -------------------------------------------------- */

START_TEST(test_powercut)
{
	struct blockdev *bd = open_kind(_i, 0, 0);
	unsigned char *buf = blockdev_alloc_buf(bd, BS);
	struct blockdev_stats st0, st1;
	int i;

	ck_assert_int_eq(blockdev_flush(bd), 0);
	blockdev_set_powercut(bd, 5);
	for (i = 0; i < 16; i++) {
		fill(buf, BS, (uint64_t)i * BS, 30);
		ck_assert_int_eq(blockdev_pwrite(bd, buf, BS, (off_t)i * BS),
		    0);
	}
	ck_assert_uint_eq(blockdev_writes_dropped(bd), 11);
	/* A barrier after the cut succeeds without syncing. */
	blockdev_get_stats(bd, &st0);
	ck_assert_int_eq(blockdev_flush(bd), 0);
	blockdev_get_stats(bd, &st1);
	ck_assert_uint_eq(st1.syncs, st0.syncs);
	ck_assert_uint_eq(st1.flushes, st0.flushes + 1);
	for (i = 0; i < 16; i++) {
		ck_assert_int_eq(blockdev_pread(bd, buf, BS, (off_t)i * BS), 0);
		ck_assert(check_fill(buf, BS, (uint64_t)i * BS,
		    i < 5 ? 30 : 1));
	}
	/* Power restored. */
	blockdev_set_powercut(bd, -1);
	fill(buf, BS, 15 * BS, 31);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, BS, 15 * BS), 0);
	ck_assert_int_eq(blockdev_flush(bd), 0);
	blockdev_get_stats(bd, &st0);
	ck_assert_uint_eq(st0.syncs, st1.syncs + 1);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 15 * BS), 0);
	ck_assert(check_fill(buf, BS, 15 * BS, 31));
	ck_assert_uint_eq(blockdev_writes_dropped(bd), 11);

	/* N = 0: nothing after the call reaches the device. */
	blockdev_set_powercut(bd, 0);
	fill(buf, BS, 0, 32);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, BS, 0), 0);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 0), 0);
	ck_assert(check_fill(buf, BS, 0, 30));
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* ---- errors at open --------------------------------------------- */

START_TEST(test_open_errors)
{
	struct blockdev_opts o = { 0 };
	struct blockdev *bd;
	struct blockdev_stats st;
	char path[PATH_MAX + 32], err[512];
	void *buf;
	int fd;

	tmp_path(path, sizeof(path), "missing");
	ck_assert_int_eq(blockdev_open(path, NULL, &bd, err, sizeof(err)),
	    ENOENT);
	ck_assert_ptr_null(bd);
	ck_assert_msg(strstr(err, path) && strstr(err, "does not exist"),
	    "%s", err);

	tmp_path(path, sizeof(path), "odd");
	make_image(path, 1024 * 1024, 1);
	ck_assert_int_eq(truncate(path, 1024 * 1024 + 100), 0);
	ck_assert_int_eq(blockdev_open(path, NULL, &bd, err, sizeof(err)),
	    EINVAL);
	ck_assert_msg(strstr(err, path) && strstr(err, "not a multiple") &&
	    strstr(err, "truncate"), "%s", err);

	ck_assert_int_eq(blockdev_open(tmpdir, NULL, &bd, err, sizeof(err)),
	    EISDIR);
	ck_assert_msg(strstr(err, tmpdir) && strstr(err, "directory"), "%s",
	    err);

	o.o_queue_depth = 1u << 20;
	tmp_path(path, sizeof(path), "image");
	make_image(path, 1024 * 1024, 1);
	ck_assert_int_eq(blockdev_open(path, &o, &bd, err, sizeof(err)),
	    EINVAL);
	ck_assert_msg(strstr(err, "queue depth"), "%s", err);

	/* Read-only: writes refused with EROFS before reaching r_done. */
	o.o_queue_depth = 0;
	o.o_readonly = true;
	ck_assert_int_eq(blockdev_open(path, &o, &bd, err, sizeof(err)), 0);
	ck_assert_int_eq(submit_one(bd, BLOCKDEV_WRITE, err, 512, 0), EROFS);
	blockdev_close(bd);

	/* tmpfs: refused, unless a test asks for the buffered fallback. */
	snprintf(path, sizeof(path), "%s", shmpath);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1024 * 1024), 0);
	close(fd);
	ck_assert_int_eq(blockdev_open(path, NULL, &bd, err, sizeof(err)),
	    EINVAL);
	ck_assert_msg(strstr(err, path) && strstr(err, "tmpfs") &&
	    strstr(err, "ext4"), "%s", err);
	o.o_readonly = false;
	o.o_allow_buffered = true;
	ck_assert_int_eq(blockdev_open(path, &o, &bd, err, sizeof(err)), 0);
	blockdev_get_stats(bd, &st);
	ck_assert(st.buffered_fallback);
	ck_assert_int_eq(blockdev_pwrite(bd, path + 1, 512, 512), EINVAL);
	buf = blockdev_alloc_buf(bd, BS);
	fill(buf, BS, BS, 40);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, BS, BS), 0);
	memset(buf, 0, BS);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, BS), 0);
	ck_assert(check_fill(buf, BS, BS, 40));
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/*
 * A file the caller may not write.  Root may write anything, so when run
 * as root a child drops to nobody first.
 */
START_TEST(test_open_readonly_file)
{
	char path[PATH_MAX + 32], err[512] = "";
	struct blockdev *bd;
	int pfd[2], status, error = 0;
	pid_t pid;

	tmp_path(path, sizeof(path), "ro");
	make_image(path, 1024 * 1024, 1);
	ck_assert_int_eq(chmod(path, 0444), 0);
	ck_assert_int_eq(chmod(tmpdir, 0755), 0);
	ck_assert_int_eq(pipe(pfd), 0);
	if ((pid = fork()) == 0) {
		if (geteuid() == 0 && (setgid(65534) != 0 ||
		    setuid(65534) != 0))
			_exit(2);
		error = blockdev_open(path, NULL, &bd, err, sizeof(err));
		if (write(pfd[1], &error, sizeof(error)) < 0 ||
		    write(pfd[1], err, sizeof(err)) < 0)
			_exit(3);
		_exit(0);
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &error, sizeof(error)),
	    sizeof(error));
	ck_assert_int_eq(read(pfd[0], err, sizeof(err)), sizeof(err));
	waitpid(pid, &status, 0);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(error, EACCES);
	ck_assert_msg(strstr(err, path) && strstr(err, "for writing") &&
	    strstr(err, "read-only"), "%s", err);
}
END_TEST

/* ---- shutdown --------------------------------------------------- */

static atomic_int sd_accepted, sd_refused, sd_called;

static void
sd_done(struct blockdev_req *req)
{
	/* A slow callback: close must wait for it to return. */
	usleep(200);
	atomic_fetch_add(&sd_called, 1);
}

static void *
sd_submitter(void *arg)
{
	struct blockdev *bd = arg;
	struct treq *t = calloc(16, sizeof(*t));
	static unsigned char buf[BS] __attribute__((aligned(4096)));
	int i, err;

	for (i = 0; i < 16; i++) {
		treq_prep(&t[i], BLOCKDEV_READ, buf, BS, (off_t)i * BS);
		t[i].t_req.r_done = sd_done;
		err = blockdev_submit(bd, &t[i].t_req);
		if (err != 0) {
			ck_assert_int_eq(err, ESHUTDOWN);
			atomic_fetch_add(&sd_refused, 1);
			break;
		}
		atomic_fetch_add(&sd_accepted, 1);
	}
	/* The requests must outlive their completion: main frees them. */
	return (t);
}

START_TEST(test_shutdown_ram)
{
	struct blockdev *bd;
	struct blockdev_stats st;
	pthread_t th[4];
	int i;

	/*
	 * A slow device: the ring fills at once and all four submitters
	 * sleep on it long before the first request completes, so close
	 * meets requests in flight and submitters asleep.
	 */
	ck_assert_int_eq(blockdev_open_ram(DEVSIZE, 512, 4, 200000000, &bd),
	    0);
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, sd_submitter, bd);
	do {
		usleep(1000);
		blockdev_get_stats(bd, &st);
	} while (st.ring_waits < 4);
	blockdev_close(bd);
	ck_assert_int_eq(atomic_load(&sd_called), atomic_load(&sd_accepted));
	for (i = 0; i < 4; i++) {
		void *t;

		pthread_join(th[i], &t);
		free(t);
	}
	ck_assert_int_eq(atomic_load(&sd_accepted), 4);
	ck_assert_int_eq(atomic_load(&sd_refused), 4);
}
END_TEST

START_TEST(test_shutdown_image)
{
	struct blockdev *bd = open_kind(KIND_IMAGE, 8, 0);
	struct treq *t = calloc(64, sizeof(*t));
	unsigned char *buf = blockdev_alloc_buf(bd, 64 * BS);
	int i;

	for (i = 0; i < 64; i++) {
		treq_prep(&t[i], i % 9 == 8 ? BLOCKDEV_FLUSH : BLOCKDEV_WRITE,
		    buf + i * BS, BS, (off_t)i * BS);
		t[i].t_req.r_done = sd_done;
		ck_assert_int_eq(blockdev_submit(bd, &t[i].t_req), 0);
	}
	blockdev_close(bd);
	ck_assert_int_eq(atomic_load(&sd_called), 64);
	free(t);
	blockdev_free_buf(buf);
}
END_TEST

/* ---- submitting from the completion thread ---------------------- */

static struct blockdev *cb_bd;
static atomic_int cb_chain;
static struct treq cb_t[200];
static unsigned char cb_buf[BS] __attribute__((aligned(4096)));

static void
cb_done(struct blockdev_req *req)
{
	int i, k;

	/* Each completion submits up to three more: the ring overflows. */
	for (k = 0; k < 3; k++) {
		i = atomic_fetch_add(&cb_chain, 1);
		if (i >= 200)
			break;
		treq_prep(&cb_t[i], BLOCKDEV_READ, cb_buf, BS, 0);
		cb_t[i].t_req.r_done = cb_done;
		ck_assert_int_eq(blockdev_submit(cb_bd, &cb_t[i].t_req), 0);
	}
	/* A synchronous helper here would wait for itself. */
	ck_assert_int_eq(blockdev_pread(cb_bd, cb_buf, BS, 0), EDEADLK);
	wg_done(req);
}

START_TEST(test_submit_from_callback)
{
	struct blockdev_stats st;

	cb_bd = open_kind(_i, 1, 0);
	atomic_store(&cb_chain, 1);
	treq_prep(&cb_t[0], BLOCKDEV_READ, cb_buf, BS, 0);
	cb_t[0].t_req.r_done = cb_done;
	ck_assert_int_eq(blockdev_submit(cb_bd, &cb_t[0].t_req), 0);
	wg_wait(200);
	blockdev_get_stats(cb_bd, &st);
	ck_assert_uint_le(st.max_inflight, 1);
	ck_assert_int_eq(wg.wg_errors, 0);
	blockdev_close(cb_bd);
}
END_TEST

/* ---- waited reads (BLOCKDEV_REQ_WAITED) ------------------------- */

START_TEST(test_waited_read)
{
	struct blockdev *bd = open_kind(_i, 0, 0);
	unsigned char *buf = blockdev_alloc_buf(bd, 64 * 1024);
	struct blockdev_fault f = { 0 };
	struct blockdev_stats st;
	struct treq t;
	bool mine;

	/* Nothing of this thread's is in flight. */
	ck_assert(!blockdev_reap_own());

	/* On an idle image, completed on this thread; RAM ignores the flag. */
	mine = waited_read(bd, &t, buf, 64 * 1024, 192 * 1024, 1);
	ck_assert_int_eq(t.t_req.r_error, 0);
	ck_assert_uint_eq(t.t_req.r_bytes, 64 * 1024);
	ck_assert(check_fill(buf, 64 * 1024, 192 * 1024, 1));
	ck_assert(mine == (_i == KIND_IMAGE));
	blockdev_get_stats(bd, &st);
	ck_assert_uint_eq(st.own_reads, _i == KIND_IMAGE ? 1 : 0);
	ck_assert_uint_eq(st.inflight, 0);

	/* A hook's verdict wins: the failure comes from the completion thread. */
	f.f_mode = BLOCKDEV_FAULT_COUNT;
	f.f_ops = BLOCKDEV_FAULT_READS;
	f.f_nth = 1;
	f.f_count = 1;
	blockdev_set_fault(bd, &f);
	mine = waited_read(bd, &t, buf, BS, 0, 2);
	ck_assert(!mine);
	ck_assert_int_eq(t.t_req.r_error, EIO);

	/* The synchronous helper reads the same way. */
	f.f_mode = BLOCKDEV_FAULT_OFF;
	blockdev_set_fault(bd, &f);
	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 5 * BS), 0);
	ck_assert(check_fill(buf, BS, 5 * BS, 1));
	blockdev_get_stats(bd, &st);
	ck_assert_uint_eq(st.own_reads, _i == KIND_IMAGE ? 2 : 0);
	ck_assert_uint_eq(st.reads, 3);
	ck_assert_uint_eq(st.errors, 1);
	ck_assert(!blockdev_reap_own());
	blockdev_free_buf(buf);
	blockdev_close(bd);
}
END_TEST

/* Aio contexts of this process: each maps its ring as "[aio]". */
static int
aio_maps(void)
{
	FILE *fp = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;

	ck_assert_ptr_nonnull(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, "[aio]") != NULL)
			n++;
	fclose(fp);
	return (n);
}

/*
 * Threads reading with the synchronous helper and checking what they
 * read: one after another, each with a context of its own that goes when
 * it exits; then all at once (a busy device sends waited reads through
 * the shared context).
 */
#define WR_SERIAL	20
#define WR_THREADS	8
#define WR_READS	300
static struct blockdev *wr_bd;

static void *
wr_reader(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg, i;
	unsigned char *buf = blockdev_alloc_buf(wr_bd, BS);
	uint64_t off;
	bool ok = true;

	for (i = 0; i < (n ? WR_READS : 1) && ok; i++) {
		off = ((uint64_t)(n * 7919 + i * 104729) % (DEVSIZE / BS)) *
		    BS;
		ok = blockdev_pread(wr_bd, buf, BS, (off_t)off) == 0 &&
		    check_fill(buf, BS, off, 1) && !blockdev_reap_own();
	}
	blockdev_free_buf(buf);
	return ((void *)(uintptr_t)ok);
}

START_TEST(test_waited_threads)
{
	pthread_t th[WR_THREADS];
	struct blockdev_stats st;
	int i, maps;
	void *ok;

	wr_bd = open_kind(KIND_IMAGE, 0, 0);
	maps = aio_maps();
	ck_assert_int_ge(maps, 1);
	for (i = 0; i < WR_SERIAL; i++) {
		ck_assert_int_eq(pthread_create(&th[0], NULL, wr_reader,
		    NULL), 0);
		ck_assert_int_eq(pthread_join(th[0], &ok), 0);
		ck_assert(ok != NULL);
	}
	blockdev_get_stats(wr_bd, &st);
	ck_assert_uint_eq(st.own_reads, WR_SERIAL);
	ck_assert_int_eq(aio_maps(), maps);

	for (i = 0; i < WR_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, wr_reader,
		    (void *)(uintptr_t)(i + 1)), 0);
	for (i = 0; i < WR_THREADS; i++) {
		ck_assert_int_eq(pthread_join(th[i], &ok), 0);
		ck_assert(ok != NULL);
	}
	blockdev_get_stats(wr_bd, &st);
	ck_assert_uint_eq(st.reads, WR_SERIAL + WR_THREADS * WR_READS);
	ck_assert_uint_gt(st.own_reads, WR_SERIAL);
	ck_assert_uint_eq(st.errors, 0);
	ck_assert_uint_eq(st.inflight, 0);
	blockdev_close(wr_bd);
}
END_TEST

#if !defined(__SANITIZE_THREAD__)
/*
 * fork() after waited reads: the child inherits the thread's record of
 * its private context but not the context; its reads must still work.
 * The device is closed first, as the daemon forks before any thread
 * exists: a child of a threaded parent may call only async-signal-safe
 * functions, and under ASan its first malloc can block for ever on an
 * allocator lock that one of the parent's threads held at the fork.
 */
START_TEST(test_waited_read_fork)
{
	struct blockdev *bd = open_kind(KIND_IMAGE, 0, 0), *cbd;
	unsigned char *buf = blockdev_alloc_buf(bd, BS);
	char path[PATH_MAX + 32];
	struct blockdev_stats st;
	pid_t pid;
	int status;

	ck_assert_int_eq(blockdev_pread(bd, buf, BS, 3 * BS), 0);
	blockdev_get_stats(bd, &st);
	ck_assert_uint_eq(st.own_reads, 1);
	blockdev_close(bd);	/* the record is the thread's, not bd's */
	tmp_path(path, sizeof(path), "image");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The parent's device has no threads here: open another. */
		if (blockdev_open(path, NULL, &cbd, NULL, 0) != 0 ||
		    blockdev_pread(cbd, buf, BS, 7 * BS) != 0 ||
		    !check_fill(buf, BS, 7 * BS, 1))
			_exit(1);
		blockdev_get_stats(cbd, &st);
		blockdev_close(cbd);
		_exit(st.own_reads == 1 ? 0 : 2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	blockdev_free_buf(buf);
}
END_TEST
#endif /* !__SANITIZE_THREAD__ */

/* ---- alignment ---------------------------------------------------- */

START_TEST(test_align_probe)
{
	char path[PATH_MAX + 32];
	struct blockdev *bd;
	struct statx stx;
	unsigned a;
	int fd;

	tmp_path(path, sizeof(path), "image");
	make_image(path, 1024 * 1024, 1);
	fd = open(path, O_RDONLY | O_DIRECT);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bd_probe_dio_align(fd, &a), 0);
	ck_assert(a >= 512 && a <= 4096 && (a & (a - 1)) == 0);
	ck_assert_int_eq(statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx),
	    0);
	if ((stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0)
		ck_assert_uint_eq(a, stx.stx_dio_offset_align < 512 ? 512 :
		    stx.stx_dio_offset_align);
	close(fd);
	ck_assert_int_eq(blockdev_open(path, NULL, &bd, NULL, 0), 0);
	ck_assert_uint_ge(blockdev_align(bd), a);
	blockdev_close(bd);
}
END_TEST

static Suite *
blockdev_suite(void)
{
	Suite *s = suite_create("blockdev");
	struct {
		const char *name;
		const TTest *fn;
		int loops;		/* 2: both backends (or as noted), 1: once */
	} cases[] = {
		{ "read_write", test_read_write, 2 },
		{ "vectored", test_vectored, 2 },
		{ "misaligned", test_misaligned, 2 },
		{ "fault_count", test_fault_count, 2 },
		{ "fault_range", test_fault_range, 2 },
		{ "fault_random", test_fault_random, 2 },
		{ "backpressure", test_backpressure, 2 },
		{ "barrier_order", test_barrier_order, 2 },
		{ "concurrent", test_concurrent, 2 },
		{ "short_read", test_short_read, 2 },	/* plain, waited */
		{ "wlog_replay", test_wlog_replay, 2 },
		{ "powercut", test_powercut, 2 },
		{ "open_errors", test_open_errors, 1 },
		{ "open_readonly_file", test_open_readonly_file, 1 },
		{ "shutdown_ram", test_shutdown_ram, 1 },
		{ "shutdown_image", test_shutdown_image, 1 },
		{ "submit_from_callback", test_submit_from_callback, 2 },
		{ "align_probe", test_align_probe, 1 },
		{ "waited_read", test_waited_read, 2 },
		{ "waited_threads", test_waited_threads, 1 },
#if !defined(__SANITIZE_THREAD__)
		/* TSan refuses threads in a child of a threaded process. */
		{ "waited_read_fork", test_waited_read_fork, 1 },
#endif
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_add_unchecked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, TIMEOUT);
		tcase_add_loop_test(tc, cases[i].fn, 0, cases[i].loops);
		suite_add_tcase(s, tc);
	}
	return (s);
}

int
main(void)
{
	SRunner *sr = srunner_create(blockdev_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return (failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}
