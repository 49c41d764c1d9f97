/*
 * fuse_ops.c - the FUSE low-level adapter: one short handler per operation
 * over the filesystem core (fs/flyfs.h).
 *
 * This module owns the translation between FUSE requests and core calls:
 * node ids are inode numbers (FUSE_ROOT_ID == FLYFS_ROOT_INO), lookup
 * counts pass through unchanged, errors are the core's positive errnos.
 * It owns no filesystem state; what it keeps per mount is struct
 * flyfs_fuse (fuse_ops.h), constant while the session runs.
 *
 * Every handler replies exactly once.  It opens with OP_BEGIN(req), which
 * declares a guard that lives until the handler returns; every reply goes
 * through a reply_*() helper below, which counts on that guard.  A second
 * reply panics at once, naming the handler; a handler that returns without
 * replying panics when its guard goes out of scope.  Both are bugs that
 * hang or corrupt a kernel request, so they are loud in every build.
 *
 * A reply that carries a new lookup reference (entry, create, readdirplus)
 * may fail to reach the kernel (the request was interrupted, or the
 * connection died).  The kernel then never learns of the reference and will
 * never forget it, so the helpers drop it themselves; likewise an open whose
 * reply is lost is released.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cache/kern_synch.h"	/* panic, KKASSERT */
#include "fs/flyfs.h"
#include "fs/fuse_ops.h"

/* Largest read or write the kernel sends (max_write, max_pages). */
#define FUSE_MAX_IO		(1024 * 1024)
/* Background requests (read-ahead, async direct I/O, writeback) in flight:
 * an fio job at iodepth 32 must not be capped at the kernel's default 12. */
#define FUSE_MAX_BACKGROUND	64
/* Extra bytes announced for a virtual xattr's size (see getxattr). */
#define VXATTR_SLACK		256
#define XATTR_MAX		65536	/* XATTR_SIZE_MAX, XATTR_LIST_MAX */

/* ---- exactly one reply per request ---------------------------------------- */

struct reply_guard {
	fuse_req_t	req;
	const char	*op;
	int		replies;
};

/* The handler running on this thread (a worker runs one at a time). */
static __thread struct reply_guard *cur_guard;

static void
guard_enter(struct reply_guard *g)
{
	if (cur_guard != NULL)
		panic("fuse: %s entered while %s is running on this thread",
		    g->op, cur_guard->op);
	cur_guard = g;
}

/* Runs when the handler's guard goes out of scope, on every return path. */
static void
guard_leave(struct reply_guard *g)
{
	if (g->replies != 1)
		panic("fuse: %s returned after %d replies", g->op, g->replies);
	cur_guard = NULL;
}

#define OP_BEGIN(req)							\
	struct reply_guard op_guard_					\
	    __attribute__((cleanup(guard_leave))) = { (req), __func__, 0 }; \
	guard_enter(&op_guard_)

/* Count one reply to REQ; RC is what fuse_reply_*() returned. */
static int
replied(fuse_req_t req, int rc, const char *kind)
{
	struct reply_guard *g = cur_guard;

	if (g == NULL || g->req != req)
		panic("fuse: %s reply outside its handler", kind);
	if (g->replies++ != 0)
		panic("fuse: %s: second reply (%s)", g->op, kind);
	if (rc != 0 && rc != -ENOENT)	/* -ENOENT: the request was interrupted */
		fuse_log(FUSE_LOG_WARNING, "flyfs: %s: %s reply failed: %s\n",
		    g->op, kind, strerror(-rc));
	return rc;
}

