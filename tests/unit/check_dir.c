/*
 * check_dir.c - unit tests of fs/dir.c, the directory B+tree.
 *
 * Each test makes a fresh filesystem on a RAM block device, mounts it and
 * drives dir.c directly (fs/dir.h) inside transactions, with entries that
 * name made-up inode numbers: the tree is what is tested, not the
 * namespace (check_namei.c).  After the changes every test checks the
 * whole tree with fs_dir_check (levels, key order, separators, leaf chain,
 * counts, size) and most check it again after unmount and mount.
 *
 * Names hash to 31 bits, so collisions are found by brute force under the
 * fixed hash key the tests give mkfs (a few million hashes).
 *
 * FLYFS_SCALE=1 enables test_scale_million: a million entries in one
 * directory (insert, lookup, iterate, remove, one transaction each) on an
 * image file under /var/tmp, printing each phase's time and the peak RSS.
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
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "fs/dir.h"
#include "fs/flyfs.h"
#include "fs/fs_int.h"
#include "fs/mkfs_core.h"

#define DEV_BYTES	(512ULL << 20)

static struct blockdev *bd;
static struct flyfs *fs;
static char err[512];

static void
setup(void)
{
	struct flyfs_mkfs_params p;

	ck_assert_int_eq(blockdev_open_ram(DEV_BYTES, 4096, 0, 0, &bd), 0);
	flyfs_mkfs_params_init(&p);
	p.have_hash_key = true;
	for (int i = 0; i < 16; i++)
		p.hash_key[i] = (uint8_t)(7 * i + 1);
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0,
	    "mkfs: %s", err);
	ck_assert_msg(flyfs_mount_bdev(bd, NULL, &fs, err, sizeof(err)) == 0,
	    "mount: %s", err);
}

static void
teardown(void)
{
	if (fs != NULL)
		ck_assert_int_eq(flyfs_unmount(fs), 0);
	fs = NULL;
	if (bd != NULL)
		blockdev_close(bd);
	bd = NULL;
}

static void
remount(void)
{
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	fs = NULL;
	ck_assert_msg(flyfs_mount_bdev(bd, NULL, &fs, err, sizeof(err)) == 0,
	    "mount: %s", err);
}

/* A fresh empty directory under the root; its inode number. */
static uint64_t
newdir(const char *name)
{
	static const struct flyfs_cred root = { .uid = 0, .gid = 0 };
	struct flyfs_attr a;

	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, name, 0755, &root,
	    &a), 0);
	flyfs_forget(fs, a.ino, 1);
	return a.ino;
}

static struct fs_inode *
dget(uint64_t ino)
{
	struct fs_inode *dp;

	ck_assert_int_eq(fs_iget(fs, ino, &dp), 0);
	return dp;
}

static void
check_tree(uint64_t ino)
{
	struct fs_inode *dp = dget(ino);
	int e;

	pthread_rwlock_rdlock(&dp->i_lock);
	e = fs_dir_check(dp, err, sizeof(err));
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
	ck_assert_msg(e == 0, "tree check: %s", err);
}

/* Insert NAME -> INO into directory DINO in its own transaction. */
static int
ins(uint64_t dino, const char *name, uint64_t ino, uint64_t *key)
{
	struct fs_inode *dp = dget(dino);
	struct fs_trans *tx;
	int e;

	pthread_rwlock_wrlock(&dp->i_lock);
	ck_assert_int_eq(fs_trans_begin(fs, fs_dir_insert_blocks(dp), &tx), 0);
	e = fs_dir_insert(tx, dp, name, strlen(name), ino, DT_REG, key);
	if (e != 0)
		fs_trans_set_error(tx, e);
	ck_assert_int_eq(fs_trans_end(tx), e);
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
	return e;
}

