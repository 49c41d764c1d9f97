/*
 * check_file.c - unit tests of file data (fs/file.c) and of the extent
 * tree (fs/extent.c): read and write at every alignment, holes, a sparse
 * 1 TiB file, truncate, fallocate in each mode, SEEK_DATA / SEEK_HOLE,
 * EFBIG, ENOSPC and the return of space, O_DIRECT, asynchronous write
 * errors, reads answered from I/O completion, and contents across unmount
 * and mount against a model.
 *
 * Every test runs on a fresh RAM device and filesystem, once with the
 * smallest data block size (4 KiB) and once with the largest the buffer
 * cache takes (64 KiB, MAXBSIZE): a loop test, _i selecting the size.
 * Teardown unmounts and runs fsck -n -f, which must find nothing.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "cache/buf.h"
#include "fs/extent.h"
#include "fs/flyfs.h"
#include "fs/fs_int.h"
#include "fs/fsck_core.h"
#include "fs/mkfs_core.h"
#include "fsck_util.h"
#include "image_util.h"

#define DEV_BYTES	(128ULL << 20)
#define TIB		(1ULL << 40)

static const uint32_t dbsizes[] = { 4096, 65536 };
static const struct flyfs_cred root = { .uid = 0, .gid = 0 };
static const struct flyfs_cred user = { .uid = 1000, .gid = 1000 };

static struct blockdev *bd;
static struct flyfs *fs;
static uint32_t dbs;
static char err[512];

/* ---- Fixture ------------------------------------------------------------ */

static void
mount_it(void)
{
	struct flyfs_mount_opts o;

	memset(&o, 0, sizeof(o));
	o.compress = -1;
	o.cache_size = 32L << 20;
	ck_assert_msg(flyfs_mount_bdev(bd, &o, &fs, err, sizeof(err)) == 0,
	    "mount: %s", err);
}

static char image[UTIL_IMAGE_PATHLEN];	/* the image file, if one is used */

/* A RAM device, or an image file (libaio, O_DIRECT) with ON_IMAGE. */
static void
make_fs_on(uint32_t size, uint64_t bytes, bool on_image)
{
	struct flyfs_mkfs_params p;

	dbs = size;
	if (on_image)
		bd = util_image_open(image, bytes);
	else
		ck_assert_int_eq(blockdev_open_ram(bytes, 4096, 0, 0, &bd), 0);
	flyfs_mkfs_params_init(&p);
	p.data_block_size = size;
	if (bytes < (64ULL << 20))
		p.journal_bytes = 4ULL << 20;
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0,
	    "mkfs: %s", err);
	mount_it();
}

static void
make_fs(uint32_t size, uint64_t bytes)
{
	make_fs_on(size, bytes, false);
}

static void
setup(void)
{
	bd = NULL;
	fs = NULL;
}

static void
teardown(void)
{
	if (fs != NULL) {
		ck_assert_int_eq(flyfs_unmount(fs), 0);
		fs = NULL;
		util_fsck_clean(bd);
	}
	if (bd != NULL)
		blockdev_close(bd);
	bd = NULL;
	if (image[0] != '\0')
		unlink(image);
	image[0] = '\0';
}

static void
remount(void)
{
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	fs = NULL;
	util_fsck_clean(bd);
	mount_it();
}

/* ---- Helpers ------------------------------------------------------------ */

static uint64_t
mkfile(const char *name)
{
	struct flyfs_attr a;

	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, name,
	    S_IFREG | 0644, 0, &root, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	return a.ino;
}

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void
fill(void *p, size_t n, uint64_t seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		b[i] = (uint8_t)(seed >> 56) | 1;	/* never zero */
	}
}

static void
wr(uint64_t ino, const void *buf, size_t len, off_t off)
{
	size_t done;

	ck_assert_int_eq(flyfs_write(fs, ino, buf, len, off, 0, &root,
	    &done), 0);
	ck_assert_uint_eq(done, len);
}

static size_t
rd(uint64_t ino, void *buf, size_t len, off_t off)
{
	size_t done;

	ck_assert_int_eq(flyfs_read(fs, ino, buf, len, off, 0, &done), 0);
	return done;
}

static uint64_t
fsize(uint64_t ino)
{
	struct flyfs_attr a;

	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	return a.size;
}

static uint64_t
fblocks(uint64_t ino)
{
	struct flyfs_attr a;

	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	return a.blocks;
}

static void
set_size(uint64_t ino, uint64_t size)
{
	struct flyfs_attr in;

	memset(&in, 0, sizeof(in));
	in.size = size;
	ck_assert_int_eq(flyfs_setattr(fs, ino, &in, FLYFS_SET_SIZE, &root,
	    NULL), 0);
}

/* The whole file must equal MODEL (SIZE bytes). */
static void
check_model(uint64_t ino, const uint8_t *model, size_t size)
{
	uint8_t *got = malloc(size + 4096);
	size_t n;

	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(fsize(ino), size);
	n = rd(ino, got, size + 4096, 0);
	ck_assert_uint_eq(n, size);
	for (size_t i = 0; i < size; i++)
		if (got[i] != model[i])
			ck_abort_msg("byte %zu: got %#x want %#x", i, got[i],
			    model[i]);
	free(got);
}

static off_t
seek(uint64_t ino, off_t off, int whence)
{
	off_t r = -1;

	ck_assert_int_eq(flyfs_lseek(fs, ino, off, whence, &r), 0);
	return r;
}

/* Physical block of logical block LBLK of INO, 0 for a hole. */
static uint64_t
pblk_of(uint64_t ino, uint64_t lblk)
{
	struct fs_inode *ip;
	struct fs_extent e;
	uint64_t p = 0;

	ck_assert_int_eq(fs_iget(fs, ino, &ip), 0);
	pthread_mutex_lock(&ip->i_extlock);
	if (fs_extent_find(ip, lblk, &e) == 0 && e.lblk <= lblk)
		p = e.pblk + (lblk - e.lblk);
	pthread_mutex_unlock(&ip->i_extlock);
	fs_iput(ip);
	return p;
}

/* A new file NAME holding LEN bytes of fill(SEED), also copied to A;
 * fsync'd. */
static uint64_t
synced_file(const char *name, uint8_t *a, size_t len, uint64_t seed)
{
	uint64_t ino = mkfile(name);

	fill(a, len, seed);
	wr(ino, a, len, 0);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	return ino;
}

/*
 * Fail OPS (BLOCKDEV_FAULT_*) on the device range that holds the first LEN
 * bytes of INO, which must be contiguous from its first block.
 */
static void
fail_file_range(uint64_t ino, size_t len, unsigned ops)
{
	struct blockdev_fault f;
	uint64_t p0 = pblk_of(ino, 0);

	ck_assert_uint_ne(p0, 0);
	memset(&f, 0, sizeof(f));
	f.f_mode = BLOCKDEV_FAULT_RANGE;
	f.f_ops = ops;
	f.f_offset = (off_t)(p0 * 4096);
	f.f_len = len;
	blockdev_set_fault(bd, &f);
}

/* ---- Tests -------------------------------------------------------------- */

