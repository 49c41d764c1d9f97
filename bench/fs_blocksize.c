/*
 * fs_blocksize.c - the data block size trade-off, measured through the
 * filesystem core (flyfs_write + flyfs_fsync, no FUSE).
 *
 * For each data block size (mkfs -b 4K, 16K, 64K) on a fresh image:
 *   seq   : write FILE_MB MiB sequentially in 1 MiB calls, then fsync;
 *   rand  : into that file (cold cache after a remount), RAND_OPS
 *           aligned 4 KiB writes at random offsets, then fsync.
 * Prints MiB/s (and IOPS for rand) and the bytes the device received
 * and read, whose ratio to the bytes written is the amplification that a
 * larger data block costs small writes (read-modify-write of the block,
 * write of the whole block).
 *
 * Usage: fs_blocksize [-s FILE_MB] [-n RAND_OPS] [-c CACHE_MB] [IMAGE]
 * Without IMAGE a RAM device is used; IMAGE (created/overwritten, size
 * FILE_MB + 256 MiB) must live on a filesystem with O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "fs/flyfs.h"
#include "fs/mkfs_core.h"

static const struct flyfs_cred root = { .uid = 0, .gid = 0 };

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what, int error)
{
	fprintf(stderr, "fs_blocksize: %s: %s\n", what, strerror(error));
	exit(1);
}

static struct flyfs *
mount_it(struct blockdev *bd, long cache)
{
	struct flyfs_mount_opts o;
	struct flyfs *fs;
	char err[256];
	int error;

	memset(&o, 0, sizeof(o));
	o.compress = -1;
	o.cache_size = cache;
	if ((error = flyfs_mount_bdev(bd, &o, &fs, err, sizeof(err))) != 0) {
		fprintf(stderr, "mount: %s\n", err);
		exit(1);
	}
	return fs;
}

static void
run(uint32_t dbs, const char *image, uint64_t file_mb, long nrand,
    long cache)
{
	uint64_t dev = (file_mb + 256) << 20;
	struct flyfs_mkfs_params p;
	struct blockdev_stats s0, s1;
	struct blockdev *bd;
	struct flyfs_attr a;
	struct flyfs *fs;
	char err[256];
	size_t done;
	uint8_t *buf;
	double t0, t1;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	int error;

	if (image != NULL) {
		int fd = open(image, O_RDWR | O_CREAT, 0644);

		if (fd < 0 || ftruncate(fd, (off_t)dev) != 0)
			die(image, errno);
		close(fd);
		if ((error = blockdev_open(image, NULL, &bd, err,
		    sizeof(err))) != 0) {
			fprintf(stderr, "%s\n", err);
			exit(1);
		}
	} else if ((error = blockdev_open_ram(dev, 4096, 0, 0, &bd)) != 0) {
		die("ram device", error);
	}
	flyfs_mkfs_params_init(&p);
	p.data_block_size = dbs;
	if ((error = flyfs_mkfs(bd, &p, NULL, err, sizeof(err))) != 0) {
		fprintf(stderr, "mkfs: %s\n", err);
		exit(1);
	}
	fs = mount_it(bd, cache);
	if ((error = flyfs_mknod(fs, FLYFS_ROOT_INO, "f", S_IFREG | 0644, 0,
	    &root, &a)) != 0)
		die("mknod", error);
	buf = malloc(1 << 20);
	for (size_t i = 0; i < (1 << 20); i++)
		buf[i] = (uint8_t)(i * 131 + 7);

	blockdev_get_stats(bd, &s0);
	t0 = now();
	for (uint64_t off = 0; off < file_mb << 20; off += 1 << 20) {
		if ((error = flyfs_write(fs, a.ino, buf, 1 << 20, (off_t)off, 0,
		    &root, &done)) != 0)
			die("write", error);
	}
	if ((error = flyfs_fsync(fs, a.ino, false)) != 0)
		die("fsync", error);
	t1 = now();
	blockdev_get_stats(bd, &s1);
	printf("-b %3uK  seq   %8.1f MiB/s   device wrote %6.1f MiB for "
	    "%llu MiB\n", dbs >> 10, (double)file_mb / (t1 - t0),
	    (double)(s1.write_bytes - s0.write_bytes) / 1048576.0,
	    (unsigned long long)file_mb);

	/* Cold cache for the random phase. */
	if ((error = flyfs_unmount(fs)) != 0)
		die("unmount", error);
	fs = mount_it(bd, cache);
	blockdev_get_stats(bd, &s0);
	t0 = now();
	for (long i = 0; i < nrand; i++) {
		uint64_t off;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		off = (x % ((file_mb << 20) / 4096)) * 4096;
		buf[0] = (uint8_t)i;
		if ((error = flyfs_write(fs, a.ino, buf, 4096, (off_t)off, 0,
		    &root, &done)) != 0)
			die("write", error);
	}
	if ((error = flyfs_fsync(fs, a.ino, false)) != 0)
		die("fsync", error);
	t1 = now();
	blockdev_get_stats(bd, &s1);
	printf("-b %3uK  rand4k %7.1f MiB/s %8.0f IOPS   device read %7.1f "
	    "MiB wrote %7.1f MiB for %.1f MiB (x%.1f)\n", dbs >> 10,
	    (double)nrand * 4096 / 1048576.0 / (t1 - t0),
	    (double)nrand / (t1 - t0),
	    (double)(s1.read_bytes - s0.read_bytes) / 1048576.0,
	    (double)(s1.write_bytes - s0.write_bytes) / 1048576.0,
	    (double)nrand * 4096 / 1048576.0,
	    (double)(s1.write_bytes - s0.write_bytes) /
	    ((double)nrand * 4096));
	fflush(stdout);
	if ((error = flyfs_unmount(fs)) != 0)
		die("unmount", error);
	blockdev_close(bd);
	free(buf);
}

int
main(int argc, char **argv)
{
	static const uint32_t sizes[] = { 4096, 16384, 65536 };
	uint64_t file_mb = 256;
	long nrand = 20000, cache_mb = 64;
	int c;

	while ((c = getopt(argc, argv, "s:n:c:")) != -1) {
		switch (c) {
		case 's':
			file_mb = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			nrand = strtol(optarg, NULL, 0);
			break;
		case 'c':
			cache_mb = strtol(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: fs_blocksize [-s FILE_MB] "
			    "[-n RAND_OPS] [-c CACHE_MB] [IMAGE]\n");
			return 2;
		}
	}
	printf("file %llu MiB, %ld random 4 KiB writes, cache %ld MiB, %s\n",
	    (unsigned long long)file_mb, nrand, cache_mb,
	    optind < argc ? argv[optind] : "RAM device");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		run(sizes[i], optind < argc ? argv[optind] : NULL, file_mb,
		    nrand, cache_mb << 20);
	return 0;
}
