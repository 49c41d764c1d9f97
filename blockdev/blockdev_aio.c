/*
 * blockdev_aio.c - the image backend: the image file opened O_DIRECT,
 * requests submitted with libaio, one completion thread.
 *
 * This file owns the file descriptor, the aio context, the completion
 * thread and everything learned at open: the alignment O_DIRECT needs
 * (statx STATX_DIOALIGN, else a probe) and the size.  It is the only file
 * of flyfs that includes libaio.h.
 *
 * One thread does all completion work.  It sleeps in io_getevents() and
 * so cannot also sleep on a condvar; to wake it for the core's soft queue
 * (and at close) a poll request on an eventfd stays armed in the same aio
 * context (IOCB_CMD_POLL, Linux 4.18+).  Barriers' syncs are submitted as
 * IOCB_CMD_FDSYNC, which the kernel runs in a worker, so an fdatasync never
 * stalls the completions of other requests.  The context has room for the
 * ring's qdepth requests, one sync and the poll, so io_submit() never
 * finds it full.
 *
 * Waited reads (BLOCKDEV_REQ_WAITED) are the exception: each thread that
 * submits one gets an aio context of its own, made on first use and
 * destroyed when the thread exits, and reaps it itself in
 * blockdev_reap_own().  One context serves every device the thread uses:
 * each iocb names its file, each request its device.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "blockdev/blockdev_impl.h"

#define AIO_DEFAULT_QDEPTH	128
#define AIO_MAX_QDEPTH		4096	/* a tenth of the usual aio-max-nr */
#define AIO_BATCH		64	/* events reaped per io_getevents() */

/*
 * (c) constant after open, (a) atomic, (s) ad_sublock.
 *
 * Submission is combined: a thread with a request appends its iocb to
 * ad_pend; if no thread is submitting, it becomes the submitter and hands
 * everything pending to io_submit() in one call, again and again until
 * nothing is pending.  Requests that arrive while a submission runs thus
 * go together in the next one: one system call and (the kernel plugs a
 * batch of three or more) one device notification for the lot, instead
 * of one each.  Nothing waits for the submitter: its loop only ends with
 * ad_pend empty, under ad_sublock.
 */
struct aio_dev {
	int ad_fd;			/* (c) the image */
	int ad_efd;			/* (c) eventfd that wakes the thread */
	io_context_t ad_ctx;		/* (c) */
	pthread_t ad_thread;		/* (c) */
	atomic_bool ad_stop;		/* (a) set by close once drained */
	struct iocb ad_poll;		/* completion thread only */
	pthread_mutex_t ad_sublock;	/* protects the (s) fields */
	struct iocb **ad_pend;		/* (s) prepared, not yet submitted */
	struct iocb **ad_spare;		/* (s) the submitter's batch array */
	unsigned ad_npend;		/* (s) entries of ad_pend */
	bool ad_submitting;		/* (s) a thread is draining ad_pend */
};

struct aio_rpriv {
	struct iocb ap_iocb;		/* the request's (or group's) iocb */
	struct iovec *ap_rem;		/* the rest after a short transfer */
	struct blockdev *ap_bd;		/* the device, for blockdev_reap_own */
};

/*
 * The calling thread's private context for waited reads.  Thread-local:
 * only its thread reads or writes it, so it needs no lock.
 */
struct own_ctx {
	io_context_t oc_ctx;		/* 0 until first use */
	unsigned oc_inflight;		/* submitted here, not yet reaped */
	bool oc_broken;			/* io_setup failed: never try again */
};
static __thread struct own_ctx own;
static pthread_key_t own_key;		/* its destructor frees the context */
static pthread_once_t own_once = PTHREAD_ONCE_INIT;
static bool own_key_ok;			/* (c) after own_once */
_Static_assert(sizeof(struct aio_rpriv) <= BD_RBACK_SIZE, "r_priv too small");

/* Submit the N iocbs of BATCH; a refused one fails its request alone. */
static void
submit_batch(struct blockdev *bd, struct iocb **batch, unsigned n)
{
	struct aio_dev *ad = bd->bd_back;
	unsigned done = 0;

	while (done < n) {
		int r = io_submit(ad->ad_ctx, (long)(n - done), batch + done);
		struct blockdev_req *req;
		struct aio_rpriv *ap;

		if (r > 0) {
			done += (unsigned)r;
			continue;
		}
		/* The first of the rest was refused: fail it, go on. */
		req = batch[done++]->data;
		ap = bd_rback(req);
		free(ap->ap_rem);
		ap->ap_rem = NULL;
		req->r_error = r < 0 ? -r : EIO;
		req->r_bytes = req->r_done_bytes;
		bd_complete_soft(bd, req);
	}
}