/* Writes of many sizes at many alignments, against a model. */
START_TEST(test_rw_alignments)
{
	const size_t span = 8 * 65536 + 12345;
	uint8_t *model = calloc(1, span), *buf = malloc(span);
	size_t sizes[] = { 1, 7, 511, 512, 4095, 4096, 4097, 8191,
	    65535, 65536, 65537, 3 * 65536 + 5 };
	uint64_t ino;
	size_t size = 0;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("f");
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]);
		    k++) {
			size_t len = sizes[k];
			off_t off = (off_t)(rnd() % (span - len));

			if (k % 3 == 0)
				off &= ~(off_t)4095;
			fill(buf, len, rnd());
			wr(ino, buf, len, off);
			memcpy(model + off, buf, len);
			if ((size_t)off + len > size)
				size = (size_t)off + len;
			/* Read back the written range and its edges. */
			{
				size_t lo = off > 100 ? (size_t)off - 100 : 0;
				size_t hi = (size_t)off + len + 100 < size ?
				    (size_t)off + len + 100 : size;
				size_t n = rd(ino, buf, hi - lo, (off_t)lo);

				ck_assert_uint_eq(n, hi - lo);
				ck_assert(memcmp(buf, model + lo, n) == 0);
			}
		}
		check_model(ino, model, size);
		if (round == 1)
			ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	}
	remount();
	check_model(ino, model, size);
	/* Reads at every alignment of the remounted (uncached) file. */
	for (unsigned k = 0; k < 200; k++) {
		size_t len = 1 + rnd() % 70000;
		size_t off = rnd() % size;
		size_t want = off + len > size ? size - off : len;

		ck_assert_uint_eq(rd(ino, buf, len, (off_t)off), want);
		ck_assert(memcmp(buf, model + off, want) == 0);
	}
	free(model);
	free(buf);
}
END_TEST

/* Holes read as zeros, before and after the data reaches the device. */
START_TEST(test_holes)
{
	uint8_t a[4096], b[4096], z[4096] = { 0 };
	uint64_t ino, far = 37ULL * 65536 + 8192;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("h");
	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 2);
	wr(ino, a, sizeof(a), 0);
	wr(ino, b, sizeof(b), (off_t)far);
	ck_assert_uint_eq(fsize(ino), far + 4096);
	for (int pass = 0; pass < 2; pass++) {
		uint8_t got[4096];

		ck_assert_uint_eq(rd(ino, got, 4096, 0), 4096);
		ck_assert(memcmp(got, a, 4096) == 0);
		for (uint64_t off = 4096; off < far; off += 4096 * 7) {
			ck_assert_uint_eq(rd(ino, got, 4096, (off_t)off), 4096);
			ck_assert(memcmp(got, z, 4096) == 0);
		}
		ck_assert_uint_eq(rd(ino, got, 4096, (off_t)far), 4096);
		ck_assert(memcmp(got, b, 4096) == 0);
		/* Dirty, a whole data block is data; stored, 4 KiB is. */
		ck_assert_int_eq(seek(ino, 0, SEEK_HOLE), pass == 0 ?
		    (off_t)dbs : 4096);
		ck_assert_int_eq(seek(ino, (off_t)dbs, SEEK_DATA) / (off_t)dbs,
		    (off_t)(far / dbs));
		ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
		remount();
	}
	/* Only what was written is allocated: the hole costs nothing. */
	ck_assert_uint_le(fblocks(ino), 2 * 8 * (dbs / 4096) + 8);
}
END_TEST

/* A sparse 1 TiB file: written at the end, cheap, seekable. */
START_TEST(test_sparse_1tib)
{
	uint8_t a[4096], got[4096];
	struct timespec t0, t1;
	off_t r;
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ino = mkfile("big");
	fill(a, sizeof(a), 3);
	wr(ino, a, sizeof(a), (off_t)(TIB - 4096));
	ck_assert_uint_eq(fsize(ino), TIB);
	ck_assert_int_eq(seek(ino, 0, SEEK_DATA) / (off_t)dbs,
	    (off_t)((TIB - 4096) / dbs));
	ck_assert_int_eq(seek(ino, 0, SEEK_HOLE), 0);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	ck_assert_int_eq(seek(ino, 0, SEEK_DATA), (off_t)(TIB - 4096));
	ck_assert_int_eq(seek(ino, (off_t)(TIB - 4096), SEEK_HOLE),
	    (off_t)TIB);
	ck_assert_int_eq(flyfs_lseek(fs, ino, (off_t)TIB, SEEK_DATA, &r),
	    ENXIO);
	ck_assert_int_eq(flyfs_lseek(fs, ino, (off_t)TIB, SEEK_HOLE, &r),
	    ENXIO);
	ck_assert_uint_le(fblocks(ino), 8 * 4);
	remount();
	ck_assert_uint_eq(fsize(ino), TIB);
	ck_assert_uint_eq(rd(ino, got, 4096, (off_t)(TIB - 4096)), 4096);
	ck_assert(memcmp(got, a, 4096) == 0);
	ck_assert_uint_eq(rd(ino, got, 4096, (off_t)(TIB / 2)), 4096);
	for (int i = 0; i < 4096; i++)
		ck_assert_int_eq(got[i], 0);
	/* Truncating it away is as cheap. */
	set_size(ino, 0);
	ck_assert_uint_eq(fblocks(ino), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 10);
}
END_TEST

/* Appends of odd sizes grow the file exactly. */
START_TEST(test_extend)
{
	uint8_t *model = malloc(1 << 20), buf[10000];
	size_t size = 0;
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("e");
	while (size + sizeof(buf) < (1 << 20)) {
		size_t len = 1 + rnd() % sizeof(buf);

		fill(buf, len, size);
		wr(ino, buf, len, (off_t)size);
		memcpy(model + size, buf, len);
		size += len;
		ck_assert_uint_eq(fsize(ino), size);
	}
	check_model(ino, model, size);
	remount();
	check_model(ino, model, size);
	free(model);
}
END_TEST

/* Truncate down and up, with data checks and blocks returned. */
START_TEST(test_truncate)
{
	size_t big = 5 * 65536 + 123;
	uint8_t *model = calloc(1, 8 * 65536), *buf = malloc(big);
	uint64_t ino, b0, b1;
	size_t cut;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("t");
	fill(buf, big, 9);
	wr(ino, buf, big, 0);
	memcpy(model, buf, big);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	b0 = fblocks(ino);
	cut = 65536 + 7;
	set_size(ino, cut);
	memset(model + cut, 0, big - cut);
	check_model(ino, model, cut);
	b1 = fblocks(ino);
	ck_assert_uint_lt(b1, b0);
	/* Grow: a hole, and the old tail must not come back. */
	set_size(ino, 4 * 65536);
	check_model(ino, model, 4 * 65536);
	remount();
	check_model(ino, model, 4 * 65536);
	/* Shrink in a dirty, never flushed file. */
	wr(ino, buf, 3 * 65536, 65536);
	memcpy(model + 65536, buf, 3 * 65536);
	set_size(ino, 100000);
	memset(model + 100000, 0, 4 * 65536 - 100000);
	check_model(ino, model, 100000);
	set_size(ino, 200000);
	check_model(ino, model, 200000);
	remount();
	check_model(ino, model, 200000);
	set_size(ino, 0);
	ck_assert_uint_eq(fblocks(ino), 0);
	free(model);
	free(buf);
}
END_TEST

