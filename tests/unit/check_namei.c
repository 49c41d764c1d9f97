/*
 * check_namei.c - unit tests of the namespace operations of fs/flyfs.h
 * (fs/namei.c) and of stored xattrs (fs/xattr.c).
 *
 * Every test runs on a fresh RAM block device with a fresh filesystem,
 * once with the smallest data block size (4 KiB) and once with the
 * largest (128 KiB): a loop test, _i selecting the size.  Tests check each
 * operation, its error cases, link counts and timestamps, and the result
 * again after unmount and mount; every unmount (remount and teardown) is
 * followed by fsck -n -f, which must find nothing (FLYFS_TEST_FSCK=0
 * turns that off, to tell a namespace bug from an fsck one).
 *
 * FLYFS_SCALE=1 enables test_scale_million: one directory with a million
 * files (create, lookup, readdir, remove) on an image file under
 * /var/tmp, printing the time of each phase and the peak RSS.
 */
#include <check.h>
#include "test_scale.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "fs/flyfs.h"
#include "fs/fsck_core.h"
#include "fs/mkfs_core.h"
#include "fsck_util.h"

#define DEV_BYTES	(256ULL << 20)
#define LINK_MAX_FLYFS	65000

static const uint32_t dbsizes[] = { 4096, 131072 };
static const struct flyfs_cred root = { .uid = 0, .gid = 0 };

static struct blockdev *bd;
static struct flyfs *fs;
static char err[512];

static void
mount_it(void)
{
	ck_assert_msg(flyfs_mount_bdev(bd, NULL, &fs, err, sizeof(err)) == 0,
	    "mount: %s", err);
}

/* Fresh filesystem with data block size DBS on a device of BYTES. */
static void
make_fs(uint32_t dbs, uint64_t bytes)
{
	struct flyfs_mkfs_params p;

	ck_assert_int_eq(blockdev_open_ram(bytes, 4096, 0, 0, &bd), 0);
	flyfs_mkfs_params_init(&p);
	p.data_block_size = dbs;
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0,
	    "mkfs: %s", err);
	mount_it();
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
mkfile_as(uint64_t dir, const char *name, mode_t mode,
    const struct flyfs_cred *cr)
{
	struct flyfs_attr a;

	ck_assert_int_eq(flyfs_mknod(fs, dir, name, mode, 0, cr, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	return a.ino;
}

static uint64_t
mkfile(uint64_t dir, const char *name)
{
	return mkfile_as(dir, name, S_IFREG | 0644, &root);
}

static uint64_t
mkdir_(uint64_t dir, const char *name)
{
	struct flyfs_attr a;

	ck_assert_int_eq(flyfs_mkdir(fs, dir, name, 0755, &root, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	return a.ino;
}

/* Look NAME up: its attributes in *A (may be NULL), errno returned. */
static int
lk(uint64_t dir, const char *name, struct flyfs_attr *a)
{
	struct flyfs_attr tmp;
	int e = flyfs_lookup(fs, dir, name, &tmp);

	if (e == 0) {
		flyfs_forget(fs, tmp.ino, 1);
		if (a != NULL)
			*a = tmp;
	}
	return e;
}

static uint64_t
ino_of(uint64_t dir, const char *name)
{
	struct flyfs_attr a;

	ck_assert_int_eq(lk(dir, name, &a), 0);
	return a.ino;
}

static struct flyfs_attr
attr(uint64_t ino)
{
	struct flyfs_attr a;

	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	return a;
}

static int
ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	return a.tv_nsec < b.tv_nsec ? -1 : a.tv_nsec > b.tv_nsec;
}

/* Readdir into arrays. */
struct rd {
	size_t n, cap, limit;
	char (*name)[256];
	uint64_t *ino, *cookie;
	unsigned *type;
	bool plus;
};

static int
rd_fill(void *arg, const char *name, size_t len, uint64_t ino,
    unsigned type, uint64_t cookie, const struct flyfs_attr *a)
{
	struct rd *r = arg;

	if (r->limit != 0 && r->n == r->limit)
		return 1;
	if (r->plus)
		ck_assert_ptr_nonnull(a);
	if (a != NULL)
		ck_assert_uint_eq(a->ino, ino);
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 256;
		r->name = realloc(r->name, r->cap * sizeof(*r->name));
		r->ino = realloc(r->ino, r->cap * sizeof(*r->ino));
		r->cookie = realloc(r->cookie, r->cap * sizeof(*r->cookie));
		r->type = realloc(r->type, r->cap * sizeof(*r->type));
	}
	memcpy(r->name[r->n], name, len);
	r->name[r->n][len] = '\0';
	r->ino[r->n] = ino;
	r->cookie[r->n] = cookie;
	r->type[r->n] = type;
	r->n++;
	return 0;
}

static void
rd_free(struct rd *r)
{
	free(r->name);
	free(r->ino);
	free(r->cookie);
	free(r->type);
	memset(r, 0, sizeof(*r));
}

/* Index of NAME in R, or -1. */
static long
rd_find(const struct rd *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->name[i], name) == 0)
			return (long)i;
	return -1;
}

static void
readall(uint64_t dir, struct rd *r)
{
	ck_assert_int_eq(flyfs_readdir(fs, dir, 0, r->plus, rd_fill, r), 0);
}

/* ---- mknod / lookup --------------------------------------------------- */