/* Submit CB now or with the running submission (see struct aio_dev). */
static void
submit_combined(struct blockdev *bd, struct iocb *cb)
{
	struct aio_dev *ad = bd->bd_back;

	pthread_mutex_lock(&ad->ad_sublock);
	KKASSERT(ad->ad_npend < bd->bd_qdepth);
	ad->ad_pend[ad->ad_npend++] = cb;
	if (ad->ad_submitting) {
		pthread_mutex_unlock(&ad->ad_sublock);
		return;
	}
	ad->ad_submitting = true;
	while (ad->ad_npend > 0) {
		struct iocb **batch = ad->ad_pend;
		unsigned n = ad->ad_npend;

		ad->ad_pend = ad->ad_spare;
		ad->ad_spare = batch;
		ad->ad_npend = 0;
		pthread_mutex_unlock(&ad->ad_sublock);
		submit_batch(bd, batch, n);
		pthread_mutex_lock(&ad->ad_sublock);
	}
	ad->ad_submitting = false;
	pthread_mutex_unlock(&ad->ad_sublock);
}

/* ---- Waited reads: the thread's private context ------------------------ */

/* Thread exit: the context goes with its thread. */
static void
own_destroy(void *arg)
{
	struct own_ctx *oc = arg;

	/* Every waited read is reaped by the biowait() that submitted it. */
	KKASSERT(oc->oc_inflight == 0);
	if (oc->oc_ctx != 0)
		io_destroy(oc->oc_ctx);
	oc->oc_ctx = 0;
}

/*
 * A child of fork() inherits the forking thread's own_ctx, but not the
 * aio context it names (contexts belong to the parent's address space):
 * start again.
 */
static void
own_forget(void)
{
	own.oc_ctx = 0;
	own.oc_inflight = 0;
	own.oc_broken = false;
}

static void
own_key_create(void)
{
	own_key_ok = pthread_key_create(&own_key, own_destroy) == 0 &&
	    pthread_atfork(NULL, NULL, own_forget) == 0;
}

/*
 * bo_own_ok: room on the calling thread's context, made now if need be.
 * A thread that cannot have one (aio-max-nr reached) keeps the ordinary
 * path: the reads still work, one context switch slower.
 */
static bool
aio_own_ok(struct blockdev *bd)
{
	(void)bd;
	if (own.oc_ctx != 0)
		return (own.oc_inflight < BLOCKDEV_OWN_DEPTH);
	if (own.oc_broken)
		return (false);
	pthread_once(&own_once, own_key_create);
	if (!own_key_ok || io_setup(BLOCKDEV_OWN_DEPTH, &own.oc_ctx) != 0)
		goto broken;
	if (pthread_setspecific(own_key, &own) == 0)
		return (true);
	io_destroy(own.oc_ctx);
broken:
	own.oc_ctx = 0;
	own.oc_broken = true;
	return (false);
}

/* Submit waited read CB on the thread's context, or fail its request. */
static void
submit_own(struct blockdev *bd, struct iocb *cb)
{
	struct blockdev_req *req = cb->data;
	struct aio_rpriv *ap = bd_rback(req);
	int r;

	own.oc_inflight++;
	if ((r = io_submit(own.oc_ctx, 1, &cb)) == 1)
		return;
	/* Refused: it fails on the completion thread, as any other would. */
	own.oc_inflight--;
	free(ap->ap_rem);
	ap->ap_rem = NULL;
	req->r_error = r < 0 ? -r : EIO;
	req->r_bytes = req->r_done_bytes;
	bd_complete_soft(bd, req);
}

static void aio_event(struct blockdev *bd, struct blockdev_req *req,
    long res);

bool
blockdev_reap_own(void)
{
	struct io_event ev[BLOCKDEV_OWN_DEPTH];
	struct blockdev_req *req;
	int i, n;

	if (own.oc_inflight == 0)
		return (false);
	do {
		n = io_getevents(own.oc_ctx, 1, BLOCKDEV_OWN_DEPTH, ev, NULL);
	} while (n == -EINTR);
	if (n <= 0)
		bd_panic("io_getevents on a thread's own context: %s",
		    strerror(n < 0 ? -n : EIO));
	KKASSERT((unsigned)n <= own.oc_inflight);
	own.oc_inflight -= (unsigned)n;
	for (i = 0; i < n; i++) {
		req = ev[i].data;
		BD_TSAN_ACQUIRE(req);
		/* A short read continues here, on the same context. */
		aio_event(((struct aio_rpriv *)bd_rback(req))->ap_bd, req,
		    (long)ev[i].res);
	}
	return (true);
}