/* fallocate: every mode, and the unsupported ones. */
START_TEST(test_fallocate)
{
	uint8_t *model = calloc(1, (1 << 20) + 4096), *buf = malloc(1 << 20);
	uint64_t ino, b;
	size_t size;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("fa");
	/* Mode 0: size grows, zeros, space allocated. */
	ck_assert_int_eq(flyfs_fallocate(fs, ino, 0, 0, 300000, NULL), 0);
	ck_assert_uint_eq(fsize(ino), 300000);
	ck_assert_uint_ge(fblocks(ino) * 512, 300000);
	check_model(ino, model, 300000);
	ck_assert_int_eq(seek(ino, 0, SEEK_HOLE), 0);
	/* Writing into preallocated space converts it. */
	fill(buf, 10000, 4);
	wr(ino, buf, 10000, 5000);
	memcpy(model + 5000, buf, 10000);
	b = fblocks(ino);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	ck_assert_uint_eq(fblocks(ino), b);
	check_model(ino, model, 300000);
	/* KEEP_SIZE beyond EOF: size unchanged, blocks grow. */
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_KEEP_SIZE,
	    300000, 200000, NULL), 0);
	ck_assert_uint_eq(fsize(ino), 300000);
	ck_assert_uint_gt(fblocks(ino), b);
	remount();
	check_model(ino, model, 300000);
	/* Punch in the middle of a written extent. */
	fill(buf, 1 << 20, 5);
	wr(ino, buf, 1 << 20, 0);
	memcpy(model, buf, 1 << 20);
	size = 1 << 20;
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	b = fblocks(ino);
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_PUNCH_HOLE |
	    FALLOC_FL_KEEP_SIZE, 3 * 65536 + 100, 4 * 65536, NULL), 0);
	memset(model + 3 * 65536 + 100, 0, 4 * 65536);
	ck_assert_uint_eq(fsize(ino), size);
	ck_assert_uint_lt(fblocks(ino), b);
	check_model(ino, model, size);
	/* Zero range, partial blocks at both ends, keeping the size. */
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_ZERO_RANGE |
	    FALLOC_FL_KEEP_SIZE, 9 * 65536 - 10, 65536 * 2 + 20, NULL), 0);
	memset(model + 9 * 65536 - 10, 0, 65536 * 2 + 20);
	check_model(ino, model, size);
	/* Zero range past EOF extends. */
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_ZERO_RANGE,
	    (off_t)size - 5, 10, NULL), 0);
	memset(model + size - 5, 0, 5);
	size += 5;
	check_model(ino, model, size);
	remount();
	check_model(ino, model, size);
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_PUNCH_HOLE, 0, 1,
	    NULL), EOPNOTSUPP);
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_COLLAPSE_RANGE,
	    0, 65536, NULL), EOPNOTSUPP);
	ck_assert_int_eq(flyfs_fallocate(fs, ino, 0, 0, 0, NULL), EINVAL);
	free(model);
	free(buf);
}
END_TEST

/* Punching holes in the middle of many extents, then reading around. */
START_TEST(test_punch_fragmented)
{
	size_t size = 2 << 20;
	uint8_t *model = malloc(size), *buf = malloc(size);
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("p");
	fill(model, size, 11);
	/* Written back to front with syncs: many extents. */
	for (size_t off = size; off > 0; off -= 65536) {
		wr(ino, model + off - 65536, 65536, (off_t)(off - 65536));
		if ((off / 65536) % 4 == 0)
			ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	}
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	for (int k = 0; k < 40; k++) {
		size_t off = (rnd() % (size / 4096)) * 4096;
		size_t len = (1 + rnd() % 16) * 4096;

		if (off + len > size)
			len = size - off;
		ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_PUNCH_HOLE |
		    FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len, NULL), 0);
		memset(model + off, 0, len);
	}
	check_model(ino, model, size);
	remount();
	check_model(ino, model, size);
	(void)buf;
	free(model);
	free(buf);
}
END_TEST

/* EFBIG past the maximum file size. */
START_TEST(test_efbig)
{
	uint8_t a[8192];
	struct flyfs_attr in;
	size_t done;
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("fb");
	fill(a, sizeof(a), 6);
	ck_assert_int_eq(flyfs_write(fs, ino, a, 1, (off_t)FLYFS_MAX_FILE_SIZE,
	    0, &root, &done), EFBIG);
	/* A write that straddles the limit is cut at it. */
	ck_assert_int_eq(flyfs_write(fs, ino, a, sizeof(a),
	    (off_t)FLYFS_MAX_FILE_SIZE - 4096, 0, &root, &done), 0);
	ck_assert_uint_eq(done, 4096);
	ck_assert_uint_eq(fsize(ino), FLYFS_MAX_FILE_SIZE);
	memset(&in, 0, sizeof(in));
	in.size = FLYFS_MAX_FILE_SIZE + 1;
	ck_assert_int_eq(flyfs_setattr(fs, ino, &in, FLYFS_SET_SIZE, &root,
	    NULL), EFBIG);
	ck_assert_int_eq(flyfs_fallocate(fs, ino, 0,
	    (off_t)FLYFS_MAX_FILE_SIZE - 4096, 8192, NULL), EFBIG);
	ck_assert_int_eq(flyfs_write(fs, ino, a, 1, -1, 0, &root, &done),
	    EINVAL);
}
END_TEST

/* A small image fills up cleanly, keeps its data, and gets space back. */
START_TEST(test_enospc)
{
	size_t chunk = 256 * 1024, total = 0, cap = 64 << 20;
	uint8_t *model = malloc(cap), *buf = malloc(chunk);
	struct statvfs sv;
	uint64_t ino, ino2;
	size_t done;
	int error = 0;

	make_fs(dbsizes[_i], 12ULL << 20);
	ino = mkfile("fill");
	while (total + chunk <= cap) {
		fill(buf, chunk, total);
		error = flyfs_write(fs, ino, buf, chunk, (off_t)total, 0,
		    &root, &done);
		memcpy(model + total, buf, done);
		total += done;
		if (error)
			break;
	}
	ck_assert_int_eq(error, ENOSPC);
	ck_assert_uint_gt(total, 1 << 20);
	/* Everything accepted is stored. */
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	remount();
	check_model(ino, model, total);
	ino2 = mkfile("more");
	ck_assert_int_eq(flyfs_write(fs, ino2, buf, chunk, 0, 0, &root, &done),
	    ENOSPC);
	/* Space returns after truncate, then after unlink. */
	set_size(ino, total / 2);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	wr(ino2, buf, chunk, 0);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "fill", &root), 0);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	ck_assert_int_eq(flyfs_statfs(fs, &sv), 0);
	ck_assert_uint_gt((uint64_t)sv.f_bfree * sv.f_frsize, total / 2);
	for (size_t off = chunk; off < total / 2; off += chunk) {
		fill(buf, chunk, off);
		wr(ino2, buf, chunk, (off_t)off);
	}
	ck_assert_int_eq(flyfs_fsync(fs, ino2, false), 0);
	free(model);
	free(buf);
}
END_TEST

