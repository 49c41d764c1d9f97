/*
 * check_crash.c - crash consistency of the whole core, by write-log replay.
 *
 * A workload over the public API of fs/flyfs.h (mknod, mkdir, rmdir,
 * symlink, link, unlink, rename, write, truncate, fallocate punch,
 * setxattr, fsync, fdatasync, sync, open-unlink-close orphans) runs on a
 * RAM device with the write log on, and keeps a model of what each fsync
 * or sync made durable.  Afterwards the image is rebuilt as it was after
 * each of hundreds of prefixes of the log (a power cut after that write:
 * later writes, and the flushes that would have made them durable, never
 * happened).  Just after some syncs returned, the image is also rebuilt
 * from the log up to its last barrier only: the device may lose every
 * write no barrier has covered, and what the sync promised must survive
 * that too.  At every such crash point:
 *   - flyfs_fsck -n (forced) on the raw image, journal replayed in memory
 *     by the same scanner the mount uses, finds nothing (every fourth
 *     point: it is the slowest step);
 *   - the image mounts (journal replay, orphan reclaim);
 *   - every file whose last fsync completed before the cut, and that no
 *     operation touched between that fsync and the cut, reads back
 *     exactly: size, every byte, its xattr, its link count, its name;
 *   - after a clean unmount, flyfs_fsck -n (forced) finds nothing and the
 *     infrastructure's own image check agrees.
 *
 * The rule that decides which files must match: the workload is single
 * threaded, so a write-log prefix of N entries contains only writes
 * issued before an operation that started when the log held N or more
 * entries; such an operation cannot have reached the image.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "fs/fsck_core.h"
#include "fsinfra_util.h"
#include "test_scale.h"

#define CRASH_IMAGE_BYTES	(16ULL << 20)
#define MAX_POINTS		TEST_SCALE(240)
#define NOPS			700
#define NFILES			40
#define NDIRS			4
#define FMAX			(48 * 1024)	/* model size of a file */
#define MAXNAMES		128
#define XVMAX			48

/* One regular file of the model. */
struct mfile {
	uint64_t	ino;
	bool		live;		/* has a name */
	bool		open;		/* unlinked while open: orphan */
	uint32_t	nlink;
	int		dir;		/* primary name: dirs[dir], name */
	char		name[24];
	uint64_t	size;
	uint8_t		data[FMAX];
	uint8_t		xv[XVMAX];	/* user.k, xlen 0 = none */
	size_t		xlen;
	int		last_sync;	/* index into syncev, -1 */
};

/* What one fsync / fdatasync / sync made durable of one file. */
struct syncev {
	int		file;
	bool		datasync;	/* data and size only */
	size_t		done;		/* log entries when it returned */
	size_t		next_mod;	/* log entries when the file was next
					 * touched, SIZE_MAX if never */
	uint64_t	size;
	uint8_t		*data;
	uint8_t		xv[XVMAX];
	size_t		xlen;
	uint32_t	nlink;
	int		dir;
	char		name[24];
};

/* A name in the namespace (a file's extra link, a symlink, a node). */
struct mname {
	int		dir;
	char		name[24];
	int		file;		/* regular file index, -1 other */
};

static struct mfile	*files;
static int		nfiles;
static struct syncev	*syncs;
static size_t		nsyncs, capsyncs;
static struct mname	names[MAXNAMES];
static int		nnames;
static uint64_t		dirs[NDIRS + 1];	/* [NDIRS]: scratch dir */
static bool		scratch_dir;
static unsigned		seed;
static unsigned		uniq;

static const struct flyfs_cred cred = { .uid = 0, .gid = 0 };

static size_t
wl(struct blockdev *bd)
{
	return blockdev_wlog_count(bd);
}

/* File K is about to change: close the window of its last sync event. */
static void
touch(struct blockdev *bd, int k)
{
	int s = files[k].last_sync;

	if (s >= 0 && syncs[s].next_mod == SIZE_MAX)
		syncs[s].next_mod = wl(bd);
}