static int
rem(uint64_t dino, const char *name, struct fs_dirent *out)
{
	struct fs_inode *dp = dget(dino);
	struct fs_trans *tx;
	int e;

	pthread_rwlock_wrlock(&dp->i_lock);
	ck_assert_int_eq(fs_trans_begin(fs, fs_dir_remove_blocks(dp), &tx), 0);
	e = fs_dir_remove(tx, dp, name, strlen(name), out);
	if (e != 0)
		fs_trans_set_error(tx, e);
	ck_assert_int_eq(fs_trans_end(tx), e);
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
	return e;
}

static int
look(uint64_t dino, const char *name, struct fs_dirent *out)
{
	struct fs_inode *dp = dget(dino);
	int e;

	pthread_rwlock_rdlock(&dp->i_lock);
	e = fs_dir_lookup(dp, name, strlen(name), out);
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
	return e;
}

struct dstat {
	uint64_t entries, size, blocks;
	unsigned levels;
};

static struct dstat
dstat(uint64_t dino)
{
	struct fs_inode *dp = dget(dino);
	struct dstat s;

	s.entries = fs_dir_entries(dp);
	s.size = fs_i_size(dp);
	s.blocks = le64_get(dp->i_din.i_blocks);
	s.levels = le16_get(dp->i_din.i_dir.dr_levels);
	fs_iput(dp);
	return s;
}

/* Iteration into an array. */
struct coll {
	size_t n, cap, stop_after;
	char (*name)[256];
	uint64_t *ino, *key;
};

static int
coll_fn(void *arg, const char *name, size_t len, uint64_t ino,
    unsigned type, uint64_t key)
{
	struct coll *c = arg;

	(void)type;
	if (c->stop_after != 0 && c->n == c->stop_after)
		return 1;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->name = realloc(c->name, c->cap * sizeof(*c->name));
		c->ino = realloc(c->ino, c->cap * sizeof(*c->ino));
		c->key = realloc(c->key, c->cap * sizeof(*c->key));
	}
	memcpy(c->name[c->n], name, len);
	c->name[c->n][len] = '\0';
	c->ino[c->n] = ino;
	c->key[c->n] = key;
	c->n++;
	return 0;
}

static void
coll_free(struct coll *c)
{
	free(c->name);
	free(c->ino);
	free(c->key);
	memset(c, 0, sizeof(*c));
}

static void
iter(uint64_t dino, uint64_t cookie, struct coll *c)
{
	struct fs_inode *dp = dget(dino);

	pthread_rwlock_rdlock(&dp->i_lock);
	ck_assert_int_eq(fs_dir_iterate(dp, cookie, coll_fn, c), 0);
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
}

/* ---- Tests ------------------------------------------------------------- */

START_TEST(test_empty_dir_has_no_block)
{
	uint64_t d = newdir("d");
	struct dstat s = dstat(d);
	struct fs_dirent de;
	struct coll c = { 0 };

	ck_assert_uint_eq(s.entries, 0);
	ck_assert_uint_eq(s.size, 0);
	ck_assert_uint_eq(s.levels, 0);
	ck_assert_int_eq(look(d, "x", &de), ENOENT);
	ck_assert_int_eq(rem(d, "x", NULL), ENOENT);
	iter(d, 0, &c);
	ck_assert_uint_eq(c.n, 0);
	check_tree(d);
}
END_TEST