/* Random writes, truncates and punches against a model, across remounts. */
START_TEST(test_model_remount)
{
	size_t cap = 3 << 20;
	uint8_t *model = calloc(1, cap), *buf = malloc(cap);
	size_t size = 0;
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("m");
	for (int round = 0; round < 4; round++) {
		for (int op = 0; op < 60; op++) {
			unsigned kind = (unsigned)(rnd() % 10);
			size_t off = rnd() % (cap - 200000);
			size_t len = 1 + rnd() % 200000;

			if (kind < 6) {
				fill(buf, len, rnd());
				wr(ino, buf, len, (off_t)off);
				memcpy(model + off, buf, len);
				if (off + len > size)
					size = off + len;
			} else if (kind < 8) {
				size_t ns = rnd() % (cap - 1);

				if (ns < size)
					memset(model + ns, 0, size - ns);
				set_size(ino, ns);
				size = ns;
			} else if (kind < 9) {
				ck_assert_int_eq(flyfs_fallocate(fs, ino,
				    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    (off_t)off, (off_t)len, NULL), 0);
				if (off < size)
					memset(model + off, 0, (off + len < size ?
					    off + len : size) - off);
			} else {
				ck_assert_int_eq(flyfs_fsync(fs, ino, false),
				    0);
			}
		}
		check_model(ino, model, size);
		remount();
		check_model(ino, model, size);
	}
	free(model);
	free(buf);
}
END_TEST

/* One figure out of a stats walk. */
struct named {
	const char	*name;
	uint64_t	value;
};

static void
named_cb(void *arg, const char *name, uint64_t value)
{
	struct named *n = arg;

	if (strcmp(name, n->name) == 0)
		n->value = value;
}

/* A file's figure NAME (flyfs.file.NAME). */
static uint64_t
file_stat(uint64_t ino, const char *name)
{
	struct named n = { name, UINT64_MAX };

	ck_assert_int_eq(flyfs_file_stats_foreach(fs, ino, named_cb, &n), 0);
	ck_assert_uint_ne(n.value, UINT64_MAX);
	return n.value;
}

/* O_DIRECT: data goes to the device, buffers are not kept. */

START_TEST(test_odirect)
{
	size_t len = 8 * 65536;
	uint8_t *a = malloc(len), *got = malloc(len);
	uint64_t ino;
	size_t done;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("d");
	fill(a, len, 7);
	ck_assert_int_eq(flyfs_write(fs, ino, a, len, 0, FLYFS_O_DIRECT,
	    &root, &done), 0);
	ck_assert_uint_eq(done, len);
	ck_assert_uint_eq(file_stat(ino, "cached_bytes"), 0);
	ck_assert_int_eq(flyfs_read(fs, ino, got, len, 0, FLYFS_O_DIRECT,
	    &done), 0);
	ck_assert_uint_eq(done, len);
	ck_assert(memcmp(a, got, len) == 0);
	ck_assert_uint_eq(file_stat(ino, "cached_bytes"), 0);
	/* Partial O_DIRECT write over cached data stays coherent. */
	ck_assert_uint_eq(rd(ino, got, 100, 0), 100);
	fill(a, 100, 8);
	ck_assert_int_eq(flyfs_write(fs, ino, a, 100, 50, FLYFS_O_DIRECT,
	    &root, &done), 0);
	ck_assert_uint_eq(rd(ino, got, 100, 50), 100);
	ck_assert(memcmp(a, got, 100) == 0);
	free(a);
	free(got);
}
END_TEST

/* ---- Reads answered from I/O completion (flyfs_read_async) ------------ */

struct answer {
	pthread_mutex_t	mtx;
	pthread_cond_t	cv;
	int		calls;
	int		error;
	size_t		len;
	uint8_t		data[65536];
	/* The truncate case: the callback holds on while a truncate runs. */
	useconds_t	hold_us;
	bool		in_callback;
	const bool	*watch;		/* read at the end of the hold */
	bool		watched;
};

static void
answer_init(struct answer *a)
{
	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->mtx, NULL);
	pthread_cond_init(&a->cv, NULL);
}

static void
answer_cb(void *arg, const void *data, size_t len, int error)
{
	struct answer *a = arg;

	pthread_mutex_lock(&a->mtx);
	a->in_callback = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mtx);
	if (a->hold_us > 0) {
		usleep(a->hold_us);
		a->watched = __atomic_load_n(a->watch, __ATOMIC_ACQUIRE);
	}
	pthread_mutex_lock(&a->mtx);
	a->calls++;
	a->error = error;
	a->len = len;
	ck_assert_uint_le(len, sizeof(a->data));
	ck_assert(error == 0 ? data != NULL : data == NULL && len == 0);
	if (data != NULL)
		memcpy(a->data, data, len);
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mtx);
}

/* Wait for the answer (the buffer is released just after it). */
static void
answer_wait(struct answer *a)
{
	pthread_mutex_lock(&a->mtx);
	while (a->calls == 0)
		pthread_cond_wait(&a->cv, &a->mtx);
	pthread_mutex_unlock(&a->mtx);
}

static int
rd_async(uint64_t ino, void *buf, size_t len, off_t off, int ioflags,
    struct answer *a, size_t *done)
{
	return flyfs_read_async(fs, ino, buf, len, off, ioflags, done,
	    answer_cb, a);
}

/*
 * A read of one uncached block is answered by the completion with the
 * block's data; cached blocks, reads over two blocks and reads at EOF are
 * done at once; a failed device read is answered with its errno.
 */
START_TEST(test_read_async)
{
	size_t len = 4 * 65536, done = 99;
	uint8_t *a = malloc(len), *got = malloc(len);
	struct blockdev_fault f;
	struct answer ans;
	uint64_t ino;
	off_t off;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = synced_file("a", a, len, 21);
	remount();			/* nothing cached */

	/* A random read inside block 1: answered later, with the data. */
	off = (off_t)dbs + 512;
	answer_init(&ans);
	ck_assert_int_eq(rd_async(ino, got, 1000, off, 0, &ans, &done),
	    EINPROGRESS);
	ck_assert_uint_eq(done, 0);
	answer_wait(&ans);
	ck_assert_int_eq(ans.calls, 1);
	ck_assert_int_eq(ans.error, 0);
	ck_assert_uint_eq(ans.len, 1000);
	ck_assert(memcmp(ans.data, a + off, 1000) == 0);

	/* Now cached: done at once, into the caller's buffer. */
	memset(got, 0, 1000);
	ck_assert_int_eq(rd_async(ino, got, 1000, off, 0, &ans, &done), 0);
	ck_assert_uint_eq(done, 1000);
	ck_assert(memcmp(got, a + off, 1000) == 0);
	ck_assert_int_eq(ans.calls, 1);

	/* O_DIRECT: answered later, and the buffer is not kept. */
	answer_init(&ans);
	off = 2 * (off_t)dbs;
	ck_assert_int_eq(rd_async(ino, got, 4096, off, FLYFS_O_DIRECT, &ans,
	    &done), EINPROGRESS);
	answer_wait(&ans);
	ck_assert_int_eq(ans.error, 0);
	ck_assert_uint_eq(ans.len, 4096);
	ck_assert(memcmp(ans.data, a + off, 4096) == 0);
	/* The callback releases the buffer after it returns; a synchronous
	 * read of the block waits for that and releases its own. */
	ck_assert_int_eq(flyfs_read(fs, ino, got, 4096, off, FLYFS_O_DIRECT,
	    &done), 0);
	ck_assert_uint_eq(file_stat(ino, "cached_bytes"), dbs); /* block 1 */

	/* Over two blocks, and at EOF: not handed over. */
	off = 3 * (off_t)dbs - 100;
	ck_assert_int_eq(rd_async(ino, got, 200, off, 0, &ans, &done), 0);
	ck_assert_uint_eq(done, 200);
	ck_assert(memcmp(got, a + off, 200) == 0);
	ck_assert_int_eq(rd_async(ino, got, 200, (off_t)len, 0, &ans, &done),
	    0);
	ck_assert_uint_eq(done, 0);
	ck_assert_int_eq(ans.calls, 1);

	/* A failed read: EIO to the callback, nothing cached; then it reads. */
	remount();
	fail_file_range(ino, len, BLOCKDEV_FAULT_READS);
	answer_init(&ans);
	off = (off_t)dbs + 4096 * (dbs > 4096);
	ck_assert_int_eq(rd_async(ino, got, 4096, off, 0, &ans, &done),
	    EINPROGRESS);
	answer_wait(&ans);
	ck_assert_int_eq(ans.error, EIO);
	ck_assert_uint_eq(ans.len, 0);
	memset(&f, 0, sizeof(f));
	blockdev_set_fault(bd, &f);
	answer_init(&ans);
	ck_assert_int_eq(rd_async(ino, got, 4096, off, 0, &ans, &done),
	    EINPROGRESS);
	answer_wait(&ans);
	ck_assert_int_eq(ans.error, 0);
	ck_assert(memcmp(ans.data, a + off, 4096) == 0);
	free(a);
	free(got);
}
END_TEST