static void
record_sync(struct blockdev *bd, int k, bool datasync)
{
	struct mfile *f = &files[k];
	struct syncev *e;

	if (nsyncs == capsyncs) {
		capsyncs = capsyncs ? capsyncs * 2 : 256;
		syncs = realloc(syncs, capsyncs * sizeof(*syncs));
		ck_assert_ptr_nonnull(syncs);
	}
	e = &syncs[nsyncs];
	memset(e, 0, sizeof(*e));
	e->file = k;
	e->datasync = datasync;
	e->done = wl(bd);
	e->next_mod = SIZE_MAX;
	e->size = f->size;
	e->data = malloc(f->size ? f->size : 1);
	ck_assert_ptr_nonnull(e->data);
	memcpy(e->data, f->data, f->size);
	memcpy(e->xv, f->xv, f->xlen);
	e->xlen = f->xlen;
	e->nlink = f->nlink;
	e->dir = f->dir;
	memcpy(e->name, f->name, sizeof(e->name));
	f->last_sync = (int)nsyncs++;
}

static void
forget(struct flyfs *fs, const struct flyfs_attr *a)
{
	flyfs_forget(fs, a->ino, 1);
}

/* ---- Operations --------------------------------------------------------- */

static void
op_create(struct flyfs *fs)
{
	struct mfile *f = &files[nfiles];
	struct flyfs_attr a;

	memset(f, 0, sizeof(*f));
	f->dir = (int)(rand_r(&seed) % NDIRS);
	snprintf(f->name, sizeof(f->name), "f%u", uniq++);
	ck_assert_int_eq(flyfs_mknod(fs, dirs[f->dir], f->name, S_IFREG | 0644,
	    0, &cred, &a), 0);
	forget(fs, &a);
	f->ino = a.ino;
	f->live = true;
	f->nlink = 1;
	f->last_sync = -1;
	nfiles++;
}

/* A live regular file, or -1. */
static int
pick_file(void)
{
	for (int tries = 0; tries < 8 && nfiles > 0; tries++) {
		int k = (int)(rand_r(&seed) % (unsigned)nfiles);

		if (files[k].live)
			return k;
	}
	return -1;
}

static void
op_write(struct flyfs *fs, struct blockdev *bd, int k)
{
	struct mfile *f = &files[k];
	static uint8_t buf[16384];
	size_t len = 1 + rand_r(&seed) % sizeof(buf), done;
	uint64_t off = rand_r(&seed) % (FMAX - len);
	uint8_t v = (uint8_t)rand_r(&seed);

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(v + i * 13 + (i >> 9));
	touch(bd, k);
	ck_assert_int_eq(flyfs_write(fs, f->ino, buf, len, (off_t)off, 0,
	    &cred, &done), 0);
	ck_assert_uint_eq(done, len);
	if (off > f->size)
		memset(f->data + f->size, 0, off - f->size);	/* a hole */
	memcpy(f->data + off, buf, len);
	if (off + len > f->size)
		f->size = off + len;
}

static void
op_truncate(struct flyfs *fs, struct blockdev *bd, int k)
{
	struct mfile *f = &files[k];
	struct flyfs_attr in;
	uint64_t ns = rand_r(&seed) % FMAX;

	memset(&in, 0, sizeof(in));
	in.size = ns;
	touch(bd, k);
	ck_assert_int_eq(flyfs_setattr(fs, f->ino, &in, FLYFS_SET_SIZE, &cred,
	    NULL), 0);
	if (ns > f->size)
		memset(f->data + f->size, 0, ns - f->size);
	f->size = ns;
}

static void
op_punch(struct flyfs *fs, struct blockdev *bd, int k)
{
	struct mfile *f = &files[k];
	uint64_t off = rand_r(&seed) % FMAX;
	uint64_t len = 1 + rand_r(&seed) % (FMAX - off);

	touch(bd, k);
	ck_assert_int_eq(flyfs_fallocate(fs, f->ino, FALLOC_FL_PUNCH_HOLE |
	    FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len, NULL), 0);
	if (off < f->size)
		memset(f->data + off, 0, (off + len > f->size ? f->size :
		    off + len) - off);
}

static void
op_setxattr(struct flyfs *fs, struct blockdev *bd, int k)
{
	struct mfile *f = &files[k];
	uint8_t v[XVMAX];
	size_t len = 1 + rand_r(&seed) % XVMAX;

	for (size_t i = 0; i < len; i++)
		v[i] = (uint8_t)rand_r(&seed);
	touch(bd, k);
	ck_assert_int_eq(flyfs_setxattr(fs, f->ino, "user.k", v, len, 0), 0);
	memcpy(f->xv, v, len);
	f->xlen = len;
}