START_TEST(test_insert_lookup_remove)
{
	uint64_t d = newdir("d"), key;
	struct fs_dirent de;

	ck_assert_int_eq(ins(d, "alpha", 100, &key), 0);
	ck_assert_uint_ge(key, 1ULL << 32);
	ck_assert_uint_lt(key, 1ULL << 63);
	ck_assert_uint_eq(key & 0xffffffffu, 0);
	ck_assert_int_eq(ins(d, "alpha", 101, NULL), EEXIST);
	ck_assert_int_eq(ins(d, "beta", 102, NULL), 0);
	ck_assert_int_eq(look(d, "alpha", &de), 0);
	ck_assert_uint_eq(de.ino, 100);
	ck_assert_uint_eq(de.key, key);
	ck_assert_uint_eq(de.type, DT_REG);
	ck_assert_int_eq(look(d, "alph", &de), ENOENT);
	ck_assert_uint_eq(dstat(d).entries, 2);
	ck_assert_uint_eq(dstat(d).size, 4096);
	ck_assert_uint_eq(dstat(d).levels, 1);
	check_tree(d);
	remount();
	ck_assert_int_eq(look(d, "beta", &de), 0);
	ck_assert_uint_eq(de.ino, 102);
	ck_assert_int_eq(rem(d, "alpha", &de), 0);
	ck_assert_uint_eq(de.ino, 100);
	ck_assert_int_eq(rem(d, "alpha", NULL), ENOENT);
	ck_assert_int_eq(look(d, "alpha", &de), ENOENT);
	ck_assert_uint_eq(dstat(d).entries, 1);
	check_tree(d);
}
END_TEST

START_TEST(test_name_limits)
{
	uint64_t d = newdir("d");
	char name[300];
	struct fs_dirent de;
	struct fs_inode *dp;
	struct fs_trans *tx;

	memset(name, 'n', 255);
	name[255] = '\0';
	ck_assert_int_eq(ins(d, name, 5, NULL), 0);
	ck_assert_int_eq(look(d, name, &de), 0);
	name[255] = 'n';
	name[256] = '\0';
	ck_assert_int_eq(look(d, name, &de), ENAMETOOLONG);
	dp = dget(d);
	pthread_rwlock_wrlock(&dp->i_lock);
	ck_assert_int_eq(fs_trans_begin(fs, fs_dir_insert_blocks(dp), &tx), 0);
	ck_assert_int_eq(fs_dir_insert(tx, dp, name, 256, 6, DT_REG, NULL),
	    ENAMETOOLONG);
	fs_trans_end(tx);
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
	check_tree(d);
}
END_TEST

/*
 * Find three names of one hash under the test key: a birthday search
 * for a triple among 31-bit hashes needs about 2^21.5 names.
 */
static void
find_collisions(char names[3][16])
{
	const size_t cap = 1u << 23;
	struct slot { uint32_t hash, idx; } *tab = calloc(cap, sizeof(*tab));

	ck_assert_ptr_nonnull(tab);
	for (uint32_t i = 1;; i++) {
		char nm[16];
		uint32_t h, hits[2], nhits = 0;
		size_t slot;

		ck_assert_uint_lt(i, cap / 2);
		snprintf(nm, sizeof(nm), "c%u", i);
		h = flyfs_dir_hash(fs->s_sb.hash_key, nm, strlen(nm));
		for (slot = h & (cap - 1); tab[slot].idx != 0;
		    slot = (slot + 1) & (cap - 1))
			if (tab[slot].hash == h && nhits < 2)
				hits[nhits++] = tab[slot].idx;
		if (nhits == 2) {
			snprintf(names[0], 16, "c%u", hits[0]);
			snprintf(names[1], 16, "c%u", hits[1]);
			strcpy(names[2], nm);
			break;
		}
		tab[slot].hash = h;
		tab[slot].idx = i;
	}
	free(tab);
}