struct trunc_arg {
	uint64_t	ino;
	bool		done;
};

static void *
trunc_thread(void *p)
{
	struct trunc_arg *t = p;

	set_size(t->ino, 0);
	__atomic_store_n(&t->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * The reader's inode lock is gone before its answer: a truncate started
 * while the answer is being sent must wait for it (it frees the block
 * only after it has locked the buffer), and the answer has the old data.
 * On an image file, so that the truncate's own reads do not need the
 * completion thread the callback holds (they complete on the truncating
 * thread, docs/blockdev.md "Waited reads") and nothing else stops it.
 */
START_TEST(test_read_async_truncate)
{
	size_t len = 2 * 65536, done;
	uint8_t *a = malloc(len), *got = malloc(len);
	struct trunc_arg t = { 0, false };
	struct answer ans;
	pthread_t th;
	off_t off;

	make_fs_on(dbsizes[_i], DEV_BYTES, true);
	t.ino = synced_file("t", a, len, 22);
	remount();

	answer_init(&ans);
	ans.hold_us = 200 * 1000;
	ans.watch = &t.done;
	off = (off_t)dbs + 100;
	ck_assert_int_eq(rd_async(t.ino, got, 3000, off, 0, &ans, &done),
	    EINPROGRESS);
	pthread_mutex_lock(&ans.mtx);
	while (!ans.in_callback)
		pthread_cond_wait(&ans.cv, &ans.mtx);
	pthread_mutex_unlock(&ans.mtx);
	ck_assert_int_eq(pthread_create(&th, NULL, trunc_thread, &t), 0);
	answer_wait(&ans);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(!ans.watched, "the truncate did not wait for the answer");
	ck_assert(t.done);
	ck_assert_int_eq(ans.error, 0);
	ck_assert(memcmp(ans.data, a + off, 3000) == 0);
	ck_assert_uint_eq(fsize(t.ino), 0);
	free(a);
	free(got);
}
END_TEST

/*
 * fsync of data overwritten in place: no metadata changes (the times stay
 * within their second), so there may be nothing to commit; the data must
 * still be followed by a barrier, or it sits in the device's volatile
 * cache when fsync returns.  Three rounds each of fsync, fdatasync and
 * sync: a second boundary could hide the bug in one round, not in all.
 */
START_TEST(test_fsync_barrier)
{
	const size_t len = 65536;
	uint8_t *a = malloc(len), buf[4096];
	struct blockdev_wlog_entry e;
	uint64_t ino, start, end;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = synced_file("b", a, len, 7);
	start = pblk_of(ino, 0) * 4096;
	end = start + len;
	for (int round = 0; round < 9; round++) {
		size_t last_write = SIZE_MAX, last_flush = SIZE_MAX;
		off_t off = (off_t)(round % 4) * 4096;

		fill(buf, sizeof(buf), 50 + round);
		blockdev_wlog_start(bd);
		wr(ino, buf, sizeof(buf), off);
		memcpy(a + off, buf, sizeof(buf));
		if (round % 3 == 2)
			ck_assert_int_eq(flyfs_sync(fs), 0);
		else
			ck_assert_int_eq(flyfs_fsync(fs, ino, round % 3 == 1),
			    0);
		blockdev_wlog_stop(bd);
		for (size_t i = 0; i < blockdev_wlog_count(bd); i++) {
			ck_assert_int_eq(blockdev_wlog_get(bd, i, &e), 0);
			if (e.e_type == BLOCKDEV_WLOG_FLUSH)
				last_flush = i;
			else if ((uint64_t)e.e_offset < end &&
			    (uint64_t)e.e_offset + e.e_len > start)
				last_write = i;
		}
		blockdev_wlog_clear(bd);
		ck_assert_uint_ne(last_write, SIZE_MAX);
		ck_assert_msg(last_flush != SIZE_MAX && last_flush > last_write,
		    "round %d: the data write (entry %zu) has no barrier after "
		    "it", round, last_write);
	}
	remount();
	check_model(ino, a, len);
	free(a);
}
END_TEST

/*
 * Writes into cached blocks stored in place: the flush writes the pages
 * written (an unaligned write dirties the page it touches), not the
 * whole block.  The write log counts the bytes that reach the file's
 * place on the device; the contents are checked after a remount.
 */
START_TEST(test_dirty_pages)
{
	const size_t len = 2 * 65536;
	const off_t offs[] = { 3 * 4096, 7 * 4096 + 50, 15 * 4096 };
	const size_t lens[] = { 4096, 100, 4096 };
	uint8_t *a = malloc(len), buf[4096];
	struct blockdev_wlog_entry e;
	uint64_t ino, p0, start, end, bytes = 0;
	struct named flushes = { "dirty_page_flushes", 0 };

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = synced_file("d", a, len, 31);	/* cached and clean */
	p0 = pblk_of(ino, 0);
	ck_assert_uint_eq(pblk_of(ino, len / 4096 - 1), p0 + len / 4096 - 1);
	start = p0 * 4096;
	end = start + len;

	blockdev_wlog_start(bd);
	for (size_t i = 0; i < 3; i++) {
		fill(buf, lens[i], 40 + i);
		wr(ino, buf, lens[i], offs[i]);
		memcpy(a + offs[i], buf, lens[i]);
	}
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	blockdev_wlog_stop(bd);
	for (size_t i = 0; i < blockdev_wlog_count(bd); i++) {
		ck_assert_int_eq(blockdev_wlog_get(bd, i, &e), 0);
		if (e.e_type == BLOCKDEV_WLOG_WRITE &&
		    (uint64_t)e.e_offset < end &&
		    (uint64_t)e.e_offset + e.e_len > start)
			bytes += e.e_len;
	}
	blockdev_wlog_clear(bd);
	ck_assert_uint_eq(bytes, 3 * 4096);
	flyfs_stats_foreach(fs, named_cb, &flushes);
	/* A 4 KiB block is one page: nothing to leave out. */
	ck_assert_uint_eq(flushes.value, dbs > 4096 ? 1 : 0);
	remount();
	check_model(ino, a, len);
	free(a);
}
END_TEST

/*
 * A buffer header keeps its b_pgclean from an earlier life.  A block
 * whose pages were flushed and dropped from the cache is written in part
 * (B_PARTIAL, likely in the same header), then made whole, by more
 * writes (even k) or by a read (odd k), then written again: every page
 * written must reach the disk.  Counts the tries that did get the old
 * header, and needs one.  getnewbuf looks first at the EMPTY queue of the
 * CPU it runs on, and the header sits on its own CPU's: the thread is
 * held on that CPU while it asks (a migration between the two made the
 * test fail under TSan, where threads move more).
 */
START_TEST(test_dirty_pages_reuse)
{
	const size_t nblk = 16;
	uint8_t *a, buf[65536];
	struct fs_inode *ip;
	size_t len, pg = 4096;
	uint64_t ino;
	cpu_set_t was, one;
	int reused = 0;

	make_fs(dbsizes[_i], DEV_BYTES);
	if (dbs < 4 * pg)
		return;		/* one page a block: never partial */
	ck_assert_int_eq(sched_getaffinity(0, sizeof(was), &was), 0);
	len = nblk * dbs;
	a = malloc(len);
	ino = synced_file("r", a, len, 51);
	ck_assert_int_eq(fs_iget(fs, ino, &ip), 0);
	for (size_t k = 0; k < nblk; k++) {
		off_t base = (off_t)(k * dbs), last = base + (off_t)(dbs - pg);
		struct buf *old;

		fill(buf, pg, 60 + k);
		wr(ino, buf, pg, last);		/* pages known clean */
		memcpy(a + last, buf, pg);
		ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
		/* Drop the clean buffer (its header goes to the free list's
		 * head, where the next getblk on this CPU finds it). */
		old = findblk(ITOV(ip), base, 0);
		ck_assert_ptr_nonnull(old);
		bremfree(old);
		old->b_flags |= B_INVAL | B_NOCACHE;
		CPU_ZERO(&one);
		CPU_SET(old->b_qcpu, &one);
		/* (If that CPU is not ours to use, the try may just miss.) */
		(void)!sched_setaffinity(0, sizeof(one), &one);
		brelse(old);
		fill(buf, pg, 80 + k);
		wr(ino, buf, pg, base);		/* B_PARTIAL, dirty */
		memcpy(a + base, buf, pg);
		ck_assert_int_eq(sched_setaffinity(0, sizeof(was), &was), 0);
		if (findblk(ITOV(ip), base, FINDBLK_TEST) == old)
			reused++;
		if (k % 2 == 0) {
			/* The other pages: whole, by writes. */
			fill(buf, dbs - pg, 100 + k);
			wr(ino, buf, dbs - pg, base + (off_t)pg);
			memcpy(a + base + pg, buf, dbs - pg);
		} else {
			/* Whole by a read; then the last page again. */
			ck_assert_uint_eq(rd(ino, buf, 100, base + 2 *
			    (off_t)pg), 100);
			fill(buf, pg, 120 + k);
			wr(ino, buf, pg, last);
			memcpy(a + last, buf, pg);
		}
	}
	fs_iput(ip);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	remount();
	check_model(ino, a, len);
	ck_assert_int_gt(reused, 0);
	free(a);
}
END_TEST

/*
 * A sequential flush into a hole allocates the whole cluster as one run:
 * about one device write per MAXPHYS (the buffer daemon may cut a few
 * clusters short: 6 under ThreadSanitizer), not one allocation (and a
 * share of the handle's log budget) per data block.  That gave 129
 * writes for these 4 MiB of 4 KiB blocks, which the bound catches, and 8
 * of 64 KiB blocks, which it does not: there the loop checks contents.
 */
START_TEST(test_alloc_runs)
{
	const size_t len = 4 << 20;
	uint8_t *a = malloc(len);
	struct blockdev_wlog_entry e;
	uint64_t ino, p0, start, end;
	size_t writes = 0, bytes = 0;

	make_fs(dbsizes[_i], DEV_BYTES);
	blockdev_wlog_start(bd);
	ino = synced_file("s", a, len, 71);
	blockdev_wlog_stop(bd);
	p0 = pblk_of(ino, 0);
	ck_assert_uint_eq(pblk_of(ino, len / 4096 - 1), p0 + len / 4096 - 1);
	start = p0 * 4096;
	end = start + len;
	for (size_t i = 0; i < blockdev_wlog_count(bd); i++) {
		ck_assert_int_eq(blockdev_wlog_get(bd, i, &e), 0);
		if (e.e_type == BLOCKDEV_WLOG_WRITE &&
		    (uint64_t)e.e_offset < end &&
		    (uint64_t)e.e_offset + e.e_len > start) {
			writes++;
			bytes += e.e_len;
		}
	}
	blockdev_wlog_clear(bd);
	ck_assert_uint_eq(bytes, len);
	ck_assert_uint_le(writes, 2 * len / MAXPHYS);
	remount();
	check_model(ino, a, len);
	free(a);
}
END_TEST

/* A failed background write is reported by fsync, once. */
START_TEST(test_async_error)
{
	size_t len = 4 * 65536;
	uint8_t *a = malloc(len), *got = malloc(len);
	struct blockdev_fault f;
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = synced_file("x", a, len, 12);
	/* Overwrites go in place: fail the device range of the file. */
	fail_file_range(ino, len, BLOCKDEV_FAULT_WRITES);
	fill(a, len, 13);
	wr(ino, a, len, 0);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), EIO);
	memset(&f, 0, sizeof(f));
	blockdev_set_fault(bd, &f);
	/* Reported once; the data is still in the cache and goes out now. */
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	remount();
	ck_assert_uint_eq(rd(ino, got, len, 0), len);
	ck_assert(memcmp(a, got, len) == 0);
	free(a);
	free(got);
}
END_TEST