/* Start (or continue) REQ's transfer with IOV at OFF; any thread. */
static void
aio_start(struct blockdev *bd, struct blockdev_req *req,
    const struct iovec *iov, int iovcnt, off_t off)
{
	struct aio_dev *ad = bd->bd_back;
	struct aio_rpriv *ap = bd_rback(req);
	struct iocb *cb = &ap->ap_iocb;
	bool on_own = bd_rcore(req)->rc_own;

	if (req->r_op == BLOCKDEV_READ)
		io_prep_preadv(cb, ad->ad_fd, iov, iovcnt, off);
	else
		io_prep_pwritev(cb, ad->ad_fd, iov, iovcnt, off);
	cb->data = req;
	ap->ap_bd = bd;
	/* Nothing of REQ is read after this: the completion may free it. */
	BD_TSAN_RELEASE(req);
	if (on_own)
		submit_own(bd, cb);
	else
		submit_combined(bd, cb);
}

static void
aio_submit(struct blockdev *bd, struct blockdev_req *req)
{
	((struct aio_rpriv *)bd_rback(req))->ap_rem = NULL;
	aio_start(bd, req, req->r_iov, req->r_iovcnt, req->r_offset);
}

static void
aio_sync(struct blockdev *bd, struct blockdev_req *head)
{
	struct aio_dev *ad = bd->bd_back;
	struct iocb *cb = &((struct aio_rpriv *)bd_rback(head))->ap_iocb;
	int r;

	io_prep_fdsync(cb, ad->ad_fd);
	cb->data = head;
	BD_TSAN_RELEASE(head);
	if ((r = io_submit(ad->ad_ctx, 1, &cb)) != 1)
		bd_sync_failed(bd, head, r < 0 ? -r : EIO);
}

static void
aio_kick(struct blockdev *bd)
{
	struct aio_dev *ad = bd->bd_back;
	uint64_t one = 1;

	/* Only fails if the counter would overflow: it is awake anyway. */
	if (write(ad->ad_efd, &one, sizeof(one)) < 0)
		KKASSERT(errno == EAGAIN);
}

static void
arm_poll(struct aio_dev *ad)
{
	struct iocb *cb = &ad->ad_poll;
	int r;

	io_prep_poll(cb, ad->ad_efd, POLLIN);
	cb->data = NULL;
	if ((r = io_submit(ad->ad_ctx, 1, &cb)) != 1)
		bd_panic("io_submit(IOCB_CMD_POLL): %s", strerror(-r));
}

/*
 * The rest of REQ after a short transfer: the caller's iovec array is
 * const, so the remainder is a copy with its first segment trimmed.
 */
static int
rest_of(struct blockdev_req *req, struct iovec **remp, int *cntp)
{
	struct aio_rpriv *ap = bd_rback(req);
	size_t skip = req->r_done_bytes;
	struct iovec *rem;
	int i = 0, n;

	while (skip >= req->r_iov[i].iov_len)
		skip -= req->r_iov[i++].iov_len;
	n = req->r_iovcnt - i;
	if ((rem = malloc((size_t)n * sizeof(*rem))) == NULL)
		return (ENOMEM);
	memcpy(rem, &req->r_iov[i], (size_t)n * sizeof(*rem));
	rem[0].iov_base = (char *)rem[0].iov_base + skip;
	rem[0].iov_len -= skip;
	free(ap->ap_rem);
	ap->ap_rem = rem;
	*remp = rem;
	*cntp = n;
	return (0);
}

/*
 * One reaped event for REQ with result RES (bytes, or -errno).  A short
 * transfer is continued; it ends the request with EIO only when the file
 * really ends (no progress, or an end that is not on an alignment
 * boundary, which O_DIRECT cannot continue from).
 */