static struct flyfs_fuse *
FF(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Supplementary groups of the request's caller, read from /proc. */
static bool
req_in_group(const struct flyfs_cred *cred, gid_t gid)
{
	gid_t list[64];
	int n = fuse_req_getgroups(cred->ctx, 64, list);

	for (int i = 0; i < n && i < 64; i++)
		if (list[i] == gid)
			return true;
	return false;
}

static struct flyfs_cred
req_cred(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct flyfs_cred c = { ctx->uid, ctx->gid, req_in_group, req };

	return c;
}

/* ERR is 0 (success without data) or a positive errno from the core. */
static void
reply_err(fuse_req_t req, int err)
{
	if (err < 0 || err >= 4096) {
		fuse_log(FUSE_LOG_ERR, "flyfs: %s: bad errno %d from the core\n",
		    cur_guard ? cur_guard->op : "?", err);
		err = EIO;
	}
	replied(req, fuse_reply_err(req, err), "err");
}

static void
reply_none(fuse_req_t req)
{
	fuse_reply_none(req);
	replied(req, 0, "none");
}

static void
attr_to_stat(const struct flyfs_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = a->blksize;
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

static void
attr_to_entry(struct flyfs_fuse *ff, const struct flyfs_attr *a,
    struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = a->generation;
	attr_to_stat(a, &e->attr);
	e->attr_timeout = ff->attr_timeout;
	e->entry_timeout = ff->entry_timeout;
}

static void
reply_attr(fuse_req_t req, const struct flyfs_attr *a)
{
	struct stat st;

	attr_to_stat(a, &st);
	replied(req, fuse_reply_attr(req, &st, FF(req)->attr_timeout), "attr");
}

/* A reply for A, which holds one lookup reference (dropped if lost). */
static void
reply_entry(fuse_req_t req, const struct flyfs_attr *a)
{
	struct flyfs_fuse *ff = FF(req);
	struct fuse_entry_param e;

	attr_to_entry(ff, a, &e);
	if (replied(req, fuse_reply_entry(req, &e), "entry") != 0)
		flyfs_forget(ff->fs, a->ino, 1);
}

/* "No such name", cached by the kernel for entry_timeout: every change to
 * the namespace comes through this mount, so the kernel can trust it. */
static void
reply_negative_entry(fuse_req_t req)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.entry_timeout = FF(req)->entry_timeout;
	replied(req, fuse_reply_entry(req, &e), "negative entry");
}

/* Open-file flags the kernel honours, per cache mode. */
static void
set_open_flags(struct flyfs_fuse *ff, struct fuse_file_info *fi)
{
	fi->direct_io = ff->cache_mode == FLYFS_CACHE_DIRECT;
	fi->keep_cache = ff->cache_mode == FLYFS_CACHE_KEEP ||
	    ff->cache_mode == FLYFS_CACHE_WRITEBACK;
	/* flush has nothing to do (data is in the buffer cache already), so
	 * spare every close() a round trip.  The kernel ignores this in
	 * writeback mode, where flush must push its dirty pages. */
	fi->noflush = 1;
}

/* A reply for an open of INO (the core's open count is held: released if
 * the reply is lost) that with E also carries a lookup reference. */
static void
reply_open(fuse_req_t req, uint64_t ino, const struct flyfs_attr *created,
    const struct fuse_file_info *fi)
{
	struct flyfs_fuse *ff = FF(req);
	struct fuse_entry_param e;
	int rc;

	if (created != NULL) {
		attr_to_entry(ff, created, &e);
		rc = replied(req, fuse_reply_create(req, &e, fi), "create");
	} else {
		rc = replied(req, fuse_reply_open(req, fi), "open");
	}
	if (rc != 0) {
		flyfs_release(ff->fs, ino);
		if (created != NULL)
			flyfs_forget(ff->fs, ino, 1);
	}
}

static void
reply_buf(fuse_req_t req, const void *buf, size_t len)
{
	replied(req, fuse_reply_buf(req, buf, len), "buf");
}

static void
reply_write(fuse_req_t req, size_t count)
{
	replied(req, fuse_reply_write(req, count), "write");
}

static void
reply_xattr_size(fuse_req_t req, size_t size)
{
	replied(req, fuse_reply_xattr(req, size), "xattr");
}

/* ---- per-thread I/O buffer -------------------------------------------------- */

/*
 * Reads are copied out of the buffer cache into one buffer per worker
 * thread, grown on demand up to FUSE_MAX_IO, freed when the thread exits.
 */
struct iobuf {
	void	*data;
	size_t	size;
};

static pthread_key_t iobuf_key;
static pthread_once_t iobuf_once = PTHREAD_ONCE_INIT;

static void
iobuf_free(void *p)
{
	struct iobuf *ib = p;

	free(ib->data);
	free(ib);
}

static void
iobuf_init(void)
{
	if (pthread_key_create(&iobuf_key, iobuf_free) != 0)
		panic("fuse: pthread_key_create failed");
}

static void *
iobuf_get(size_t size)
{
	struct iobuf *ib;
	void *p;

	pthread_once(&iobuf_once, iobuf_init);
	ib = pthread_getspecific(iobuf_key);
	if (ib == NULL) {
		if ((ib = calloc(1, sizeof(*ib))) == NULL)
			return NULL;
		pthread_setspecific(iobuf_key, ib);
	}
	if (ib->size < size) {
		if (posix_memalign(&p, 4096, size) != 0)
			return NULL;
		free(ib->data);
		ib->data = p;
		ib->size = size;
	}
	return ib->data;
}

/* ---- session -------------------------------------------------------------- */

static void
want(struct fuse_conn_info *conn, unsigned cap, bool on)
{
	if (on && (conn->capable & cap))
		conn->want |= cap;
	else
		conn->want &= ~cap;
}

/*
 * Everything negotiated with the kernel, in one place.
 *
 *  - 1 MiB max_write (the kernel's max_pages limit) and read-ahead: fewer,
 *    larger requests, which the buffer cache clusters further.
 *  - No splice.  It pays when the data is already in a file descriptor (a
 *    passthrough fs); ours lives in buffer cache memory and must be copied
 *    there anyway, so a pipe would add copies, not remove them.
 *  - WRITEBACK_CACHE only with -o cache=writeback: by default the kernel
 *    writes through, so the buffer cache sees every write when it happens.
 *  - ATOMIC_O_TRUNC: open(O_TRUNC) is one request, not open + setattr.
 *  - READDIRPLUS (+AUTO): ls -l and find get attributes with the names.
 *  - HANDLE_KILLPRIV: the core clears setuid/setgid on write, truncate and
 *    chown (flyfs.h), so the kernel need not send its own setattr.
 *  - HANDLE_KILLPRIV_V2: the core also drops security.capability there,
 *    so the kernel stops asking for it (a GETXATTR) before every write.
 *    libfuse 3.14 cannot ask for this one; fuse_wire.c adds it to the
 *    INIT reply instead.
 *  - CACHE_SYMLINKS: a symlink never changes.
 *  - Not AUTO_INVAL_DATA (libfuse asks for it by default): with it the
 *    kernel drops a file's whole page cache whenever a GETATTR shows an
 *    mtime other than its own - which is after every write-through write,
 *    since the kernel and flyfs stamp the write at different instants - so
 *    a read/write mix (fio randrw) re-read everything from the daemon.
 *    All data changes pass through this kernel (the image is locked by
 *    one daemon), and the kernel already drops the pages it must: on a
 *    size change, truncate, hole punch / zero range, and around O_DIRECT
 *    writes.
 *  - PARALLEL_DIROPS, ASYNC_READ, ASYNC_DIO: the core is thread-safe.
 *  - Not: EXPORT_SUPPORT (no NFS export: node ids are not stable handles
 *    across remounts without lookup of "." and ".."), POSIX_ACL (no ACLs;
 *    the kernel applies mode bits and the umask), POSIX/FLOCK locks (the
 *    kernel keeps them locally, which is right for a single-host fs).
 */
static void
fl_init(void *userdata, struct fuse_conn_info *conn)
{
	struct flyfs_fuse *ff = userdata;

	conn->max_write = FUSE_MAX_IO;
	conn->max_readahead = FUSE_MAX_IO;
	conn->max_background = FUSE_MAX_BACKGROUND;
	conn->congestion_threshold = FUSE_MAX_BACKGROUND * 3 / 4;
	conn->time_gran = 1;

	want(conn, FUSE_CAP_ASYNC_READ, true);
	want(conn, FUSE_CAP_ASYNC_DIO, true);
	want(conn, FUSE_CAP_PARALLEL_DIROPS, true);
	want(conn, FUSE_CAP_ATOMIC_O_TRUNC, true);
	want(conn, FUSE_CAP_READDIRPLUS, true);
	want(conn, FUSE_CAP_READDIRPLUS_AUTO, true);
	want(conn, FUSE_CAP_HANDLE_KILLPRIV, true);
#ifdef FUSE_CAP_HANDLE_KILLPRIV_V2
	want(conn, FUSE_CAP_HANDLE_KILLPRIV_V2, true);
#endif
	want(conn, FUSE_CAP_CACHE_SYMLINKS, true);
	want(conn, FUSE_CAP_AUTO_INVAL_DATA, false);
	want(conn, FUSE_CAP_WRITEBACK_CACHE,
	    ff->cache_mode == FLYFS_CACHE_WRITEBACK);
	want(conn, FUSE_CAP_SPLICE_READ, false);
	want(conn, FUSE_CAP_SPLICE_WRITE, false);
	want(conn, FUSE_CAP_SPLICE_MOVE, false);
	want(conn, FUSE_CAP_EXPORT_SUPPORT, false);
	want(conn, FUSE_CAP_POSIX_ACL, false);
	want(conn, FUSE_CAP_POSIX_LOCKS, false);
	want(conn, FUSE_CAP_FLOCK_LOCKS, false);
	want(conn, FUSE_CAP_DONT_MASK, false);

	if (ff->debug)
		fuse_log(FUSE_LOG_DEBUG, "flyfs: cache=%s proto %u.%u "
		    "want 0x%x capable 0x%x\n",
		    flyfs_cache_mode_name(ff->cache_mode), conn->proto_major,
		    conn->proto_minor, conn->want, conn->capable);
}

/* ---- names ------------------------------------------------------------------ */

static void
fl_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	OP_BEGIN(req);
	struct flyfs_attr a;
	int err;

	err = flyfs_lookup(FF(req)->fs, parent, name, &a);
	if (err == ENOENT)
		reply_negative_entry(req);
	else if (err)
		reply_err(req, err);
	else
		reply_entry(req, &a);
}