/* Writes and fallocates by a non-root caller clear the set-id bits;
 * times move. */
START_TEST(test_suid_times)
{
	struct flyfs_attr in, a0, a1;
	uint8_t b[100];
	size_t done;
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("s");
	memset(&in, 0, sizeof(in));
	in.mode = S_IFREG | 06755;
	ck_assert_int_eq(flyfs_setattr(fs, ino, &in, FLYFS_SET_MODE, &root,
	    NULL), 0);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a0), 0);
	fill(b, sizeof(b), 1);
	ck_assert_int_eq(flyfs_write(fs, ino, b, sizeof(b), 0, 0, &root,
	    &done), 0);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a1), 0);
	ck_assert_int_eq(a1.mode & 06000, 06000);
	ck_assert_int_eq(flyfs_write(fs, ino, b, sizeof(b), 0, 0, &user,
	    &done), 0);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a1), 0);
	ck_assert_int_eq(a1.mode & 06000, 0);
	ck_assert(a1.mtime.tv_sec > a0.mtime.tv_sec ||
	    (a1.mtime.tv_sec == a0.mtime.tv_sec &&
	    a1.mtime.tv_nsec >= a0.mtime.tv_nsec));
	remount();
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a1), 0);
	ck_assert_int_eq(a1.mode & 06000, 0);
	ck_assert_uint_eq(a1.size, sizeof(b));

	/* fallocate, every mode, as ext4 (file_modified): root keeps the
	 * bits, anyone else loses them. */
	static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE,
	    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE };
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		in.mode = S_IFREG | 06775;
		ck_assert_int_eq(flyfs_setattr(fs, ino, &in, FLYFS_SET_MODE,
		    &root, NULL), 0);
		ck_assert_int_eq(flyfs_fallocate(fs, ino, modes[m], 0, 8192,
		    &root), 0);
		ck_assert_int_eq(flyfs_getattr(fs, ino, &a1), 0);
		ck_assert_int_eq(a1.mode & 07777, 06775);
		ck_assert_int_eq(flyfs_fallocate(fs, ino, modes[m], 0, 8192,
		    &user), 0);
		ck_assert_int_eq(flyfs_getattr(fs, ino, &a1), 0);
		ck_assert_msg((a1.mode & 07777) == 0775, "mode %d: %04o",
		    modes[m], (unsigned)(a1.mode & 07777));
	}
	remount();
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a1), 0);
	ck_assert_int_eq(a1.mode & 07777, 0775);
}
END_TEST