START_TEST(test_collision_minors)
{
	uint64_t d = newdir("d"), k0, k1, k2;
	char names[3][16];
	struct fs_dirent de;
	struct coll c = { 0 };

	find_collisions(names);
	ck_assert_int_eq(ins(d, names[0], 10, &k0), 0);
	ck_assert_int_eq(ins(d, names[1], 11, &k1), 0);
	ck_assert_uint_eq(k0 >> 32, k1 >> 32);
	ck_assert_uint_eq(k0 & 0xffffffffu, 0);
	ck_assert_uint_eq(k1 & 0xffffffffu, 1);
	/* Freeing minor 0 lets the next colliding name take it. */
	ck_assert_int_eq(rem(d, names[0], NULL), 0);
	ck_assert_int_eq(ins(d, names[2], 12, &k2), 0);
	ck_assert_uint_eq(k2, k0);
	ck_assert_int_eq(look(d, names[1], &de), 0);
	ck_assert_uint_eq(de.ino, 11);
	ck_assert_uint_eq(de.key, k1);
	ck_assert_int_eq(look(d, names[2], &de), 0);
	ck_assert_uint_eq(de.ino, 12);
	ck_assert_int_eq(look(d, names[0], &de), ENOENT);
	ck_assert_int_eq(ins(d, names[1], 13, NULL), EEXIST);
	/* Re-adding the first: minor 2 (0 and 1 are taken). */
	ck_assert_int_eq(ins(d, names[0], 10, &k0), 0);
	ck_assert_uint_eq(k0 & 0xffffffffu, 2);
	iter(d, 0, &c);
	ck_assert_uint_eq(c.n, 3);
	ck_assert_uint_eq(c.key[0], k2);
	ck_assert_uint_eq(c.key[1], k1);
	ck_assert_uint_eq(c.key[2], k0);
	/* Resume between two entries of one hash. */
	coll_free(&c);
	iter(d, k2, &c);
	ck_assert_uint_eq(c.n, 2);
	ck_assert_str_eq(c.name[0], names[1]);
	coll_free(&c);
	check_tree(d);
	remount();
	ck_assert_int_eq(look(d, names[0], &de), 0);
	ck_assert_uint_eq(de.key, k0);
	check_tree(d);
}
END_TEST

/* A Fisher-Yates shuffle of 0..N-1 with a fixed seed. */
static uint32_t *
perm(uint32_t n, uint32_t seed)
{
	uint32_t *p = malloc(n * sizeof(*p));

	for (uint32_t i = 0; i < n; i++)
		p[i] = i;
	srandom(seed);
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)random() % (i + 1), t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static void
ename(char *buf, size_t sz, uint32_t i, unsigned pad)
{
	snprintf(buf, sz, "entry-%0*u", (int)pad, i);
}

/*
 * Many entries: the tree grows to several levels, every name is found,
 * iteration returns each once in key order, and removing them all in a
 * random order brings the directory back to one empty root leaf.
 */
static void
grow_and_shrink(uint32_t n, unsigned pad)
{
	uint64_t d = newdir("big");
	uint32_t *order = perm(n, 42);
	struct fs_dirent de;
	struct coll c = { 0 };
	char nm[300];
	struct dstat s;

	for (uint32_t i = 0; i < n; i++) {
		ename(nm, sizeof(nm), i, pad);
		ck_assert_int_eq(ins(d, nm, 1000 + i, NULL), 0);
	}
	s = dstat(d);
	ck_assert_uint_eq(s.entries, n);
	ck_assert_uint_ge(s.levels, 2);
	ck_assert_uint_eq(s.size, s.blocks * 4096);
	check_tree(d);
	remount();
	for (uint32_t i = 0; i < n; i += 7) {
		ename(nm, sizeof(nm), i, pad);
		ck_assert_int_eq(look(d, nm, &de), 0);
		ck_assert_uint_eq(de.ino, 1000 + i);
	}
	iter(d, 0, &c);
	ck_assert_uint_eq(c.n, n);
	for (size_t i = 1; i < c.n; i++)
		ck_assert_uint_gt(c.key[i], c.key[i - 1]);
	coll_free(&c);
	for (uint32_t i = 0; i < n; i++) {
		ename(nm, sizeof(nm), order[i], pad);
		ck_assert_int_eq(rem(d, nm, &de), 0);
		ck_assert_uint_eq(de.ino, 1000 + order[i]);
		if (i == n / 2) {
			check_tree(d);
			s = dstat(d);
			ck_assert_uint_eq(s.entries, n - i - 1);
		}
	}
	s = dstat(d);
	ck_assert_uint_eq(s.entries, 0);
	ck_assert_uint_eq(s.levels, 1);
	ck_assert_uint_eq(s.size, 4096);
	ck_assert_uint_eq(s.blocks, 1);
	check_tree(d);
	remount();
	check_tree(d);
	free(order);
}