START_TEST(test_mknod_types)
{
	static const mode_t types[] = { S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR,
	    S_IFBLK };
	static const unsigned dt[] = { DT_REG, DT_FIFO, DT_SOCK, DT_CHR,
	    DT_BLK };
	struct flyfs_cred user = { .uid = 1000, .gid = 100 };
	struct flyfs_attr a, d0, d1;
	struct rd r = { 0 };
	char nm[16];

	make_fs(dbsizes[_i], DEV_BYTES);
	d0 = attr(FLYFS_ROOT_INO);
	for (int i = 0; i < 5; i++) {
		snprintf(nm, sizeof(nm), "n%d", i);
		ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, nm,
		    types[i] | 0640, makedev(8, i), &user, &a), 0);
		flyfs_forget(fs, a.ino, 1);
		ck_assert_uint_eq(a.mode, types[i] | 0640);
		ck_assert_uint_eq(a.uid, 1000);
		ck_assert_uint_eq(a.gid, 100);
		ck_assert_uint_eq(a.nlink, 1);
		ck_assert_uint_eq(a.size, 0);
		if (S_ISCHR(types[i]) || S_ISBLK(types[i]))
			ck_assert_uint_eq(a.rdev, makedev(8, i));
	}
	/* No type bits: a regular file. */
	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, "plain", 0600, 0,
	    &root, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	ck_assert_uint_eq(a.mode, S_IFREG | 0600);
	d1 = attr(FLYFS_ROOT_INO);
	ck_assert_int_ge(ts_cmp(d1.mtime, d0.mtime), 0);
	ck_assert_int_ge(ts_cmp(d1.ctime, d0.ctime), 0);
	ck_assert_int_eq(ts_cmp(d1.mtime, d1.ctime), 0);
	ck_assert_uint_eq(d1.nlink, d0.nlink);
	remount();
	r.plus = true;
	readall(FLYFS_ROOT_INO, &r);
	for (int i = 0; i < 5; i++) {
		long k;

		snprintf(nm, sizeof(nm), "n%d", i);
		ck_assert_int_eq(lk(FLYFS_ROOT_INO, nm, &a), 0);
		ck_assert_uint_eq(a.mode, types[i] | 0640);
		k = rd_find(&r, nm);
		ck_assert_int_ge(k, 0);
		ck_assert_uint_eq(r.type[k], dt[i]);
		ck_assert_uint_eq(r.ino[k], a.ino);
		flyfs_forget(fs, a.ino, 1);	/* readdirplus reference */
		if (S_ISCHR(types[i]) || S_ISBLK(types[i]))
			ck_assert_uint_eq(a.rdev, makedev(8, i));
	}
	rd_free(&r);
}
END_TEST

START_TEST(test_create_errors)
{
	struct flyfs_attr a;
	char longname[300];
	uint64_t f;

	make_fs(dbsizes[_i], DEV_BYTES);
	f = mkfile(FLYFS_ROOT_INO, "f");
	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, "f", S_IFREG | 0644,
	    0, &root, &a), EEXIST);
	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, "f", 0755, &root,
	    &a), EEXIST);
	ck_assert_int_eq(flyfs_symlink(fs, FLYFS_ROOT_INO, "f", "x", &root,
	    &a), EEXIST);
	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, "lost+found", 0755,
	    &root, &a), EEXIST);
	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, ".", S_IFREG, 0,
	    &root, &a), EEXIST);
	ck_assert_int_eq(flyfs_mknod(fs, f, "x", S_IFREG, 0, &root, &a),
	    ENOTDIR);
	ck_assert_int_eq(flyfs_mkdir(fs, f, "x", 0755, &root, &a), ENOTDIR);
	ck_assert_int_eq(lk(f, "x", NULL), ENOTDIR);
	ck_assert_int_eq(lk(FLYFS_ROOT_INO, "nope", NULL), ENOENT);
	ck_assert_int_eq(lk(123456, "x", NULL), ENOENT);
	memset(longname, 'a', 255);
	longname[255] = '\0';
	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, longname, S_IFREG,
	    0, &root, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	ck_assert_int_eq(lk(FLYFS_ROOT_INO, longname, NULL), 0);
	longname[255] = 'a';
	longname[256] = '\0';
	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, longname, S_IFREG,
	    0, &root, &a), ENAMETOOLONG);
	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, longname, 0755,
	    &root, &a), ENAMETOOLONG);
	ck_assert_int_eq(lk(FLYFS_ROOT_INO, longname, NULL), ENAMETOOLONG);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, longname, &root),
	    ENAMETOOLONG);
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "f", FLYFS_ROOT_INO,
	    longname, 0, &root), ENAMETOOLONG);
	ck_assert_int_eq(flyfs_link(fs, f, FLYFS_ROOT_INO, longname, &a),
	    ENAMETOOLONG);
	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, "", S_IFREG, 0,
	    &root, &a), ENOENT);
}
END_TEST

START_TEST(test_lookup_dots)
{
	struct flyfs_attr a;
	uint64_t d;

	make_fs(dbsizes[_i], DEV_BYTES);
	d = mkdir_(FLYFS_ROOT_INO, "d");
	ck_assert_int_eq(lk(d, ".", &a), 0);
	ck_assert_uint_eq(a.ino, d);
	ck_assert_int_eq(lk(d, "..", &a), 0);
	ck_assert_uint_eq(a.ino, FLYFS_ROOT_INO);
	ck_assert_int_eq(lk(FLYFS_ROOT_INO, "..", &a), 0);
	ck_assert_uint_eq(a.ino, FLYFS_ROOT_INO);
}
END_TEST

/* ---- mkdir / rmdir ------------------------------------------------------ */