/*
 * Write into INO twice, the second time in the same second as the first
 * but a later nanosecond; the mtime after the second write in *OUT.
 */
static void
write_same_second(uint64_t ino, struct flyfs_attr *out)
{
	struct flyfs_attr a1;
	uint8_t b[100];
	size_t done;

	fill(b, sizeof(b), 3);
	for (int tries = 0;; tries++) {
		ck_assert_int_lt(tries, 50);
		ck_assert_int_eq(flyfs_write(fs, ino, b, sizeof(b), 0, 0,
		    &root, &done), 0);
		ck_assert_int_eq(flyfs_getattr(fs, ino, &a1), 0);
		usleep(2000);
		ck_assert_int_eq(flyfs_write(fs, ino, b, sizeof(b), 0, 0,
		    &root, &done), 0);
		ck_assert_int_eq(flyfs_getattr(fs, ino, out), 0);
		if (out->mtime.tv_sec == a1.mtime.tv_sec &&
		    out->mtime.tv_nsec != a1.mtime.tv_nsec)
			return;
	}
}

/* Stop as a crash would (CRASH) or unmount, mount, and compare mtimes. */
static void
mtime_after_mount(uint64_t ino, const struct flyfs_attr *want, bool crash)
{
	struct flyfs_attr a;

	if (crash) {
		flyfs_abandon(fs);
		fs = NULL;
		mount_it();
	} else {
		remount();
	}
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	ck_assert_int_eq(a.mtime.tv_sec, want->mtime.tv_sec);
	ck_assert_int_eq(a.mtime.tv_nsec, want->mtime.tv_nsec);
}

/*
 * A write in the second already on disk journals nothing (write_finish);
 * the nanoseconds it set are written by unmount, sync and eviction
 * (i_dirty), not lost with the in-memory inode.
 */
START_TEST(test_subsecond_mtime)
{
	struct flyfs_attr want;
	uint64_t ino;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("t");
	write_same_second(ino, &want);
	mtime_after_mount(ino, &want, false);

	write_same_second(ino, &want);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	mtime_after_mount(ino, &want, true);

	/*
	 * Eviction: a two-inode LRU pushes the file out behind four new
	 * ones.  A bare commit (not sync, which writes cached inodes) then
	 * holds the nanoseconds only if the eviction wrote them.
	 */
	fs->s_ilru_max = 2;
	write_same_second(ino, &want);
	for (int i = 0; i < 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "e%d", i);
		mkfile(name);
	}
	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	mtime_after_mount(ino, &want, true);
}
END_TEST

/* Extent tree growth: thousands of extents in one file, and back. */
START_TEST(test_many_extents)
{
	uint8_t a[4096], got[4096];
	uint64_t ino, n = 3000, count;
	struct fs_inode *ip;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("frag");
	/* Every other data block: no two extents can merge. */
	for (uint64_t i = 0; i < n; i++) {
		fill(a, sizeof(a), i);
		wr(ino, a, sizeof(a), (off_t)(2 * i * dbs));
	}
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	ck_assert_int_eq(fs_iget(fs, ino, &ip), 0);
	ck_assert_int_eq(fs_extent_count(ip, &count), 0);
	ck_assert_uint_eq(count, n);
	ck_assert_int_ge(fs_extent_depth(ip), 1);
	fs_iput(ip);
	remount();
	for (uint64_t i = 0; i < n; i += 7) {
		fill(a, sizeof(a), i);
		ck_assert_uint_eq(rd(ino, got, 4096, (off_t)(2 * i * dbs)),
		    4096);
		ck_assert(memcmp(a, got, 4096) == 0);
		ck_assert_uint_eq(rd(ino, got, 4096, (off_t)((2 * i + 1) *
		    dbs)), i + 1 < n ? 4096 : 0);
	}
	set_size(ino, 0);
	ck_assert_uint_eq(fblocks(ino), 0);
	ck_assert_int_eq(fs_iget(fs, ino, &ip), 0);
	ck_assert_int_eq(fs_extent_depth(ip), 0);
	fs_iput(ip);
}
END_TEST

/*
 * Preallocation into a punched hole of a multi-leaf extent tree: the
 * punch leaves the next leaf's index key inside the hole, and the new
 * unwritten extent must not reach past it (found by fsx_model: fsck saw
 * an extent outside its index range and leaked blocks).  Teardown's fsck
 * checks the tree.
 */
START_TEST(test_prealloc_punched_hole)
{
	uint8_t a[4096], got[4096], zero[4096] = { 0 };
	uint64_t ino, mb = 1 << 20;

	make_fs(dbsizes[_i], DEV_BYTES);
	ino = mkfile("frag");
	/* 4 KiB every 16 KiB over 4 MiB: 256 extents, several leaves. */
	for (uint64_t off = 0; off < 4 * mb; off += 16384) {
		fill(a, sizeof(a), off);
		wr(ino, a, sizeof(a), (off_t)off);
	}
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_PUNCH_HOLE |
	    FALLOC_FL_KEEP_SIZE, (off_t)mb, (off_t)(2 * mb), NULL), 0);
	ck_assert_int_eq(flyfs_fallocate(fs, ino, FALLOC_FL_KEEP_SIZE,
	    (off_t)mb, (off_t)(2 * mb), NULL), 0);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	remount();
	for (uint64_t off = 0; off < 4 * mb; off += 16384) {
		fill(a, sizeof(a), off);
		ck_assert_uint_eq(rd(ino, got, 4096, (off_t)off), 4096);
		ck_assert(memcmp(off >= mb && off < 3 * mb ? zero : a, got,
		    4096) == 0);
	}
	/* Writing into the preallocated range converts it in place. */
	fill(a, sizeof(a), 7);
	wr(ino, a, sizeof(a), (off_t)(2 * mb));
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	ck_assert_uint_eq(rd(ino, got, 4096, (off_t)(2 * mb)), 4096);
	ck_assert(memcmp(a, got, 4096) == 0);
}
END_TEST