START_TEST(test_grow_shrink_short_names)
{
	grow_and_shrink(20000, 1);
}
END_TEST

START_TEST(test_grow_shrink_long_names)
{
	grow_and_shrink(3000, 240);	/* 272-byte records: 14 a leaf */
}
END_TEST

/*
 * Cookies are keys: iterate part of the way, change the directory
 * (entries before and after the cookie come and go), resume: every entry
 * that lived throughout is seen exactly once.
 */
START_TEST(test_cookie_stable)
{
	uint64_t d = newdir("d");
	const uint32_t n = 6000;
	struct coll c1 = { .stop_after = 2500 }, c2 = { 0 };
	char nm[64];
	uint8_t *seen = calloc(n + 3000, 1);

	for (uint32_t i = 0; i < n; i++) {
		ename(nm, sizeof(nm), i, 1);
		ck_assert_int_eq(ins(d, nm, 1000 + i, NULL), 0);
	}
	iter(d, 0, &c1);
	ck_assert_uint_eq(c1.n, 2500);
	/* Remove every third entry not yet seen... */
	for (uint32_t i = 0; i < c1.n; i++)
		seen[c1.ino[i] - 1000] = 1;
	for (uint32_t i = 0; i < n; i += 3) {
		if (seen[i])
			continue;
		ename(nm, sizeof(nm), i, 1);
		ck_assert_int_eq(rem(d, nm, NULL), 0);
		seen[i] = 2;		/* removed: must not show up */
	}
	/* ... and some already seen; add new ones (may or may not show). */
	for (uint32_t i = 0; i < c1.n; i += 2) {
		ck_assert_int_eq(rem(d, c1.name[i], NULL), 0);
	}
	for (uint32_t i = 0; i < 3000; i++) {
		snprintf(nm, sizeof(nm), "new-%u", i);
		ck_assert_int_eq(ins(d, nm, 1000 + n + i, NULL), 0);
	}
	remount();
	iter(d, c1.key[c1.n - 1], &c2);
	for (size_t i = 0; i < c2.n; i++) {
		uint64_t x = c2.ino[i] - 1000;

		ck_assert_uint_gt(c2.key[i], c1.key[c1.n - 1]);
		if (x < n)
			ck_assert_msg(seen[x] == 0, "entry %llu seen twice or "
			    "after removal", (unsigned long long)x);
		seen[x] = 3;
	}
	for (uint32_t i = 0; i < n; i++)
		ck_assert_msg(seen[i] != 0, "entry %u skipped", i);
	check_tree(d);
	coll_free(&c1);
	coll_free(&c2);
	free(seen);
}
END_TEST

/* The 100k-entry directory of the issue, through the tree directly. */
START_TEST(test_100k_entries)
{
	const uint32_t n = TEST_SCALE(100000);
	uint64_t d = newdir("huge");
	uint32_t *order = perm(n, 7);
	struct fs_dirent de;
	struct coll c = { 0 };
	char nm[64];

	for (uint32_t i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file%06u.dat", i);
		ck_assert_int_eq(ins(d, nm, 16 + i, NULL), 0);
	}
	check_tree(d);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file%06u.dat", order[i]);
		ck_assert_int_eq(look(d, nm, &de), 0);
		ck_assert_uint_eq(de.ino, 16 + order[i]);
	}
	iter(d, 0, &c);
	ck_assert_uint_eq(c.n, n);
	coll_free(&c);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file%06u.dat", order[i]);
		ck_assert_int_eq(rem(d, nm, NULL), 0);
	}
	ck_assert_uint_eq(dstat(d).entries, 0);
	ck_assert_uint_eq(dstat(d).size, 4096);
	check_tree(d);
	free(order);
}
END_TEST