START_TEST(test_mkdir_rmdir)
{
	struct flyfs_attr a, r0;
	uint64_t d, e;
	struct rd r = { 0 };

	make_fs(dbsizes[_i], DEV_BYTES);
	r0 = attr(FLYFS_ROOT_INO);
	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, "d", 01777, &root,
	    &a), 0);
	flyfs_forget(fs, a.ino, 1);
	d = a.ino;
	ck_assert_uint_eq(a.mode, S_IFDIR | 01777);
	ck_assert_uint_eq(a.nlink, 2);
	ck_assert_uint_eq(attr(FLYFS_ROOT_INO).nlink, r0.nlink + 1);
	e = mkdir_(d, "e");
	mkfile(e, "file");
	ck_assert_uint_eq(attr(d).nlink, 3);
	remount();
	ck_assert_uint_eq(attr(d).nlink, 3);
	ck_assert_uint_eq(attr(e).nlink, 2);
	readall(e, &r);
	ck_assert_uint_eq(r.n, 3);
	ck_assert_str_eq(r.name[0], ".");
	ck_assert_uint_eq(r.ino[0], e);
	ck_assert_uint_eq(r.cookie[0], 1);
	ck_assert_str_eq(r.name[1], "..");
	ck_assert_uint_eq(r.ino[1], d);
	ck_assert_uint_eq(r.cookie[1], 2);
	ck_assert_uint_eq(r.type[1], DT_DIR);
	ck_assert_str_eq(r.name[2], "file");
	ck_assert_uint_ge(r.cookie[2], 1ULL << 32);
	rd_free(&r);
	ck_assert_int_eq(flyfs_rmdir(fs, d, "e", &root), ENOTEMPTY);
	ck_assert_int_eq(flyfs_rmdir(fs, e, "file", &root), ENOTDIR);
	ck_assert_int_eq(flyfs_unlink(fs, d, "e", &root), EISDIR);
	ck_assert_int_eq(flyfs_rmdir(fs, d, "nope", &root), ENOENT);
	ck_assert_int_eq(flyfs_rmdir(fs, d, ".", &root), EINVAL);
	ck_assert_int_eq(flyfs_rmdir(fs, d, "..", &root), ENOTEMPTY);
	ck_assert_int_eq(flyfs_unlink(fs, e, "file", &root), 0);
	ck_assert_int_eq(flyfs_rmdir(fs, d, "e", &root), 0);
	ck_assert_int_eq(lk(d, "e", NULL), ENOENT);
	ck_assert_uint_eq(attr(d).nlink, 2);
	ck_assert_int_eq(flyfs_rmdir(fs, FLYFS_ROOT_INO, "d", &root), 0);
	ck_assert_uint_eq(attr(FLYFS_ROOT_INO).nlink, r0.nlink);
	remount();
	ck_assert_int_eq(lk(FLYFS_ROOT_INO, "d", NULL), ENOENT);
}
END_TEST

/* A removed directory still referenced refuses new entries. */
START_TEST(test_create_in_removed_dir)
{
	struct flyfs_attr a;
	uint64_t d;

	make_fs(dbsizes[_i], DEV_BYTES);
	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, "d", 0755, &root,
	    &a), 0);
	d = a.ino;			/* keep the lookup reference */
	ck_assert_int_eq(flyfs_rmdir(fs, FLYFS_ROOT_INO, "d", &root), 0);
	ck_assert_int_eq(flyfs_mknod(fs, d, "x", S_IFREG, 0, &root, &a),
	    ENOENT);
	ck_assert_int_eq(flyfs_mkdir(fs, d, "x", 0755, &root, &a), ENOENT);
	ck_assert_uint_eq(attr(d).nlink, 0);
	flyfs_forget(fs, d, 1);
}
END_TEST

/* ---- symlinks ----------------------------------------------------------- */

START_TEST(test_symlink)
{
	static const size_t lens[] = { 1, 111, 112, 113, 1000, 4095 };
	char target[4200], buf[4200], nm[32];
	struct flyfs_attr a;
	size_t len;
	uint64_t f;

	make_fs(dbsizes[_i], DEV_BYTES);
	for (size_t i = 0; i < sizeof(target); i++)
		target[i] = (char)('a' + i % 26);
	for (size_t i = 0; i < 6; i++) {
		char t[4200];

		memcpy(t, target, lens[i]);
		t[lens[i]] = '\0';
		snprintf(nm, sizeof(nm), "l%zu", lens[i]);
		ck_assert_int_eq(flyfs_symlink(fs, FLYFS_ROOT_INO, nm, t,
		    &root, &a), 0);
		flyfs_forget(fs, a.ino, 1);
		ck_assert_uint_eq(a.mode, S_IFLNK | 0777);
		ck_assert_uint_eq(a.size, lens[i]);
		ck_assert_int_eq(flyfs_readlink(fs, a.ino, buf, sizeof(buf),
		    &len), 0);
		ck_assert_uint_eq(len, lens[i]);
		ck_assert_mem_eq(buf, target, len);
		ck_assert_int_eq(flyfs_readlink(fs, a.ino, buf, lens[i] - 1,
		    &len), ERANGE);
	}
	target[4096] = '\0';
	ck_assert_int_eq(flyfs_symlink(fs, FLYFS_ROOT_INO, "toolong", target,
	    &root, &a), ENAMETOOLONG);
	ck_assert_int_eq(flyfs_symlink(fs, FLYFS_ROOT_INO, "empty", "",
	    &root, &a), ENOENT);
	f = mkfile(FLYFS_ROOT_INO, "f");
	ck_assert_int_eq(flyfs_readlink(fs, f, buf, sizeof(buf), &len),
	    EINVAL);
	remount();
	for (size_t i = 0; i < 6; i++) {
		snprintf(nm, sizeof(nm), "l%zu", lens[i]);
		ck_assert_int_eq(flyfs_readlink(fs, ino_of(FLYFS_ROOT_INO, nm),
		    buf, sizeof(buf), &len), 0);
		ck_assert_uint_eq(len, lens[i]);
		ck_assert_mem_eq(buf, target, len);
	}
	/* Removing the long ones frees their blocks (fsck at teardown). */
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "l4095", &root), 0);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "l113", &root), 0);
}
END_TEST

/* ---- link / unlink ---------------------------------------------------------- */