static void
fs_stat_cb(void *arg, const char *name, uint64_t value)
{
	uint64_t *v = arg;

	if (strcmp(name, "partial_writes") == 0)
		v[0] = value;
	else if (strcmp(name, "partial_fills") == 0)
		v[1] = value;
	else if (strcmp(name, "partial_reads") == 0)
		v[2] = value;
}

/*
 * 4 KiB writes into blocks stored raw and not cached are kept B_PARTIAL
 * (nothing read); reads of the pages written are served from it; other
 * reads, truncate, punch and unaligned writes make the buffer whole; the
 * flush writes the valid pages in place.  Checked against a model before any flush, after fsync and
 * after a remount; the counters show which path was taken.
 */
START_TEST(test_partial_blocks)
{
	size_t size = 1 << 20;
	uint8_t *model = malloc(size), *buf = malloc(65536);
	uint64_t ino, c0[3] = { 0, 0, 0 }, c1[3] = { 0, 0, 0 };
	size_t step;

	make_fs(dbsizes[_i], DEV_BYTES);
	step = dbs > 8192 ? dbs : 8192;
	ino = mkfile("p");
	fill(model, size, 1);
	wr(ino, model, size, 0);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	remount();
	/* One cold piece per block, then one write touching it: no reads. */
	flyfs_stats_foreach(fs, fs_stat_cb, c0);
	for (size_t off = 0; off < size; off += step) {
		size_t gap = dbs > 8192 ? 4096 : 0;	/* two runs */

		fill(buf, 8192, off + 1);
		wr(ino, buf, 4096, (off_t)off);
		wr(ino, buf + 4096, 4096, (off_t)(off + 4096 + gap));
		memcpy(model + off, buf, 4096);
		memcpy(model + off + 4096 + gap, buf + 4096, 4096);
	}
	flyfs_stats_foreach(fs, fs_stat_cb, c1);
	if (dbs > 4096) {
		ck_assert_uint_eq(c1[0] - c0[0], 2 * size / step);
		ck_assert_uint_eq(c1[1], c0[1]);
		/* The flush writes the pieces; a read then fills each once. */
		ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
		for (size_t off = 0; off < size; off += step) {
			/* Page 2 was written: read without a fill. */
			ck_assert_uint_eq(rd(ino, buf, 100, (off_t)off + 9000),
			    100);
			ck_assert(memcmp(buf, model + off + 9000, 100) == 0);
		}
		flyfs_stats_foreach(fs, fs_stat_cb, c1);
		ck_assert_uint_eq(c1[1], c0[1]);
		ck_assert_uint_eq(c1[2] - c0[2], size / step);
		for (size_t off = 0; off < size; off += step)
			ck_assert_uint_eq(rd(ino, buf, 100, (off_t)off + 5000),
			    100);
		flyfs_stats_foreach(fs, fs_stat_cb, c1);
		ck_assert_uint_eq(c1[1] - c0[1], size / step);
	} else {
		/* A 4 KiB write is a whole 4 KiB block: nothing partial. */
		ck_assert_uint_eq(c1[0], c0[0]);
	}
	check_model(ino, model, size);
	remount();
	check_model(ino, model, size);
	remount();
	flyfs_stats_foreach(fs, fs_stat_cb, c0);
	for (int op = 0; op < 400; op++) {
		unsigned kind = (unsigned)(rnd() % 20);
		size_t off = (rnd() % (size / 4096)) * 4096;
		size_t len = 4096 * (1 + rnd() % 2);

		if (off + len > size)
			len = size - off;
		if (kind < 14) {
			fill(buf, len, rnd());
			wr(ino, buf, len, (off_t)off);
			memcpy(model + off, buf, len);
		} else if (kind < 17) {
			ck_assert_uint_eq(rd(ino, buf, len, (off_t)off), len);
			ck_assert(memcmp(buf, model + off, len) == 0);
		} else if (kind < 18) {
			off += rnd() % 4000;
			len = 1 + rnd() % 3000;
			if (off + len > size)
				len = size - off;
			fill(buf, len, rnd());
			wr(ino, buf, len, (off_t)off);
			memcpy(model + off, buf, len);
		} else if (kind < 19) {
			ck_assert_int_eq(flyfs_fallocate(fs, ino,
			    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    (off_t)off + 100, 5000, NULL), 0);
			memset(model + off + 100, 0, off + 5100 > size ?
			    size - off - 100 : 5000);
		} else {
			ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
		}
	}
	check_model(ino, model, size);
	flyfs_stats_foreach(fs, fs_stat_cb, c1);
	if (dbs > 4096)
		ck_assert_uint_gt(c1[1], c0[1]);
	/* Pieces flushed, not yet read, then the tail cut into one. */
	for (size_t off = 0; off < size; off += 65536) {
		fill(buf, 4096, off);
		wr(ino, buf, 4096, (off_t)(off + 8192));
		memcpy(model + off + 8192, buf, 4096);
	}
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	set_size(ino, size - 65536 + 10000);
	size -= 65536 - 10000;
	check_model(ino, model, size);
	remount();
	check_model(ino, model, size);
	free(model);
	free(buf);
}
END_TEST

static Suite *
file_suite(void)
{
	Suite *s = suite_create("file");
	TCase *tc = tcase_create("data");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_rw_alignments, 0, 2);
	tcase_add_loop_test(tc, test_holes, 0, 2);
	tcase_add_loop_test(tc, test_sparse_1tib, 0, 2);
	tcase_add_loop_test(tc, test_extend, 0, 2);
	tcase_add_loop_test(tc, test_truncate, 0, 2);
	tcase_add_loop_test(tc, test_fallocate, 0, 2);
	tcase_add_loop_test(tc, test_punch_fragmented, 0, 2);
	tcase_add_loop_test(tc, test_efbig, 0, 2);
	tcase_add_loop_test(tc, test_enospc, 0, 2);
	tcase_add_loop_test(tc, test_model_remount, 0, 2);
	tcase_add_loop_test(tc, test_odirect, 0, 2);
	tcase_add_loop_test(tc, test_async_error, 0, 2);
	tcase_add_loop_test(tc, test_read_async, 0, 2);
	tcase_add_loop_test(tc, test_read_async_truncate, 0, 2);
	tcase_add_loop_test(tc, test_suid_times, 0, 2);
	tcase_add_loop_test(tc, test_subsecond_mtime, 0, 2);
	tcase_add_loop_test(tc, test_many_extents, 0, 2);
	tcase_add_loop_test(tc, test_prealloc_punched_hole, 0, 2);
	tcase_add_loop_test(tc, test_partial_blocks, 0, 2);
	tcase_add_loop_test(tc, test_dirty_pages, 0, 2);
	tcase_add_loop_test(tc, test_fsync_barrier, 0, 2);
	tcase_add_loop_test(tc, test_dirty_pages_reuse, 0, 2);
	tcase_add_loop_test(tc, test_alloc_runs, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(file_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