static void
aio_event(struct blockdev *bd, struct blockdev_req *req, long res)
{
	struct aio_rpriv *ap = bd_rback(req);
	struct iovec *rem;
	int cnt;

	if (req->r_op == BLOCKDEV_FLUSH) {
		bd_sync_done(bd, req, res < 0 ? (int)-res : 0);
		return;
	}
	if (res < 0) {
		req->r_error = (int)-res;
	} else {
		req->r_done_bytes += (size_t)res;
		if (req->r_done_bytes >= req->r_len) {
			req->r_error = 0;
		} else if (res == 0 || (!bd->bd_buffered &&
		    req->r_done_bytes % bd->bd_align != 0)) {
			req->r_error = EIO;
		} else if ((req->r_error = rest_of(req, &rem, &cnt)) == 0) {
			bd_count_short_retry(bd);
			aio_start(bd, req, rem, cnt,
			    req->r_offset + (off_t)req->r_done_bytes);
			return;
		}
	}
	free(ap->ap_rem);
	ap->ap_rem = NULL;
	req->r_bytes = req->r_done_bytes;
	bd_complete(bd, req);
}

static void *
aio_thread(void *arg)
{
	struct blockdev *bd = arg;
	struct aio_dev *ad = bd->bd_back;
	struct io_event ev[AIO_BATCH];
	struct blockdev_req *req;
	uint64_t v;
	bool kicked;
	int i, n;

	bd_completion_thread_enter(bd);
	arm_poll(ad);
	for (;;) {
		n = io_getevents(ad->ad_ctx, 1, AIO_BATCH, ev, NULL);
		if (n == -EINTR)
			continue;
		if (n < 0)
			bd_panic("io_getevents on %s: %s", bd->bd_path,
			    strerror(-n));
		kicked = false;
		for (i = 0; i < n; i++) {
			if (ev[i].obj == &ad->ad_poll) {
				kicked = true;
				continue;
			}
			req = ev[i].data;
			BD_TSAN_ACQUIRE(req);
			aio_event(bd, req, (long)ev[i].res);
		}
		if (kicked) {
			if (read(ad->ad_efd, &v, sizeof(v)) < 0)
				KKASSERT(errno == EAGAIN);
		}
		bd_run_softq(bd);
		if (kicked) {
			if (atomic_load(&ad->ad_stop))
				break;
			arm_poll(ad);
		}
	}
	return (NULL);
}

static void
aio_destroy(struct blockdev *bd)
{
	struct aio_dev *ad = bd->bd_back;

	atomic_store(&ad->ad_stop, true);
	aio_kick(bd);
	pthread_join(ad->ad_thread, NULL);
	io_destroy(ad->ad_ctx);
	close(ad->ad_efd);
	close(ad->ad_fd);
	pthread_mutex_destroy(&ad->ad_sublock);
	free(ad->ad_pend);
	free(ad->ad_spare);
	free(ad);
}

static const struct bd_backend_ops aio_ops = {
	.bo_submit = aio_submit,
	.bo_sync = aio_sync,
	.bo_own_ok = aio_own_ok,
	.bo_kick = aio_kick,
	.bo_destroy = aio_destroy,
};

/* ---- Opening: alignment, size and the errors a user can act on ---- */

static void __attribute__((format(printf, 3, 4)))
explain(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errbuf == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

static const char *
fs_name(long type)
{
	switch (type) {
	case TMPFS_MAGIC:	return ("tmpfs");
	case RAMFS_MAGIC:	return ("ramfs");
	case OVERLAYFS_SUPER_MAGIC: return ("overlayfs");
	case NFS_SUPER_MAGIC:	return ("nfs");
	case V9FS_MAGIC:	return ("9p");
	case 0x65735546:	return ("fuse");
	case EXT4_SUPER_MAGIC:	return ("ext4");
	case XFS_SUPER_MAGIC:	return ("xfs");
	case BTRFS_SUPER_MAGIC:	return ("btrfs");
	}
	return ("a filesystem");
}

/*
 * Find the smallest alignment in 512..4096 at which an O_DIRECT read of
 * FD succeeds, reading at that offset with that length into memory
 * aligned to exactly that.  For kernels and filesystems that do not
 * report STATX_DIOALIGN.  A hole may accept a smaller alignment than the
 * device would, so it reads at the start of the image, which mkfs writes.
 * *ALIGNP = 0 with EINVAL if none works (no O_DIRECT at all).
 */
int
bd_probe_dio_align(int fd, unsigned *alignp)
{
	unsigned char *buf;
	unsigned a;
	int error = EINVAL;

	*alignp = 0;
	if (posix_memalign((void **)&buf, 8192, 8192) != 0)
		return (ENOMEM);
	for (a = 512; a <= 4096; a *= 2) {
		if (pread(fd, buf + a, a, a) >= 0) {
			*alignp = a;
			error = 0;
			break;
		}
		if (errno != EINVAL) {
			error = errno;
			break;
		}
	}
	free(buf);
	return (error);
}

/* The alignment for offsets, lengths and memory: the strictest of them. */
static int
dio_align(int fd, unsigned *alignp)
{
	struct statx stx;
	unsigned a;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) != 0 &&
	    stx.stx_dio_offset_align != 0) {
		a = stx.stx_dio_offset_align;
		if (stx.stx_dio_mem_align > a)
			a = stx.stx_dio_mem_align;
		*alignp = a < 512 ? 512 : a;
		return (0);
	}
	return (bd_probe_dio_align(fd, alignp));
}