static void
fl_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	OP_BEGIN(req);

	flyfs_forget(FF(req)->fs, ino, nlookup);
	reply_none(req);
}

static void
fl_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	OP_BEGIN(req);
	size_t i;

	for (i = 0; i < count; i++)
		flyfs_forget(FF(req)->fs, forgets[i].ino, forgets[i].nlookup);
	reply_none(req);
}

static void
fl_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	struct flyfs_attr a;
	int err;

	/* FI (fstat) names the same inode: handles carry no attributes. */
	err = flyfs_getattr(FF(req)->fs, ino, &a);
	if (err)
		reply_err(req, err);
	else
		reply_attr(req, &a);
}

static int
setattr_bits(int to_set)
{
	static const struct { int fuse, flyfs; } map[] = {
		{ FUSE_SET_ATTR_MODE, FLYFS_SET_MODE },
		{ FUSE_SET_ATTR_UID, FLYFS_SET_UID },
		{ FUSE_SET_ATTR_GID, FLYFS_SET_GID },
		{ FUSE_SET_ATTR_SIZE, FLYFS_SET_SIZE },
		{ FUSE_SET_ATTR_ATIME, FLYFS_SET_ATIME },
		{ FUSE_SET_ATTR_MTIME, FLYFS_SET_MTIME },
		{ FUSE_SET_ATTR_ATIME_NOW, FLYFS_SET_ATIME_NOW },
		{ FUSE_SET_ATTR_MTIME_NOW, FLYFS_SET_MTIME_NOW },
		{ FUSE_SET_ATTR_CTIME, FLYFS_SET_CTIME },
	};
	size_t i;
	int out = 0;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			out |= map[i].flyfs;
	return out;
}