static void
op_rename(struct flyfs *fs, struct blockdev *bd, int k)
{
	struct mfile *f = &files[k];
	int nd = (int)(rand_r(&seed) % NDIRS);
	int victim = pick_file();
	char nn[24];

	if (victim >= 0 && victim != k && files[victim].nlink == 1 &&
	    !files[victim].open && rand_r(&seed) % 3 == 0) {
		/* Onto another file's name: that file loses its only link. */
		struct mfile *v = &files[victim];

		touch(bd, k);
		touch(bd, victim);
		ck_assert_int_eq(flyfs_rename(fs, dirs[f->dir], f->name,
		    dirs[v->dir], v->name, 0, &cred), 0);
		f->dir = v->dir;
		memcpy(f->name, v->name, sizeof(f->name));
		v->live = false;
		v->nlink = 0;
		return;
	}
	snprintf(nn, sizeof(nn), "r%u", uniq++);
	touch(bd, k);
	ck_assert_int_eq(flyfs_rename(fs, dirs[f->dir], f->name, dirs[nd], nn,
	    FLYFS_RENAME_NOREPLACE, &cred), 0);
	f->dir = nd;
	memcpy(f->name, nn, sizeof(nn));
}

static void
op_link(struct flyfs *fs, struct blockdev *bd, int k)
{
	struct mname *n;
	struct flyfs_attr a;

	if (nnames >= MAXNAMES)
		return;
	n = &names[nnames];
	n->dir = (int)(rand_r(&seed) % NDIRS);
	n->file = k;
	snprintf(n->name, sizeof(n->name), "l%u", uniq++);
	touch(bd, k);
	ck_assert_int_eq(flyfs_link(fs, files[k].ino, dirs[n->dir], n->name,
	    &a), 0);
	forget(fs, &a);
	files[k].nlink++;
	nnames++;
}

static void
op_node(struct flyfs *fs)
{
	struct mname *n;
	struct flyfs_attr a;

	if (nnames >= MAXNAMES)
		return;
	n = &names[nnames];
	n->dir = (int)(rand_r(&seed) % NDIRS);
	n->file = -1;
	if (rand_r(&seed) % 2) {
		char target[200];
		size_t tl = 1 + rand_r(&seed) % (sizeof(target) - 1);

		memset(target, 'a' + (int)(uniq % 26), tl);
		target[tl] = '\0';
		snprintf(n->name, sizeof(n->name), "s%u", uniq++);
		ck_assert_int_eq(flyfs_symlink(fs, dirs[n->dir], n->name,
		    target, &cred, &a), 0);
	} else {
		snprintf(n->name, sizeof(n->name), "p%u", uniq++);
		ck_assert_int_eq(flyfs_mknod(fs, dirs[n->dir], n->name,
		    S_IFIFO | 0600, 0, &cred, &a), 0);
	}
	forget(fs, &a);
	nnames++;
}

/* Remove an extra name (link, symlink, node) or a file's primary name. */
static void
op_unlink(struct flyfs *fs, struct blockdev *bd)
{
	if (nnames > 0 && rand_r(&seed) % 2) {
		int i = (int)(rand_r(&seed) % (unsigned)nnames);
		struct mname *n = &names[i];

		if (n->file >= 0)
			touch(bd, n->file);
		ck_assert_int_eq(flyfs_unlink(fs, dirs[n->dir], n->name,
		    &cred), 0);
		if (n->file >= 0)
			files[n->file].nlink--;
		names[i] = names[--nnames];
		return;
	}
	int k = pick_file();

	if (k < 0 || files[k].nlink != 1)
		return;
	/* Sometimes while open: an orphan until it is closed. */
	if (rand_r(&seed) % 3 == 0) {
		ck_assert_int_eq(flyfs_open(fs, files[k].ino, 0), 0);
		files[k].open = true;
	}
	touch(bd, k);
	ck_assert_int_eq(flyfs_unlink(fs, dirs[files[k].dir], files[k].name,
	    &cred), 0);
	files[k].live = false;
	files[k].nlink = 0;
}