static void
explain_open(const char *path, bool readonly, int error, char *errbuf,
    size_t errlen)
{
	struct statfs sfs;

	switch (error) {
	case ENOENT:
		explain(errbuf, errlen, "image %s does not exist; check the "
		    "path, or create the image with mkfs.flyfs", path);
		break;
	case EACCES:
	case EPERM:
	case EROFS:
		if (readonly)
			explain(errbuf, errlen, "cannot read image %s: %s; "
			    "run as a user allowed to read it or fix its "
			    "permissions", path, strerror(error));
		else
			explain(errbuf, errlen, "cannot open image %s for "
			    "writing: %s; make it writable (chmod u+w, "
			    "chattr -i, or remount its filesystem "
			    "read-write) or open it read-only", path,
			    strerror(error));
		break;
	case EISDIR:
		explain(errbuf, errlen, "%s is a directory; give the path of "
		    "a flyfs image file", path);
		break;
	case EINVAL:
		/* open() refuses O_DIRECT where it is not supported. */
		explain(errbuf, errlen, "image %s is on %s, which does not "
		    "support O_DIRECT; put the image on ext4, xfs or btrfs",
		    path, statfs(path, &sfs) == 0 ?
		    fs_name((long)sfs.f_type) : "a filesystem");
		break;
	default:
		explain(errbuf, errlen, "cannot open image %s: %s", path,
		    strerror(error));
		break;
	}
}

/* Size of the regular file or block device behind FD. */
static int
image_size(int fd, const struct stat *st, uint64_t *sizep)
{
	if (S_ISREG(st->st_mode)) {
		*sizep = (uint64_t)st->st_size;
		return (0);
	}
	if (ioctl(fd, BLKGETSIZE64, sizep) != 0)
		return (errno);
	return (0);
}

/*
 * Open PATH and learn everything about it, before any thread exists.
 * Fills *FDP, *SIZEP, *ALIGNP and *BUFFEREDP, or explains in ERRBUF.
 */