static void
fl_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st, int to_set,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);
	struct flyfs_attr in, out;
	int err;

	memset(&in, 0, sizeof(in));
	in.ino = ino;
	in.mode = st->st_mode;
	in.uid = st->st_uid;
	in.gid = st->st_gid;
	in.size = (uint64_t)st->st_size;
	in.atime = st->st_atim;
	in.mtime = st->st_mtim;
	in.ctime = st->st_ctim;
	/* ftruncate/futimens (FI set) act on the inode like the path forms. */
	err = flyfs_setattr(FF(req)->fs, ino, &in, setattr_bits(to_set), &cred,
	    &out);
	if (err)
		reply_err(req, err);
	else
		reply_attr(req, &out);
}

static void
fl_readlink(fuse_req_t req, fuse_ino_t ino)
{
	OP_BEGIN(req);
	char buf[PATH_MAX + 1];
	size_t len = 0;
	int err;

	err = flyfs_readlink(FF(req)->fs, ino, buf, PATH_MAX, &len);
	if (err) {
		reply_err(req, err);
		return;
	}
	buf[len] = '\0';
	replied(req, fuse_reply_readlink(req, buf), "readlink");
}

static void
fl_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    dev_t rdev)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);
	struct flyfs_attr a;
	int err;

	err = flyfs_mknod(FF(req)->fs, parent, name, mode, rdev, &cred, &a);
	if (err)
		reply_err(req, err);
	else
		reply_entry(req, &a);
}

static void
fl_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);
	struct flyfs_attr a;
	int err;

	err = flyfs_mkdir(FF(req)->fs, parent, name, mode, &cred, &a);
	if (err)
		reply_err(req, err);
	else
		reply_entry(req, &a);
}

static void
fl_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
    const char *name)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);
	struct flyfs_attr a;
	int err;

	err = flyfs_symlink(FF(req)->fs, parent, name, target, &cred, &a);
	if (err)
		reply_err(req, err);
	else
		reply_entry(req, &a);
}

static void
fl_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	OP_BEGIN(req);
	struct flyfs_attr a;
	int err;

	err = flyfs_link(FF(req)->fs, ino, newparent, newname, &a);
	if (err)
		reply_err(req, err);
	else
		reply_entry(req, &a);
}