static void
op_close_orphans(struct flyfs *fs)
{
	for (int k = 0; k < nfiles; k++) {
		if (files[k].open && rand_r(&seed) % 2) {
			ck_assert_int_eq(flyfs_release(fs, files[k].ino), 0);
			files[k].open = false;
		}
	}
}

static void
op_scratch_dir(struct flyfs *fs)
{
	struct flyfs_attr a;

	if (!scratch_dir) {
		ck_assert_int_eq(flyfs_mkdir(fs, dirs[rand_r(&seed) % NDIRS],
		    "scratch", 0755, &cred, &a), 0);
		forget(fs, &a);
		dirs[NDIRS] = a.ino;
		scratch_dir = true;
	} else {
		for (int d = 0; d < NDIRS; d++)
			if (flyfs_rmdir(fs, dirs[d], "scratch", &cred) == 0)
				scratch_dir = false;
		ck_assert(!scratch_dir);
	}
}

static void
op_sync(struct flyfs *fs, struct blockdev *bd)
{
	int k = pick_file();

	if (k >= 0 && rand_r(&seed) % 4 != 0) {
		bool ds = rand_r(&seed) % 3 == 0;

		ck_assert_int_eq(flyfs_fsync(fs, files[k].ino, ds), 0);
		record_sync(bd, k, ds);
		return;
	}
	ck_assert_int_eq(flyfs_sync(fs), 0);
	/* A file untouched since its last record is described by it. */
	for (k = 0; k < nfiles; k++)
		if (files[k].live && (files[k].last_sync < 0 ||
		    syncs[files[k].last_sync].next_mod != SIZE_MAX ||
		    syncs[files[k].last_sync].datasync))
			record_sync(bd, k, false);
}

static void
run_workload(struct flyfs *fs, struct blockdev *bd)
{
	struct flyfs_attr a;

	seed = 12345;
	uniq = 0;
	nfiles = nnames = 0;
	nsyncs = 0;
	scratch_dir = false;
	dirs[0] = FLYFS_ROOT_INO;
	for (int d = 1; d < NDIRS; d++) {
		char n[8];

		snprintf(n, sizeof(n), "d%d", d);
		ck_assert_int_eq(flyfs_mkdir(fs, dirs[d - 1], n, 0755, &cred,
		    &a), 0);
		forget(fs, &a);
		dirs[d] = a.ino;
	}
	for (size_t op = 0; op < NOPS; op++) {
		unsigned r = rand_r(&seed) % 100;
		int k = pick_file();

		if (nfiles < NFILES && (r < 12 || k < 0)) {
			op_create(fs);
		} else if (k < 0) {
			continue;
		} else if (r < 40) {
			op_write(fs, bd, k);
		} else if (r < 45) {
			op_truncate(fs, bd, k);
		} else if (r < 50) {
			op_punch(fs, bd, k);
		} else if (r < 56) {
			op_setxattr(fs, bd, k);
		} else if (r < 62) {
			op_rename(fs, bd, k);
		} else if (r < 66) {
			op_link(fs, bd, k);
		} else if (r < 70) {
			op_node(fs);
		} else if (r < 77) {
			op_unlink(fs, bd);
		} else if (r < 80) {
			op_close_orphans(fs);
		} else if (r < 82) {
			op_scratch_dir(fs);
		} else {
			op_sync(fs, bd);
		}
	}
}

static void
free_model(void)
{
	for (size_t i = 0; i < nsyncs; i++)
		free(syncs[i].data);
	nsyncs = 0;
}

/* ---- Checks at one crash point ----------------------------------------- */

struct fsck_msgs {
	char	text[2048];
	size_t	len;
};

static void
fsck_msg(void *arg, enum flyfs_fsck_msgkind kind, const char *line)
{
	struct fsck_msgs *m = arg;
	int n;

	if (kind == FLYFS_FSCK_MSG_INFO || m->len >= sizeof(m->text) - 1)
		return;
	n = snprintf(m->text + m->len, sizeof(m->text) - m->len, "%s\n", line);
	if (n > 0)
		m->len += (size_t)n;
}