/* Replace keeps the key and changes the target. */
START_TEST(test_replace)
{
	uint64_t d = newdir("d"), key;
	struct fs_dirent de;
	struct fs_inode *dp;
	struct fs_trans *tx;

	ck_assert_int_eq(ins(d, "name", 50, &key), 0);
	dp = dget(d);
	pthread_rwlock_wrlock(&dp->i_lock);
	ck_assert_int_eq(fs_trans_begin(fs, 8, &tx), 0);
	ck_assert_int_eq(fs_dir_replace(tx, dp, "name", 4, 51, DT_DIR), 0);
	ck_assert_int_eq(fs_dir_replace(tx, dp, "nope", 4, 51, DT_DIR),
	    ENOENT);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
	remount();
	ck_assert_int_eq(look(d, "name", &de), 0);
	ck_assert_uint_eq(de.ino, 51);
	ck_assert_uint_eq(de.type, DT_DIR);
	ck_assert_uint_eq(de.key, key);
}
END_TEST

/* Reclaim frees the whole tree, transaction by transaction. */
START_TEST(test_reclaim)
{
	uint64_t d = newdir("d");
	struct fs_inode *dp;
	struct statvfs before, after;
	char nm[64];

	ck_assert_int_eq(flyfs_statfs(fs, &before), 0);
	for (uint32_t i = 0; i < 5000; i++) {
		snprintf(nm, sizeof(nm), "r%u", i);
		ck_assert_int_eq(ins(d, nm, 1000 + i, NULL), 0);
	}
	ck_assert_uint_ge(dstat(d).levels, 2);
	dp = dget(d);
	ck_assert_int_eq(fs_dir_reclaim(dp), 0);
	ck_assert_uint_eq(le64_get(dp->i_din.i_dir.dr_root), 0);
	ck_assert_uint_eq(fs_dir_entries(dp), 0);
	ck_assert_uint_eq(fs_i_size(dp), 0);
	ck_assert_uint_eq(le64_get(dp->i_din.i_blocks), 0);
	fs_iput(dp);
	check_tree(d);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	ck_assert_int_eq(flyfs_statfs(fs, &after), 0);
	ck_assert_uint_eq(after.f_bfree, before.f_bfree);
}
END_TEST

/* A corrupt node is refused with EUCLEAN, not followed. */
START_TEST(test_corrupt_leaf)
{
	uint64_t d = newdir("d"), blk;
	uint32_t seed = fs->s_seed;
	struct fs_inode *dp;
	struct fs_dirent de;
	void *buf;

	ck_assert_int_eq(ins(d, "victim", 77, NULL), 0);
	dp = dget(d);
	blk = le64_get(dp->i_din.i_dir.dr_root);
	fs_iput(dp);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	fs = NULL;
	buf = blockdev_alloc_buf(bd, 4096);
	ck_assert_int_eq(blockdev_pread(bd, buf, 4096, (off_t)blk * 4096), 0);
	((uint8_t *)buf)[48 + 16] = 0;		/* de_name_len = 0 */
	/* A valid checksum over a bad record: only the structure check
	 * can catch it. */
	flyfs_mblock_seal(buf, FLYFS_MB_DIR, blk, 0, d, seed);
	ck_assert_int_eq(blockdev_pwrite(bd, buf, 4096, (off_t)blk * 4096), 0);
	blockdev_free_buf(buf);
	ck_assert_int_eq(flyfs_mount_bdev(bd, NULL, &fs, err, sizeof(err)), 0);
	ck_assert_int_eq(look(d, "victim", &de), EUCLEAN);
	ck_assert_int_eq(ins(d, "other", 78, NULL), EUCLEAN);
}
END_TEST

/* ---- Scale (FLYFS_SCALE=1) ------------------------------------------------ */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
count_fn(void *arg, const char *name, size_t len, uint64_t ino,
    unsigned type, uint64_t key)
{
	(void)name; (void)len; (void)ino; (void)type; (void)key;
	(*(uint64_t *)arg)++;
	return 0;
}