static void
fl_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);

	reply_err(req, flyfs_unlink(FF(req)->fs, parent, name, &cred));
}

static void
fl_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);

	reply_err(req, flyfs_rmdir(FF(req)->fs, parent, name, &cred));
}

static void
fl_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);
	unsigned fl = 0;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		reply_err(req, EINVAL);		/* RENAME_WHITEOUT: no */
		return;
	}
	if (flags & RENAME_NOREPLACE)
		fl |= FLYFS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		fl |= FLYFS_RENAME_EXCHANGE;
	reply_err(req, flyfs_rename(FF(req)->fs, parent, name, newparent,
	    newname, fl, &cred));
}

/* ---- files ------------------------------------------------------------------ */

static int
core_open_flags(int oflags)
{
	return (oflags & O_DIRECT) ? FLYFS_O_DIRECT : 0;
}

/*
 * The I/O flags of one read or write: the file's flags now (the kernel
 * sends them with each request, so fcntl(F_SETFL, O_DIRECT) is honoured).
 * Page-cache writeback carries no user's flags.
 */
static int
core_io_flags(const struct fuse_file_info *fi)
{
	if (fi == NULL || fi->writepage)
		return 0;
	return core_open_flags(fi->flags);
}

static void
fl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	struct flyfs_fuse *ff = FF(req);
	struct flyfs_cred cred = req_cred(req);
	struct flyfs_attr in;
	int err;

	err = flyfs_open(ff->fs, ino, core_open_flags(fi->flags));
	if (err) {
		reply_err(req, err);
		return;
	}
	/* ATOMIC_O_TRUNC: the kernel checked write permission already. */
	if (fi->flags & O_TRUNC) {
		memset(&in, 0, sizeof(in));
		err = flyfs_setattr(ff->fs, ino, &in,
		    FLYFS_SET_SIZE | FLYFS_SET_MTIME_NOW, &cred, NULL);
		if (err) {
			flyfs_release(ff->fs, ino);
			reply_err(req, err);
			return;
		}
	}
	set_open_flags(ff, fi);
	reply_open(req, ino, NULL, fi);
}

static void
fl_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	struct flyfs_fuse *ff = FF(req);
	struct flyfs_cred cred = req_cred(req);
	struct flyfs_attr a;
	int err;

	err = flyfs_mknod(ff->fs, parent, name, S_IFREG | (mode & ~S_IFMT), 0,
	    &cred, &a);
	if (err) {
		reply_err(req, err);
		return;
	}
	err = flyfs_open(ff->fs, a.ino, core_open_flags(fi->flags));
	if (err) {
		flyfs_forget(ff->fs, a.ino, 1);
		reply_err(req, err);
		return;
	}
	set_open_flags(ff, fi);
	reply_open(req, a.ino, &a, fi);
}

static void
fl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	int err;

	/* The kernel does not look at release's error; log it. */
	err = flyfs_release(FF(req)->fs, ino);
	if (err)
		fuse_log(FUSE_LOG_WARNING, "flyfs: release of inode %lu: %s\n",
		    (unsigned long)ino, strerror(err));
	reply_err(req, 0);
}

/*
 * The answer to a read the core finished on I/O completion
 * (flyfs_read_async): on the completion thread, outside any handler, so
 * it replies directly; fl_read counted its one reply when it handed over.
 */
static void
read_answer(void *arg, const void *data, size_t len, int error)
{
	fuse_req_t req = arg;
	struct flyfs_fuse *ff = FF(req);
	int rc;

	if (error)
		rc = fuse_reply_err(req, error);
	else
		rc = fuse_reply_buf(req, data, len);
	if (rc != 0 && rc != -ENOENT)
		fuse_log(FUSE_LOG_WARNING, "flyfs: read reply failed: %s\n",
		    strerror(-rc));
	__atomic_fetch_sub(&ff->reads_out, 1, __ATOMIC_RELEASE);
}

/*
 * The core dropped INO's set-id bits in a write.  The write's reply has no
 * attributes, and under HANDLE_KILLPRIV_V2 the kernel does not refresh the
 * mode after such a write, so its copy would keep the bits until the
 * attribute timeout (stat and exec trust it).  Invalidate the attributes
 * only (offset -1): no page lock is taken, so this is safe while the
 * write is still in flight.
 */
static void
attr_changed(void *arg, uint64_t ino)
{
	struct flyfs_fuse *ff = arg;
	int rc = fuse_lowlevel_notify_inval_inode(ff->se, ino, -1, 0);

	if (rc != 0 && rc != -ENOENT)
		fuse_log(FUSE_LOG_WARNING, "flyfs: invalidating inode %llu's "
		    "attributes failed: %s\n", (unsigned long long)ino,
		    strerror(-rc));
}