START_TEST(test_link_unlink)
{
	struct flyfs_attr a, b;
	uint64_t f, d;
	struct timespec c0;

	make_fs(dbsizes[_i], DEV_BYTES);
	f = mkfile(FLYFS_ROOT_INO, "f");
	d = mkdir_(FLYFS_ROOT_INO, "d");
	c0 = attr(f).ctime;
	ck_assert_int_eq(flyfs_link(fs, f, d, "g", &a), 0);
	flyfs_forget(fs, a.ino, 1);
	ck_assert_uint_eq(a.ino, f);
	ck_assert_uint_eq(a.nlink, 2);
	ck_assert_int_ge(ts_cmp(a.ctime, c0), 0);
	ck_assert_int_eq(flyfs_link(fs, f, d, "g", &a), EEXIST);
	ck_assert_int_eq(flyfs_link(fs, d, FLYFS_ROOT_INO, "dd", &a), EPERM);
	ck_assert_int_eq(flyfs_link(fs, f, f, "x", &a), ENOTDIR);
	remount();
	ck_assert_int_eq(lk(d, "g", &b), 0);
	ck_assert_uint_eq(b.ino, f);
	ck_assert_uint_eq(b.nlink, 2);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "f", &root), 0);
	ck_assert_uint_eq(attr(f).nlink, 1);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "f", &root), ENOENT);
	ck_assert_int_eq(flyfs_unlink(fs, f, "x", &root), ENOTDIR);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "d", &root), EISDIR);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, ".", &root), EISDIR);
	/* Last link of an open file: it stays readable until released. */
	ck_assert_int_eq(flyfs_open(fs, f, 0), 0);
	ck_assert_int_eq(flyfs_unlink(fs, d, "g", &root), 0);
	ck_assert_uint_eq(attr(f).nlink, 0);
	ck_assert_int_eq(flyfs_link(fs, f, d, "back", &a), ENOENT);
	ck_assert_int_eq(flyfs_release(fs, f), 0);
	remount();
	ck_assert_int_eq(lk(d, "g", NULL), ENOENT);
	ck_assert_int_ne(flyfs_getattr(fs, f, &a), 0);
}
END_TEST

START_TEST(test_emlink)
{
	struct flyfs_attr a;
	uint64_t f, d;
	char nm[32];

	make_fs(4096, DEV_BYTES);
	f = mkfile(FLYFS_ROOT_INO, "f");
	d = mkdir_(FLYFS_ROOT_INO, "d");
	for (int i = 1; i < LINK_MAX_FLYFS; i++) {
		snprintf(nm, sizeof(nm), "l%d", i);
		ck_assert_int_eq(flyfs_link(fs, f, d, nm, &a), 0);
		flyfs_forget(fs, f, 1);
	}
	ck_assert_uint_eq(attr(f).nlink, LINK_MAX_FLYFS);
	ck_assert_int_eq(flyfs_link(fs, f, d, "one-more", &a), EMLINK);
	ck_assert_int_eq(flyfs_unlink(fs, d, "l1", &root), 0);
	ck_assert_int_eq(flyfs_link(fs, f, d, "one-more", &a), 0);
	flyfs_forget(fs, f, 1);
}
END_TEST

/* ---- sticky directories ------------------------------------------------------ */

START_TEST(test_sticky)
{
	struct flyfs_cred owner = { .uid = 1000, .gid = 1000 };
	struct flyfs_cred alice = { .uid = 1001, .gid = 1001 };
	struct flyfs_cred bob = { .uid = 1002, .gid = 1002 };
	struct flyfs_attr a;
	uint64_t t;

	make_fs(dbsizes[_i], DEV_BYTES);
	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, "tmp", 01777,
	    &owner, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	t = a.ino;
	ck_assert_uint_eq(a.uid, 1000);
	mkfile_as(t, "a1", S_IFREG | 0666, &alice);
	mkfile_as(t, "a2", S_IFREG | 0666, &alice);
	mkfile_as(t, "a3", S_IFREG | 0666, &alice);
	mkfile_as(t, "a4", S_IFREG | 0666, &alice);
	mkfile_as(t, "b1", S_IFREG | 0666, &bob);
	ck_assert_int_eq(flyfs_mkdir(fs, t, "ad", 0777, &alice, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	ck_assert_int_eq(flyfs_unlink(fs, t, "a1", &bob), EPERM);
	ck_assert_int_eq(flyfs_rmdir(fs, t, "ad", &bob), EPERM);
	ck_assert_int_eq(flyfs_rename(fs, t, "a1", t, "x", 0, &bob), EPERM);
	/* bob may not replace alice's file with his own either. */
	ck_assert_int_eq(flyfs_rename(fs, t, "b1", t, "a1", 0, &bob), EPERM);
	ck_assert_int_eq(flyfs_unlink(fs, t, "a1", &alice), 0);
	ck_assert_int_eq(flyfs_unlink(fs, t, "a2", &owner), 0);
	ck_assert_int_eq(flyfs_unlink(fs, t, "a3", &root), 0);
	ck_assert_int_eq(flyfs_rmdir(fs, t, "ad", &alice), 0);
	ck_assert_int_eq(flyfs_rename(fs, t, "b1", t, "b2", 0, &bob), 0);
	/* Without the sticky bit anyone (the kernel checked w) may. */
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "tmp", &bob), EISDIR);
	ck_assert_int_eq(flyfs_rename(fs, t, "a4", FLYFS_ROOT_INO, "a4", 0,
	    &bob), EPERM);
	mkfile_as(FLYFS_ROOT_INO, "r1", S_IFREG | 0666, &alice);
	ck_assert_int_eq(flyfs_unlink(fs, FLYFS_ROOT_INO, "r1", &bob), 0);
}
END_TEST

/* ---- rename ---------------------------------------------------------------------- */