static int
open_image(const char *path, const struct blockdev_opts *o, int *fdp,
    uint64_t *sizep, unsigned *alignp, bool *bufferedp, char *errbuf,
    size_t errlen)
{
	int flags = (o->o_readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct statfs sfs;
	struct stat st;
	int fd, error;

	*bufferedp = false;
	fd = open(path, flags | O_DIRECT);
	if (fd < 0 && errno == EINVAL && o->o_allow_buffered) {
		fd = open(path, flags);
		*bufferedp = true;
	}
	if (fd < 0) {
		error = errno;
		explain_open(path, o->o_readonly, error, errbuf, errlen);
		return (error);
	}
	if (fstat(fd, &st) != 0 || fstatfs(fd, &sfs) != 0) {
		error = errno;
		explain(errbuf, errlen, "cannot stat image %s: %s", path,
		    strerror(error));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		error = EINVAL;
		explain(errbuf, errlen, "%s is not a regular file or a block "
		    "device; give the path of a flyfs image", path);
		goto fail;
	}
	/*
	 * tmpfs accepts O_DIRECT since Linux 6.6, but it is page cache under
	 * another name and keeps nothing across a reboot: the durability a
	 * barrier promises would be a lie.  Refuse it unless a test asked.
	 */
	if (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC) {
		if (!o->o_allow_buffered) {
			error = EINVAL;
			explain(errbuf, errlen, "image %s is on %s, which has "
			    "no real O_DIRECT and loses everything at reboot; "
			    "put the image on ext4, xfs or btrfs", path,
			    fs_name((long)sfs.f_type));
			goto fail;
		}
		if (!*bufferedp) {
			close(fd);
			if ((fd = open(path, flags)) < 0) {
				error = errno;
				explain_open(path, o->o_readonly, error,
				    errbuf, errlen);
				return (error);
			}
			*bufferedp = true;
		}
	}
	if ((error = image_size(fd, &st, sizep)) != 0) {
		explain(errbuf, errlen, "cannot get the size of %s: %s", path,
		    strerror(error));
		goto fail;
	}
	if (*bufferedp) {
		*alignp = 512;
	} else if ((error = dio_align(fd, alignp)) != 0) {
		if (error == EINVAL)
			explain(errbuf, errlen, "image %s is on %s, which does "
			    "not support O_DIRECT; put the image on ext4, xfs "
			    "or btrfs", path, fs_name((long)sfs.f_type));
		else
			explain(errbuf, errlen, "cannot read image %s: %s",
			    path, strerror(error));
		goto fail;
	}
	if (*sizep % *alignp != 0) {
		error = EINVAL;
		explain(errbuf, errlen, "image %s is %llu bytes, not a "
		    "multiple of the %u-byte alignment O_DIRECT needs there; "
		    "resize it to a multiple of %u (truncate -s) or recreate "
		    "it with mkfs.flyfs", path, (unsigned long long)*sizep,
		    *alignp, *alignp);
		goto fail;
	}
	*fdp = fd;
	return (0);
fail:
	close(fd);
	return (error);
}

int
blockdev_open(const char *path, const struct blockdev_opts *opts,
    struct blockdev **bdp, char *errbuf, size_t errlen)
{
	static const struct blockdev_opts dflt;
	const struct blockdev_opts *o = opts != NULL ? opts : &dflt;
	struct blockdev *bd = NULL;
	struct aio_dev *ad;
	unsigned qdepth, align;
	uint64_t size;
	bool buffered;
	int fd, error;

	*bdp = NULL;
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	qdepth = o->o_queue_depth ? o->o_queue_depth : AIO_DEFAULT_QDEPTH;
	if (qdepth > AIO_MAX_QDEPTH) {
		explain(errbuf, errlen, "queue depth %u for %s is above the "
		    "limit of %u; choose a smaller one", qdepth, path,
		    AIO_MAX_QDEPTH);
		return (EINVAL);
	}
	if ((error = open_image(path, o, &fd, &size, &align, &buffered,
	    errbuf, errlen)) != 0)
		return (error);
	if ((ad = calloc(1, sizeof(*ad))) == NULL) {
		close(fd);
		return (ENOMEM);
	}
	ad->ad_fd = fd;
	ad->ad_efd = -1;
	pthread_mutex_init(&ad->ad_sublock, NULL);
	ad->ad_pend = calloc(qdepth, sizeof(*ad->ad_pend));
	ad->ad_spare = calloc(qdepth, sizeof(*ad->ad_spare));
	if (ad->ad_pend == NULL || ad->ad_spare == NULL) {
		error = ENOMEM;
		goto fail;
	}
	if ((ad->ad_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		error = errno;
		explain(errbuf, errlen, "eventfd for %s: %s", path,
		    strerror(error));
		goto fail;
	}
	/* Room for the ring, one sync and the poll: see the file comment. */
	if ((error = -io_setup((int)qdepth + 2, &ad->ad_ctx)) != 0) {
		explain(errbuf, errlen, "cannot set up %u aio slots for %s: "
		    "%s; raise fs.aio-max-nr (sysctl) or lower the queue "
		    "depth", qdepth + 2, path, strerror(error));
		goto fail;
	}
	if ((bd = bd_alloc(path, size, align, qdepth, o->o_readonly)) ==
	    NULL) {
		error = ENOMEM;
		goto fail_ctx;
	}
	bd->bd_ops = &aio_ops;
	bd->bd_back = ad;
	bd->bd_buffered = buffered;
	if ((error = bd_thread_create(&ad->ad_thread, aio_thread, bd,
	    "bd-aio")) != 0) {
		explain(errbuf, errlen, "cannot start the completion thread "
		    "for %s: %s", path, strerror(error));
		bd_free(bd);
		goto fail_ctx;
	}
	*bdp = bd;
	return (0);
fail_ctx:
	io_destroy(ad->ad_ctx);
fail:
	if (ad->ad_efd >= 0)
		close(ad->ad_efd);
	close(fd);
	pthread_mutex_destroy(&ad->ad_sublock);
	free(ad->ad_pend);
	free(ad->ad_spare);
	free(ad);
	return (error);
}