void
flyfs_fuse_attach(struct flyfs_fuse *ff, struct fuse_session *se)
{
	ff->se = se;
	flyfs_set_attr_cb(ff->fs, attr_changed, ff);
}

void
flyfs_fuse_drain(struct flyfs_fuse *ff)
{
	/* The device answers every request, so this ends. */
	while (__atomic_load_n(&ff->reads_out, __ATOMIC_ACQUIRE) != 0)
		usleep(1000);
}

static void
fl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	struct flyfs_fuse *ff = FF(req);
	size_t done = 0;
	void *buf;
	int err;

	if (size > FUSE_MAX_IO)
		size = FUSE_MAX_IO;
	if ((buf = iobuf_get(size)) == NULL) {
		reply_err(req, ENOMEM);
		return;
	}
	__atomic_fetch_add(&ff->reads_out, 1, __ATOMIC_RELAXED);
	err = flyfs_read_async(ff->fs, ino, buf, size, off, core_io_flags(fi),
	    &done, read_answer, req);
	if (err == EINPROGRESS) {
		/* REQ may be answered and gone already: not touched again. */
		replied(req, 0, "handed to I/O completion");
		return;
	}
	__atomic_fetch_sub(&ff->reads_out, 1, __ATOMIC_RELEASE);
	if (err && done == 0)
		reply_err(req, err);
	else
		reply_buf(req, buf, done);	/* a short read, then the error */
}

static void
fl_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	struct flyfs_cred cred = req_cred(req);
	struct flyfs_cred root = { .uid = 0, .gid = 0 };
	size_t done = 0;
	int err;

	/* Writeback of mmap'ed or cached pages is not a user's write: it
	 * must not clear setuid bits. */
	err = flyfs_write(FF(req)->fs, ino, buf, size, off, core_io_flags(fi),
	    fi->writepage ? &root : &cred, &done);
	if (err && done == 0)
		reply_err(req, err);
	else
		reply_write(req, done);
}

static void
fl_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(req);

	/* Written data is in the buffer cache: nothing to push at close. */
	reply_err(req, 0);
}

static void
fl_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);

	reply_err(req, flyfs_fsync(FF(req)->fs, ino, datasync != 0));
}

static void
fl_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);

	struct flyfs_cred cred = req_cred(req);

	reply_err(req, flyfs_fallocate(FF(req)->fs, ino, mode, off, len,
	    &cred));
}

static void
fl_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	off_t res = 0;
	int err;

	/* The kernel handles SEEK_SET/CUR/END itself. */
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		reply_err(req, EINVAL);
		return;
	}
	err = flyfs_lseek(FF(req)->fs, ino, off, whence, &res);
	if (err)
		reply_err(req, err);
	else
		replied(req, fuse_reply_lseek(req, res), "lseek");
}

/* ---- directories ---------------------------------------------------------- */

static void
fl_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(req);
	struct flyfs_attr a;
	int err;

	/* Directory handles carry nothing: cookies are positions. */
	err = flyfs_getattr(FF(req)->fs, ino, &a);
	if (err == 0 && !S_ISDIR(a.mode))
		err = ENOTDIR;
	if (err) {
		reply_err(req, err);
		return;
	}
	fi->fh = 0;
	replied(req, fuse_reply_open(req, fi), "opendir");
}

static void
fl_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(req);

	reply_err(req, 0);
}

static void
fl_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);

	reply_err(req, flyfs_fsync(FF(req)->fs, ino, datasync != 0));
}

/* A readdir reply being filled. */
struct dirfill {
	fuse_req_t	req;
	struct flyfs_fuse *ff;
	char		*buf;
	size_t		size;
	size_t		used;
	bool		plus;
	uint64_t	*refs;		/* plus: inodes whose reference we hold */
	size_t		nrefs, maxrefs;
};