START_TEST(test_rename_files)
{
	struct flyfs_attr a;
	uint64_t f, g, d, e;
	struct timespec dm;

	make_fs(dbsizes[_i], DEV_BYTES);
	f = mkfile(FLYFS_ROOT_INO, "f");
	g = mkfile(FLYFS_ROOT_INO, "g");
	d = mkdir_(FLYFS_ROOT_INO, "d");
	e = mkdir_(FLYFS_ROOT_INO, "e");
	dm = attr(d).mtime;
	/* Plain move to another directory. */
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "f", d, "f2", 0,
	    &root), 0);
	ck_assert_int_eq(lk(FLYFS_ROOT_INO, "f", NULL), ENOENT);
	ck_assert_uint_eq(ino_of(d, "f2"), f);
	ck_assert_int_ge(ts_cmp(attr(d).mtime, dm), 0);
	/* Overwrite: g replaced by f, g's last link goes. */
	ck_assert_int_eq(flyfs_rename(fs, d, "f2", FLYFS_ROOT_INO, "g", 0,
	    &root), 0);
	ck_assert_uint_eq(ino_of(FLYFS_ROOT_INO, "g"), f);
	ck_assert_int_ne(flyfs_getattr(fs, g, &a), 0);
	/* Same inode under two names: nothing happens. */
	ck_assert_int_eq(flyfs_link(fs, f, d, "h", &a), 0);
	flyfs_forget(fs, f, 1);
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "g", d, "h", 0,
	    &root), 0);
	ck_assert_uint_eq(ino_of(FLYFS_ROOT_INO, "g"), f);
	ck_assert_uint_eq(ino_of(d, "h"), f);
	ck_assert_uint_eq(attr(f).nlink, 2);
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "g", FLYFS_ROOT_INO,
	    "g", 0, &root), 0);
	/* Errors. */
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "nope", d, "x", 0,
	    &root), ENOENT);
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "g", d, "e", 0,
	    &root), 0);
	ck_assert_int_eq(flyfs_rename(fs, d, "e", FLYFS_ROOT_INO, "e", 0,
	    &root), EISDIR);
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "e", d, "e", 0,
	    &root), ENOTDIR);
	ck_assert_int_eq(flyfs_rename(fs, d, "e", d, "h",
	    FLYFS_RENAME_NOREPLACE, &root), EEXIST);	/* as Linux */
	mkfile(d, "z");
	ck_assert_int_eq(flyfs_rename(fs, d, "e", d, "z",
	    FLYFS_RENAME_NOREPLACE, &root), EEXIST);
	ck_assert_int_eq(flyfs_rename(fs, d, "e", d, "z",
	    FLYFS_RENAME_NOREPLACE | FLYFS_RENAME_EXCHANGE, &root), EINVAL);
	ck_assert_int_eq(flyfs_rename(fs, d, "e", d, "nope",
	    FLYFS_RENAME_EXCHANGE, &root), ENOENT);
	ck_assert_int_eq(flyfs_rename(fs, d, "e", f, "x", 0, &root), ENOTDIR);
	ck_assert_int_eq(flyfs_rename(fs, d, ".", d, "x", 0, &root), EINVAL);
	ck_assert_int_eq(flyfs_rename(fs, d, "e", d, "..", 0, &root), EINVAL);
	ck_assert_int_eq(flyfs_rename(fs, d, "e", d, "new",
	    FLYFS_RENAME_NOREPLACE, &root), 0);
	remount();
	ck_assert_uint_eq(ino_of(d, "new"), f);
	ck_assert_uint_eq(ino_of(d, "h"), f);
	ck_assert_uint_eq(ino_of(FLYFS_ROOT_INO, "e"), e);
	ck_assert_uint_eq(attr(f).nlink, 2);
}
END_TEST

START_TEST(test_rename_dirs)
{
	struct flyfs_attr a;
	uint64_t a_, b, c, x, y, r0;

	make_fs(dbsizes[_i], DEV_BYTES);
	r0 = attr(FLYFS_ROOT_INO).nlink;
	a_ = mkdir_(FLYFS_ROOT_INO, "a");
	b = mkdir_(a_, "b");
	c = mkdir_(b, "c");
	x = mkdir_(FLYFS_ROOT_INO, "x");
	/* Into its own subtree, or onto itself as a parent. */
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "a", c, "a", 0,
	    &root), EINVAL);
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "a", a_, "a2", 0,
	    &root), EINVAL);
	ck_assert_int_eq(flyfs_rename(fs, a_, "b", c, "b", 0, &root), EINVAL);
	/* Move b (with c) under x: "..", link counts. */
	ck_assert_int_eq(flyfs_rename(fs, a_, "b", x, "b", 0, &root), 0);
	ck_assert_int_eq(lk(b, "..", &a), 0);
	ck_assert_uint_eq(a.ino, x);
	ck_assert_uint_eq(attr(a_).nlink, 2);
	ck_assert_uint_eq(attr(x).nlink, 3);
	ck_assert_uint_eq(attr(b).nlink, 3);
	/* Dir over an empty dir; over a non-empty one. */
	y = mkdir_(a_, "y");
	ck_assert_int_eq(flyfs_rename(fs, x, "b", a_, "y", 0, &root), 0);
	ck_assert_int_ne(flyfs_getattr(fs, y, &a), 0);
	ck_assert_uint_eq(ino_of(a_, "y"), b);
	ck_assert_uint_eq(attr(a_).nlink, 3);
	ck_assert_uint_eq(attr(x).nlink, 2);
	mkdir_(x, "full");
	mkfile(ino_of(x, "full"), "f");
	ck_assert_int_eq(flyfs_rename(fs, a_, "y", x, "full", 0, &root),
	    ENOTEMPTY);
	/* Same-directory rename of a directory keeps the counts. */
	ck_assert_int_eq(flyfs_rename(fs, a_, "y", a_, "b", 0, &root), 0);
	ck_assert_uint_eq(attr(a_).nlink, 3);
	remount();
	ck_assert_int_eq(lk(b, "..", &a), 0);
	ck_assert_uint_eq(a.ino, a_);
	ck_assert_int_eq(lk(c, "..", &a), 0);
	ck_assert_uint_eq(a.ino, b);
	ck_assert_uint_eq(attr(FLYFS_ROOT_INO).nlink, r0 + 2);
}
END_TEST