START_TEST(test_scale_million)
{
	const uint32_t n = 1000000;
	const char *img = "/var/tmp/flyfs-dir-scale.img";
	struct flyfs_mkfs_params p;
	struct flyfs_mount_opts mo = { .cache_size = 256L << 20 };
	struct fs_dirent de;
	struct rusage ru;
	struct fs_inode *dp;
	uint64_t d, seen = 0;
	double t0, t1, t2, t3, t4;
	struct dstat st;
	char nm[32];
	int fd;

	if (getenv("FLYFS_SCALE") == NULL ||
	    strcmp(getenv("FLYFS_SCALE"), "1") != 0)
		return;
	fd = open(img, O_CREAT | O_TRUNC | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4LL << 30), 0);
	close(fd);
	ck_assert_int_eq(blockdev_open(img, NULL, &bd, err, sizeof(err)), 0);
	flyfs_mkfs_params_init(&p);
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_msg(flyfs_mount_bdev(bd, &mo, &fs, err, sizeof(err)) == 0,
	    "%s", err);
	d = newdir("million");
	t0 = now_s();
	for (uint32_t i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%07u", i);
		ck_assert_int_eq(ins(d, nm, 16 + i, NULL), 0);
	}
	t1 = now_s();
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = (uint32_t)(((uint64_t)i * 7919) % n);

		snprintf(nm, sizeof(nm), "file-%07u", k);
		ck_assert_int_eq(look(d, nm, &de), 0);
		ck_assert_uint_eq(de.ino, 16 + k);
	}
	t2 = now_s();
	dp = dget(d);
	pthread_rwlock_rdlock(&dp->i_lock);
	ck_assert_int_eq(fs_dir_iterate(dp, 0, count_fn, &seen), 0);
	pthread_rwlock_unlock(&dp->i_lock);
	fs_iput(dp);
	ck_assert_uint_eq(seen, n);
	t3 = now_s();
	st = dstat(d);
	check_tree(d);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(nm, sizeof(nm), "file-%07u", i);
		ck_assert_int_eq(rem(d, nm, NULL), 0);
	}
	t4 = now_s();
	getrusage(RUSAGE_SELF, &ru);
	printf("dir scale: %u entries, %u levels, %llu blocks: insert %.1f s "
	    "(%.0f/s), lookup %.1f s (%.0f/s), iterate %.2f s, remove %.1f s "
	    "(%.0f/s); peak RSS %ld MiB (cache 256 MiB)\n", n, st.levels,
	    (unsigned long long)st.blocks, t1 - t0, n / (t1 - t0), t2 - t1,
	    n / (t2 - t1), t3 - t2, t4 - t3, n / (t4 - t3),
	    ru.ru_maxrss / 1024);
	check_tree(d);
	ck_assert_uint_eq(dstat(d).size, 4096);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	fs = NULL;
	blockdev_close(bd);
	bd = NULL;
	unlink(img);
}
END_TEST

static void
nop(void)
{
}

static Suite *
dir_suite(void)
{
	Suite *s = suite_create("dir");
	TCase *tc = tcase_create("tree");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_empty_dir_has_no_block);
	tcase_add_test(tc, test_insert_lookup_remove);
	tcase_add_test(tc, test_name_limits);
	tcase_add_test(tc, test_collision_minors);
	tcase_add_test(tc, test_grow_shrink_short_names);
	tcase_add_test(tc, test_grow_shrink_long_names);
	tcase_add_test(tc, test_cookie_stable);
	tcase_add_test(tc, test_100k_entries);
	tcase_add_test(tc, test_replace);
	tcase_add_test(tc, test_reclaim);
	tcase_add_test(tc, test_corrupt_leaf);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_add_checked_fixture(tc, nop, teardown);
	tcase_set_timeout(tc, 7200);
	tcase_add_test(tc, test_scale_million);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(dir_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