static void
fsck_clean(struct blockdev *dst, size_t n, const char *when)
{
	struct flyfs_fsck_opts o;
	struct flyfs_fsck_result r;
	struct fsck_msgs m = { .len = 0 };

	memset(&o, 0, sizeof(o));
	o.mode = FLYFS_FSCK_NO;
	o.force = true;
	o.msg = fsck_msg;
	o.msg_arg = &m;
	m.text[0] = '\0';
	ck_assert_int_ne(flyfs_fsck(dst, &o, &r), FLYFS_FSCK_OPERROR);
	ck_assert_msg(r.exit_code == FLYFS_FSCK_OK && r.found == 0,
	    "point %zu (%s): fsck exit %d, %" PRIu64 " problems:\n%s", n, when,
	    r.exit_code, r.found, m.text);
}

/* File K must be as sync event E recorded it. */
static void
check_file(struct flyfs *fs, size_t n, const struct syncev *e)
{
	const struct mfile *f = &files[e->file];
	static uint8_t buf[FMAX + 1];
	struct flyfs_attr a;
	size_t done;

	ck_assert_msg(flyfs_getattr(fs, f->ino, &a) == 0, "point %zu: inode %"
	    PRIu64 " fsync'd is gone", n, f->ino);
	ck_assert_msg(a.size == e->size, "point %zu: inode %" PRIu64 " size %"
	    PRIu64 ", fsync'd %" PRIu64, n, f->ino, a.size, e->size);
	ck_assert_int_eq(flyfs_read(fs, f->ino, buf, sizeof(buf), 0, 0,
	    &done), 0);
	ck_assert_uint_eq(done, e->size);
	if (memcmp(buf, e->data, e->size) != 0) {
		size_t i = 0, j;

		while (buf[i] == e->data[i])
			i++;
		for (j = e->size; j > i && buf[j - 1] == e->data[j - 1]; j--)
			;
		ck_abort_msg("point %zu: inode %" PRIu64 " (size %" PRIu64
		    ", %s event %td) differs from what was fsync'd in [%zu, "
		    "%zu): 0x%02x there, 0x%02x expected", n, f->ino, e->size,
		    e->datasync ? "fdatasync" : "fsync/sync", e - syncs, i, j,
		    buf[i], e->data[i]);
	}
	if (e->datasync)
		return;
	ck_assert_msg(a.nlink == e->nlink, "point %zu: inode %" PRIu64
	    " nlink %u, fsync'd %u", n, f->ino, (unsigned)a.nlink, e->nlink);
	{
		uint8_t xv[XVMAX];
		size_t xl = 0;
		int er = flyfs_getxattr(fs, f->ino, "user.k", xv, sizeof(xv),
		    &xl);

		if (e->xlen == 0) {
			ck_assert_int_eq(er, ENODATA);
		} else {
			ck_assert_int_eq(er, 0);
			ck_assert_uint_eq(xl, e->xlen);
			ck_assert_int_eq(memcmp(xv, e->xv, xl), 0);
		}
	}
	if (e->nlink > 0) {
		ck_assert_msg(flyfs_lookup(fs, dirs[e->dir], e->name, &a) == 0 &&
		    a.ino == f->ino, "point %zu: name %s of inode %" PRIu64
		    " fsync'd is gone", n, e->name, f->ino);
		forget(fs, &a);
	}
}

/*
 * The image after the first KEEP of N log entries, checked against what
 * was durable when the log held N: KEEP = N is a cut after entry N; a
 * smaller KEEP also loses writes no barrier had covered yet.
 */
static void
check_point_kept(struct blockdev *bd, const void *base, size_t keep,
    size_t n, bool raw_fsck)
{
	struct blockdev *dst;
	struct flyfs *fs;
	int bad;

	ck_assert_int_eq(blockdev_open_ram(CRASH_IMAGE_BYTES, 4096, 0, 0,
	    &dst), 0);
	ck_assert_int_eq(blockdev_pwrite(dst, base, CRASH_IMAGE_BYTES, 0), 0);
	ck_assert_int_eq(blockdev_wlog_replay(bd, keep, dst), 0);
	if (raw_fsck)
		fsck_clean(dst, n, "before mount, journal in memory");
	fs = util_mount(dst, 3600);
	for (int k = 0; k < nfiles; k++) {
		const struct syncev *e = NULL;

		for (size_t i = 0; i < nsyncs; i++)
			if (syncs[i].file == k && syncs[i].done <= n)
				e = &syncs[i];
		if (e != NULL && e->next_mod >= n)
			check_file(fs, n, e);
	}
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	fsck_clean(dst, n, "after mount and unmount");
	bad = util_check_image(dst, true, NULL);
	ck_assert_msg(bad == 0, "point %zu of the write log: %d problems", n,
	    bad);
	blockdev_close(dst);
}