START_TEST(test_rename_exchange)
{
	struct flyfs_attr a;
	uint64_t d1, d2, f, s, k;

	make_fs(dbsizes[_i], DEV_BYTES);
	d1 = mkdir_(FLYFS_ROOT_INO, "d1");
	d2 = mkdir_(FLYFS_ROOT_INO, "d2");
	f = mkfile(d1, "f");
	s = mkdir_(d2, "s");
	mkdir_(s, "inner");
	/* file <-> directory across directories */
	ck_assert_int_eq(flyfs_rename(fs, d1, "f", d2, "s",
	    FLYFS_RENAME_EXCHANGE, &root), 0);
	ck_assert_uint_eq(ino_of(d1, "f"), s);
	ck_assert_uint_eq(ino_of(d2, "s"), f);
	ck_assert_int_eq(lk(s, "..", &a), 0);
	ck_assert_uint_eq(a.ino, d1);
	ck_assert_uint_eq(attr(d1).nlink, 3);
	ck_assert_uint_eq(attr(d2).nlink, 2);
	/* Exchanging a directory with its own descendant's parent. */
	k = ino_of(s, "inner");
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "d1", k, "..",
	    FLYFS_RENAME_EXCHANGE, &root), EINVAL);
	mkfile(k, "deep");
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "d1", k, "deep",
	    FLYFS_RENAME_EXCHANGE, &root), EINVAL);
	/* Non-empty directories may be exchanged. */
	ck_assert_int_eq(flyfs_rename(fs, FLYFS_ROOT_INO, "d1",
	    FLYFS_ROOT_INO, "d2", FLYFS_RENAME_EXCHANGE, &root), 0);
	ck_assert_uint_eq(ino_of(FLYFS_ROOT_INO, "d1"), d2);
	ck_assert_uint_eq(ino_of(FLYFS_ROOT_INO, "d2"), d1);
	remount();
	ck_assert_uint_eq(ino_of(d1, "f"), s);
	ck_assert_uint_eq(ino_of(d2, "s"), f);
	ck_assert_int_eq(lk(s, "..", &a), 0);
	ck_assert_uint_eq(a.ino, d1);
}
END_TEST

/* ---- readdir -------------------------------------------------------------------------- */

START_TEST(test_readdir_cookies)
{
	const int n = 3000;
	struct rd r1 = { .limit = 1000 }, r2 = { 0 }, all = { 0 };
	uint64_t d, last;
	char nm[32];
	uint8_t *seen = calloc((size_t)n * 2, 1);

	make_fs(dbsizes[_i], 512ULL << 20);
	d = mkdir_(FLYFS_ROOT_INO, "d");
	for (int i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "f%d", i);
		mkfile(d, nm);
	}
	readall(d, &all);
	ck_assert_uint_eq(all.n, (size_t)n + 2);
	for (size_t i = 1; i < all.n; i++)
		ck_assert_uint_gt(all.cookie[i], all.cookie[i - 1]);
	ck_assert_int_eq(flyfs_readdir(fs, d, 0, false, rd_fill, &r1), 0);
	ck_assert_uint_eq(r1.n, 1000);
	last = r1.cookie[r1.n - 1];
	for (size_t i = 2; i < r1.n; i++)
		seen[atoi(r1.name[i] + 1)] = 1;
	/* Change the directory on both sides of the cookie. */
	for (int i = 0; i < n; i += 4) {
		snprintf(nm, sizeof(nm), "f%d", i);
		ck_assert_int_eq(flyfs_unlink(fs, d, nm, &root), 0);
		if (!seen[i])
			seen[i] = 2;
	}
	for (int i = n; i < 2 * n; i++) {
		snprintf(nm, sizeof(nm), "f%d", i);
		mkfile(d, nm);
	}
	remount();
	ck_assert_int_eq(flyfs_readdir(fs, d, last, true, rd_fill, &r2), 0);
	for (size_t i = 0; i < r2.n; i++) {
		int k = atoi(r2.name[i] + 1);

		ck_assert_uint_gt(r2.cookie[i], last);
		ck_assert_int_ne(seen[k], 1);
		ck_assert_int_ne(seen[k], 2);
		seen[k] = 3;
		flyfs_forget(fs, r2.ino[i], 1);
	}
	for (int i = 0; i < n; i++)
		ck_assert_msg(seen[i] != 0, "f%d skipped", i);
	/* Resuming after "." gives "..", then the entries. */
	rd_free(&r1);
	r1.limit = 2;
	ck_assert_int_eq(flyfs_readdir(fs, d, 1, false, rd_fill, &r1), 0);
	ck_assert_str_eq(r1.name[0], "..");
	ck_assert_uint_ge(r1.cookie[1], 1ULL << 32);
	rd_free(&r1);
	rd_free(&r2);
	rd_free(&all);
	free(seen);
}
END_TEST

/* The 100k-entry directory through the public API. */
START_TEST(test_100k_files)
{
	const int n = TEST_SCALE(100000);
	struct rd r = { 0 };
	uint64_t d;
	char nm[32];

	make_fs(dbsizes[_i], 1ULL << 30);
	d = mkdir_(FLYFS_ROOT_INO, "big");
	for (int i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%d", i);
		mkfile(d, nm);
	}
	remount();
	for (int i = 0; i < n; i += 3) {
		snprintf(nm, sizeof(nm), "file-%d", i);
		ck_assert_int_eq(lk(d, nm, NULL), 0);
	}
	readall(d, &r);
	ck_assert_uint_eq(r.n, (size_t)n + 2);
	rd_free(&r);
	for (int i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%d", i);
		ck_assert_int_eq(flyfs_unlink(fs, d, nm, &root), 0);
	}
	ck_assert_int_eq(flyfs_rmdir(fs, FLYFS_ROOT_INO, "big", &root), 0);
}
END_TEST

/* ---- xattrs ------------------------------------------------------------------------------ */