static bool
is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* flyfs_filldir_t: add one entry; non-zero when the reply is full. */
static int
dir_fill(void *arg, const char *name, size_t namelen, uint64_t ino,
    unsigned dtype, uint64_t cookie, const struct flyfs_attr *attr)
{
	struct dirfill *d = arg;
	struct fuse_entry_param e;
	char nm[NAME_MAX + 1];
	size_t rem = d->size - d->used, n;
	uint64_t *nrefs;

	if (namelen > NAME_MAX)
		return 0;		/* cannot be named through the VFS */
	memcpy(nm, name, namelen);
	nm[namelen] = '\0';

	if (!d->plus) {
		memset(&e.attr, 0, sizeof(e.attr));
		e.attr.st_ino = ino;
		e.attr.st_mode = (mode_t)dtype << 12;
		n = fuse_add_direntry(d->req, d->buf + d->used, rem, nm,
		    &e.attr, (off_t)cookie);
		if (n > rem)
			return 1;
		d->used += n;
		return 0;
	}

	if (attr != NULL) {
		attr_to_entry(d->ff, attr, &e);
	} else {
		memset(&e, 0, sizeof(e));
		e.attr.st_ino = ino;
		e.attr.st_mode = (mode_t)dtype << 12;
	}
	/* "." and ".." carry no reference: node id 0 tells the kernel so. */
	if (is_dot(nm) || attr == NULL)
		e.ino = 0;
	n = fuse_add_direntry_plus(d->req, d->buf + d->used, rem, nm, &e,
	    (off_t)cookie);
	if (n > rem)
		return 1;
	if (e.ino != 0) {
		if (d->nrefs == d->maxrefs) {
			d->maxrefs = d->maxrefs ? 2 * d->maxrefs : 64;
			nrefs = realloc(d->refs, d->maxrefs * sizeof(*nrefs));
			if (nrefs == NULL)
				return 1;	/* reply with what we have */
			d->refs = nrefs;
		}
		d->refs[d->nrefs++] = e.ino;	/* returning 0 takes it */
	}
	d->used += n;
	return 0;
}

static void
do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct dirfill d = { .req = req, .ff = FF(req), .size = size,
	    .plus = plus };
	size_t i;
	int err;

	if ((d.buf = malloc(size ? size : 1)) == NULL) {
		reply_err(req, ENOMEM);
		return;
	}
	err = flyfs_readdir(d.ff->fs, ino, (uint64_t)off, plus, dir_fill, &d);
	if (err && d.used == 0) {
		reply_err(req, err);
	} else if (replied(req, fuse_reply_buf(req, d.buf, d.used),
	    plus ? "readdirplus" : "readdir") != 0) {
		for (i = 0; i < d.nrefs; i++)
			flyfs_forget(d.ff->fs, d.refs[i], 1);
	}
	free(d.refs);
	free(d.buf);
}

static void
fl_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);

	do_readdir(req, ino, size, off, false);
}

static void
fl_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	OP_BEGIN(req);

	do_readdir(req, ino, size, off, true);
}

/* ---- filesystem --------------------------------------------------------- */

static void
fl_statfs(fuse_req_t req, fuse_ino_t ino)
{
	OP_BEGIN(req);
	struct statvfs sv;
	int err;

	memset(&sv, 0, sizeof(sv));
	err = flyfs_statfs(FF(req)->fs, &sv);
	if (err)
		reply_err(req, err);
	else
		replied(req, fuse_reply_statfs(req, &sv), "statfs");
}

/* ---- extended attributes ------------------------------------------------ */

/*
 * Names under "flyfs." are virtual (fuse_stats.c): never stored, never
 * listed, so cp -a and rsync -X do not copy them.  Every other name goes to
 * the core.  The kernel stops sending an xattr operation for good once it
 * sees ENOSYS (and getxattr/listxattr on EOPNOTSUPP), which would take the
 * virtual names down too, so those errnos from the core are translated.
 */
static void
fl_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
    const char *value, size_t size, int flags)
{
	OP_BEGIN(req);
	int fl = 0, err;

	if (fstats_is_virtual(name)) {
		reply_err(req, fstats_set(FF(req), ino, name, value, size,
		    fuse_req_ctx(req)->uid));
		return;
	}
	if (flags & XATTR_CREATE)
		fl |= FLYFS_XATTR_CREATE;
	if (flags & XATTR_REPLACE)
		fl |= FLYFS_XATTR_REPLACE;
	err = flyfs_setxattr(FF(req)->fs, ino, name, value, size, fl);
	reply_err(req, err == ENOSYS ? EOPNOTSUPP : err);
}

static int
xattr_err(int err)
{
	return (err == ENOSYS || err == EOPNOTSUPP) ? ENODATA : err;
}

static void
vxattr_get(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *val = NULL;
	size_t len = 0;
	int err;

	err = fstats_get(FF(req), ino, name, &val, &len);
	if (err)
		reply_err(req, err);
	else if (size == 0)
		/*
		 * Counters move between getfattr's size probe and its read;
		 * announce room for growth so the read does not fail with
		 * ERANGE.  The read returns the true length.
		 */
		reply_xattr_size(req, len + VXATTR_SLACK);
	else if (len > size)
		reply_err(req, ERANGE);
	else
		reply_buf(req, val, len);
	free(val);
}