/* The image after N log entries. */
static void
check_point(struct blockdev *bd, const void *base, size_t n, bool raw_fsck)
{
	check_point_kept(bd, base, n, n, raw_fsck);
}

/* How many of the first N log entries a barrier covers: up to the last
 * FLUSH among them. */
static size_t
flushed_prefix(struct blockdev *bd, size_t n)
{
	struct blockdev_wlog_entry e;

	while (n > 0) {
		ck_assert_int_eq(blockdev_wlog_get(bd, n - 1, &e), 0);
		if (e.e_type == BLOCKDEV_WLOG_FLUSH)
			break;
		n--;
	}
	return n;
}

static void
setup(void)
{
	files = calloc(NFILES, sizeof(*files));
	ck_assert_ptr_nonnull(files);
}

static void
teardown(void)
{
	free_model();
	free(syncs);
	syncs = NULL;
	capsyncs = 0;
	free(files);
}

START_TEST(test_crash_points)
{
	struct blockdev *bd = util_new_image(CRASH_IMAGE_BYTES);
	void *base = blockdev_alloc_buf(bd, CRASH_IMAGE_BYTES);
	struct flyfs *fs;
	size_t total, step, checked = 0, verified = 0;

	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(blockdev_pread(bd, base, CRASH_IMAGE_BYTES, 0), 0);
	blockdev_wlog_start(bd);
	fs = util_mount(bd, 3600);
	run_workload(fs, bd);
	flyfs_abandon(fs);
	blockdev_wlog_stop(bd);
	total = blockdev_wlog_count(bd);
	ck_assert_uint_gt(total, 50);
	ck_assert_uint_gt(nsyncs, 5);
	step = total / MAX_POINTS + 1;
	for (size_t n = 0; n <= total; n += step, checked++)
		check_point(bd, base, n, checked % 4 == 0);
	/*
	 * Just before and just after a sync returned (some of them); and
	 * just after, with every write since the last barrier lost, which
	 * the device allows: what the sync promised must still be there.
	 */
	for (size_t i = 0; i < nsyncs; i += 1 + nsyncs / 40) {
		if (syncs[i].done > 0)
			check_point(bd, base, syncs[i].done - 1, false);
		check_point(bd, base, syncs[i].done, false);
		check_point_kept(bd, base, flushed_prefix(bd, syncs[i].done),
		    syncs[i].done, false);
		checked += 3;
	}
	check_point(bd, base, total, true);
	for (size_t i = 0; i < nsyncs; i++)
		verified += syncs[i].next_mod > syncs[i].done;
	printf("crash: %zu log entries, %zu sync records (%zu with a window), "
	    "%d files, %zu crash points checked\n", total, nsyncs, verified,
	    nfiles, checked + 1);
	blockdev_free_buf(base);
	blockdev_close(bd);
}
END_TEST

/* The device's own power-cut mode: cut after N writes, for a few N. */
START_TEST(test_powercut)
{
	static const int64_t cuts[] = { 3, 17, 60, 150, 400 };

	for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		struct blockdev *bd = util_new_image(CRASH_IMAGE_BYTES);
		struct flyfs *fs;

		fs = util_mount(bd, 3600);
		blockdev_set_powercut(bd, cuts[c]);
		run_workload(fs, bd);
		flyfs_abandon(fs);
		free_model();
		blockdev_set_powercut(bd, -1);
		fs = util_mount(bd, 3600);
		ck_assert_int_eq(flyfs_unmount(fs), 0);
		fsck_clean(bd, (size_t)cuts[c], "power cut");
		ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
		blockdev_close(bd);
	}
}
END_TEST

static Suite *
crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("wlog_replay");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 900);
	tcase_add_test(tc, test_crash_points);
	suite_add_tcase(s, tc);
	tc = tcase_create("powercut");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_powercut);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(crash_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