START_TEST(test_xattr)
{
	char buf[8192], list[1024];
	size_t len;
	uint64_t f;

	make_fs(dbsizes[_i], DEV_BYTES);
	f = mkfile(FLYFS_ROOT_INO, "f");
	ck_assert_int_eq(flyfs_getxattr(fs, f, "user.a", buf, sizeof(buf),
	    &len), ENODATA);
	ck_assert_int_eq(flyfs_listxattr(fs, f, list, sizeof(list), &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "user.a", "hello", 5, 0), 0);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "trusted.t", "", 0, 0), 0);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "security.selinux", "ctx", 3,
	    0), 0);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "user.a", "x", 1,
	    FLYFS_XATTR_CREATE), EEXIST);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "user.b", "x", 1,
	    FLYFS_XATTR_REPLACE), ENODATA);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "user.a", "bye", 3,
	    FLYFS_XATTR_REPLACE), 0);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "system.posix_acl_access", "x",
	    1, 0), EOPNOTSUPP);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "flyfs.vfs.x", "x", 1, 0),
	    EOPNOTSUPP);
	ck_assert_int_eq(flyfs_setxattr(fs, f, "noprefix", "x", 1, 0),
	    EOPNOTSUPP);
	ck_assert_int_eq(flyfs_getxattr(fs, f, "user.a", buf, 0, &len), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(flyfs_getxattr(fs, f, "user.a", buf, 2, &len),
	    ERANGE);
	ck_assert_int_eq(flyfs_getxattr(fs, f, "user.a", buf, sizeof(buf),
	    &len), 0);
	ck_assert_mem_eq(buf, "bye", 3);
	ck_assert_int_eq(flyfs_getxattr(fs, f, "trusted.t", buf, sizeof(buf),
	    &len), 0);
	ck_assert_uint_eq(len, 0);
	remount();
	ck_assert_int_eq(flyfs_listxattr(fs, f, list, 0, &len), 0);
	ck_assert_uint_eq(len, sizeof("user.a") + sizeof("trusted.t") +
	    sizeof("security.selinux"));
	ck_assert_int_eq(flyfs_listxattr(fs, f, list, len - 1, &len), ERANGE);
	ck_assert_int_eq(flyfs_listxattr(fs, f, list, sizeof(list), &len), 0);
	ck_assert_mem_eq(list, "user.a\0trusted.t\0security.selinux\0", len);
	ck_assert_int_eq(flyfs_getxattr(fs, f, "security.selinux", buf,
	    sizeof(buf), &len), 0);
	ck_assert_mem_eq(buf, "ctx", 3);
	ck_assert_int_eq(flyfs_removexattr(fs, f, "user.a"), 0);
	ck_assert_int_eq(flyfs_removexattr(fs, f, "user.a"), ENODATA);
	ck_assert_int_eq(flyfs_removexattr(fs, f, "trusted.t"), 0);
	ck_assert_int_eq(flyfs_removexattr(fs, f, "security.selinux"), 0);
	ck_assert_int_eq(flyfs_listxattr(fs, f, list, sizeof(list), &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_uint_eq(attr(f).blocks, 0);	/* the block is gone */
}
END_TEST

/*
 * A write, a truncate and a chown drop security.capability and nothing
 * else, whoever makes them (the FUSE daemon promises the kernel this:
 * fs/fuse_wire.c).  The kernel mostly does it too, so only this test
 * shows the core's own part.
 */
START_TEST(test_xattr_kill_cap)
{
	static const char cap[20] = { 1, 0, 0, 2, 0, 4 };
	struct flyfs_attr a = { .size = 100, .uid = 7, .gid = 7 };
	const int sets[] = { 0, FLYFS_SET_SIZE, FLYFS_SET_UID | FLYFS_SET_GID };
	char buf[64];
	size_t len, done;
	uint64_t f;

	make_fs(dbsizes[_i], DEV_BYTES);
	f = mkfile(FLYFS_ROOT_INO, "f");
	ck_assert_int_eq(flyfs_setxattr(fs, f, "user.keep", "k", 1, 0), 0);
	for (unsigned i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		ck_assert_int_eq(flyfs_setxattr(fs, f, "security.capability",
		    cap, sizeof(cap), 0), 0);
		if (sets[i] == 0)
			ck_assert_int_eq(flyfs_write(fs, f, "x", 1, 10, 0,
			    &root, &done), 0);
		else
			ck_assert_int_eq(flyfs_setattr(fs, f, &a, sets[i],
			    &root, NULL), 0);
		ck_assert_int_eq(flyfs_getxattr(fs, f, "security.capability",
		    buf, sizeof(buf), &len), ENODATA);
		ck_assert_int_eq(flyfs_getxattr(fs, f, "user.keep", buf,
		    sizeof(buf), &len), 0);
	}
	/* A mode change is not one of them. */
	ck_assert_int_eq(flyfs_setxattr(fs, f, "security.capability", cap,
	    sizeof(cap), 0), 0);
	a.mode = 0600;
	ck_assert_int_eq(flyfs_setattr(fs, f, &a, FLYFS_SET_MODE, &root,
	    NULL), 0);
	remount();
	ck_assert_int_eq(flyfs_getxattr(fs, f, "security.capability", buf,
	    sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, sizeof(cap));
}
END_TEST

START_TEST(test_xattr_limits)
{
	static char big[70000];
	char name[300], buf[4096];
	size_t len, max;
	uint64_t d;

	make_fs(dbsizes[_i], DEV_BYTES);
	d = mkdir_(FLYFS_ROOT_INO, "d");	/* xattrs on directories too */
	memset(big, 'v', sizeof(big));
	/* One value: at most 4048 - 8 - name length. */
	max = 4048 - 8 - 1;
	ck_assert_int_eq(flyfs_setxattr(fs, d, "user.n", big, max + 1, 0),
	    E2BIG);
	ck_assert_int_eq(flyfs_setxattr(fs, d, "user.n", big, 65537, 0),
	    E2BIG);
	ck_assert_int_eq(flyfs_setxattr(fs, d, "user.n", big, max, 0), 0);
	ck_assert_int_eq(flyfs_getxattr(fs, d, "user.n", buf, sizeof(buf),
	    &len), 0);
	ck_assert_uint_eq(len, max);
	/* The block is full: a second one does not fit. */
	ck_assert_int_eq(flyfs_setxattr(fs, d, "user.m", "x", 1, 0), ENOSPC);
	/* Replacing by a smaller value makes room. */
	ck_assert_int_eq(flyfs_setxattr(fs, d, "user.n", big, 100, 0), 0);
	ck_assert_int_eq(flyfs_setxattr(fs, d, "user.m", "x", 1, 0), 0);
	memset(name, 'k', sizeof(name));
	memcpy(name, "user.", 5);
	name[5 + 255] = '\0';
	ck_assert_int_eq(flyfs_setxattr(fs, d, name, "1", 1, 0), 0);
	ck_assert_int_eq(flyfs_getxattr(fs, d, name, buf, sizeof(buf), &len),
	    0);
	name[5 + 255] = 'k';
	name[5 + 256] = '\0';
	ck_assert_int_eq(flyfs_setxattr(fs, d, name, "1", 1, 0), ERANGE);
	ck_assert_int_eq(flyfs_setxattr(fs, d, "user.", "1", 1, 0), EINVAL);
	remount();
	ck_assert_int_eq(flyfs_getxattr(fs, d, "user.n", buf, sizeof(buf),
	    &len), 0);
	ck_assert_uint_eq(len, 100);
	ck_assert_int_eq(flyfs_getxattr(fs, d, "user.m", buf, sizeof(buf),
	    &len), 0);
	ck_assert_uint_eq(len, 1);
	/* Deleting the inode frees the block (fsck at teardown). */
	ck_assert_int_eq(flyfs_rmdir(fs, FLYFS_ROOT_INO, "d", &root), 0);
}
END_TEST

/* ---- Scale (FLYFS_SCALE=1) ------------------------------------------------------------------ */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Readdir in FUSE-buffer-sized calls of 4096 entries. */
struct counter {
	uint64_t total, last;
	unsigned in_call;
};

static int
count_fill(void *arg, const char *name, size_t len, uint64_t ino,
    unsigned type, uint64_t cookie, const struct flyfs_attr *a)
{
	struct counter *c = arg;

	(void)name; (void)len; (void)ino; (void)type; (void)a;
	if (c->in_call == 4096)
		return 1;
	c->in_call++;
	c->total++;
	c->last = cookie;
	return 0;
}

START_TEST(test_scale_million)
{
	const int n = 1000000;
	const char *img = "/var/tmp/flyfs-scale.img";
	struct flyfs_mkfs_params p;
	struct flyfs_mount_opts mo = { .cache_size = 256L << 20 };
	struct rusage ru;
	struct counter cnt = { 0, 0, 0 };
	uint64_t d;
	double t0, tc, tl, tr, tu;
	char nm[32];
	int fd;

	if (getenv("FLYFS_SCALE") == NULL ||
	    strcmp(getenv("FLYFS_SCALE"), "1") != 0)
		return;
	fd = open(img, O_CREAT | O_TRUNC | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 8LL << 30), 0);
	close(fd);
	ck_assert_int_eq(blockdev_open(img, NULL, &bd, err, sizeof(err)), 0);
	flyfs_mkfs_params_init(&p);
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_msg(flyfs_mount_bdev(bd, &mo, &fs, err, sizeof(err)) == 0,
	    "%s", err);
	d = mkdir_(FLYFS_ROOT_INO, "million");
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%07d", i);
		mkfile(d, nm);
	}
	tc = now_s();
	for (int i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%07d", (int)((i * 7919LL) % n));
		ck_assert_int_eq(lk(d, nm, NULL), 0);
	}
	tl = now_s();
	do {
		cnt.in_call = 0;
		ck_assert_int_eq(flyfs_readdir(fs, d, cnt.last, false,
		    count_fill, &cnt), 0);
	} while (cnt.in_call > 0);
	ck_assert_uint_eq(cnt.total, (uint64_t)n + 2);
	tr = now_s();
	for (int i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%07d", i);
		ck_assert_int_eq(flyfs_unlink(fs, d, nm, &root), 0);
	}
	tu = now_s();
	getrusage(RUSAGE_SELF, &ru);
	printf("scale: %d entries: create %.1f s (%.0f/s), lookup %.1f s "
	    "(%.0f/s), readdir %.1f s (%llu entries), unlink %.1f s (%.0f/s), "
	    "peak RSS %ld MiB\n", n, tc - t0, n / (tc - t0), tl - tc,
	    n / (tl - tc), tr - tl, (unsigned long long)cnt.total, tu - tr,
	    n / (tu - tr), ru.ru_maxrss / 1024);
	ck_assert_int_eq(flyfs_rmdir(fs, FLYFS_ROOT_INO, "million", &root), 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	fs = NULL;
	util_fsck_clean(bd);
	blockdev_close(bd);
	bd = NULL;
	unlink(img);
}
END_TEST

static Suite *
namei_suite(void)
{
	Suite *s = suite_create("namei");
	TCase *tc = tcase_create("namespace");
	TCase *tx = tcase_create("xattr");
	TCase *ts = tcase_create("scale");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_mknod_types, 0, 2);
	tcase_add_loop_test(tc, test_create_errors, 0, 2);
	tcase_add_loop_test(tc, test_lookup_dots, 0, 2);
	tcase_add_loop_test(tc, test_mkdir_rmdir, 0, 2);
	tcase_add_loop_test(tc, test_create_in_removed_dir, 0, 2);
	tcase_add_loop_test(tc, test_symlink, 0, 2);
	tcase_add_loop_test(tc, test_link_unlink, 0, 2);
	tcase_add_test(tc, test_emlink);
	tcase_add_loop_test(tc, test_sticky, 0, 2);
	tcase_add_loop_test(tc, test_rename_files, 0, 2);
	tcase_add_loop_test(tc, test_rename_dirs, 0, 2);
	tcase_add_loop_test(tc, test_rename_exchange, 0, 2);
	tcase_add_loop_test(tc, test_readdir_cookies, 0, 2);
	tcase_add_loop_test(tc, test_100k_files, 0, 2);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tx, setup, teardown);
	tcase_set_timeout(tx, 600);
	tcase_add_loop_test(tx, test_xattr, 0, 2);
	tcase_add_loop_test(tx, test_xattr_limits, 0, 2);
	tcase_add_loop_test(tx, test_xattr_kill_cap, 0, 2);
	suite_add_tcase(s, tx);

	tcase_add_checked_fixture(ts, setup, teardown);
	tcase_set_timeout(ts, 7200);
	tcase_add_test(ts, test_scale_million);
	suite_add_tcase(s, ts);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(namei_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