static void
fl_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	OP_BEGIN(req);
	size_t len = 0;
	char *buf;
	int err;

	if (fstats_is_virtual(name)) {
		vxattr_get(req, ino, name, size);
		return;
	}
	if (size > XATTR_MAX)
		size = XATTR_MAX;
	if (size == 0) {
		err = flyfs_getxattr(FF(req)->fs, ino, name, NULL, 0, &len);
		if (err)
			reply_err(req, xattr_err(err));
		else
			reply_xattr_size(req, len);
		return;
	}
	if ((buf = malloc(size)) == NULL) {
		reply_err(req, ENOMEM);
		return;
	}
	err = flyfs_getxattr(FF(req)->fs, ino, name, buf, size, &len);
	if (err)
		reply_err(req, xattr_err(err));
	else
		reply_buf(req, buf, len);
	free(buf);
}

static void
fl_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	OP_BEGIN(req);
	size_t len = 0;
	char *buf = NULL;
	int err;

	if (size > XATTR_MAX)
		size = XATTR_MAX;
	if (size && (buf = malloc(size)) == NULL) {
		reply_err(req, ENOMEM);
		return;
	}
	err = flyfs_listxattr(FF(req)->fs, ino, buf, size, &len);
	if (err == ENOSYS || err == EOPNOTSUPP) {
		err = 0;			/* no names */
		len = 0;
	}
	if (err)
		reply_err(req, err);
	else if (size == 0)
		reply_xattr_size(req, len);
	else
		reply_buf(req, buf, len);
	free(buf);
}

static void
fl_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	OP_BEGIN(req);
	char *val = NULL;
	size_t len;
	int err;

	if (fstats_is_virtual(name)) {
		/* Virtual names exist while flyfs runs; none can go. */
		err = fstats_get(FF(req), ino, name, &val, &len);
		free(val);
		reply_err(req, err ? err : EPERM);
		return;
	}
	err = flyfs_removexattr(FF(req)->fs, ino, name);
	reply_err(req, err == ENOSYS ? EOPNOTSUPP : err);
}

/* ---- the vector ----------------------------------------------------------- */

static const struct fuse_lowlevel_ops flyfs_ll_ops = {
	.init		= fl_init,
	.lookup		= fl_lookup,
	.forget		= fl_forget,
	.forget_multi	= fl_forget_multi,
	.getattr	= fl_getattr,
	.setattr	= fl_setattr,
	.readlink	= fl_readlink,
	.mknod		= fl_mknod,
	.mkdir		= fl_mkdir,
	.symlink	= fl_symlink,
	.link		= fl_link,
	.unlink		= fl_unlink,
	.rmdir		= fl_rmdir,
	.rename		= fl_rename,
	.open		= fl_open,
	.create		= fl_create,
	.read		= fl_read,
	.write		= fl_write,
	.flush		= fl_flush,
	.release	= fl_release,
	.fsync		= fl_fsync,
	.fallocate	= fl_fallocate,
	.lseek		= fl_lseek,
	.opendir	= fl_opendir,
	.readdir	= fl_readdir,
	.readdirplus	= fl_readdirplus,
	.releasedir	= fl_releasedir,
	.fsyncdir	= fl_fsyncdir,
	.statfs		= fl_statfs,
	.setxattr	= fl_setxattr,
	.getxattr	= fl_getxattr,
	.listxattr	= fl_listxattr,
	.removexattr	= fl_removexattr,
};

const struct fuse_lowlevel_ops *
flyfs_fuse_ops(void)
{
	return &flyfs_ll_ops;
}

static const char *const cache_mode_names[] = {
	[FLYFS_CACHE_STRICT] = "strict",
	[FLYFS_CACHE_KEEP] = "keep",
	[FLYFS_CACHE_WRITEBACK] = "writeback",
	[FLYFS_CACHE_DIRECT] = "direct",
};

const char *
flyfs_cache_mode_name(enum flyfs_cache_mode mode)
{
	return cache_mode_names[mode];
}

int
flyfs_cache_mode_parse(const char *s, enum flyfs_cache_mode *out)
{
	size_t i;

	for (i = 0; i < sizeof(cache_mode_names) / sizeof(cache_mode_names[0]);
	    i++) {
		if (strcmp(s, cache_mode_names[i]) == 0) {
			*out = (enum flyfs_cache_mode)i;
			return 0;
		}
	}
	return EINVAL;
}
