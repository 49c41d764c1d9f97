/*
 * blockdev.h - the block device under the flyfs buffer cache.
 *
 * This module owns the image file and nothing else.  It moves aligned bytes
 * between caller memory and the image, asynchronously, and reports each
 * request's outcome to a completion callback run on the device's completion
 * thread (or, for a waited read, on the thread that waits for it: see
 * BLOCKDEV_REQ_WAITED).  It knows nothing of buffers, inodes or the on-disk
 * format.
 *
 * Two backends share this interface:
 *   - the image backend: the file opened O_DIRECT, requests submitted with
 *     libaio, completions reaped by one completion thread;
 *   - the RAM backend: a page-aligned memory area, completions delivered by a
 *     completion thread as well (never inline in the submitter), with an
 *     optional per-request delay so the cache's throttles can be tested
 *     against a slow device.
 *
 * Above both backends sit the test hooks (write log, fault injection, power
 * cut) so that they behave identically whatever the backend.
 *
 * Conventions: every function returns 0 or a positive errno.  Completion
 * callbacks receive the request; r_error is 0 or a positive errno.  A short
 * transfer is never reported as success: the backend resubmits the remainder
 * and, if the device really ends early, completes the request with EIO and
 * r_bytes set to what was transferred.
 */
#ifndef FLYFS_BLOCKDEV_H
#define FLYFS_BLOCKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct blockdev;
struct blockdev_req;

enum blockdev_op {
	BLOCKDEV_READ = 1,
	BLOCKDEV_WRITE = 2,
	/*
	 * A flush barrier.  It completes only after every write submitted
	 * before it has completed and the image has been made durable
	 * (fdatasync).  It does not hold back writes submitted after it: a
	 * caller that needs "A durable before B is written" (a journal commit
	 * record) waits for the barrier's completion before submitting B.
	 */
	BLOCKDEV_FLUSH = 3,
};

typedef void blockdev_done_t(struct blockdev_req *req);

/*
 * One request.  The caller owns the memory and must keep it, and the iovec
 * array and the buffers it points at, alive and untouched until r_done has
 * been called.  Offsets, lengths and buffer addresses must be multiples of
 * blockdev_align(); misaligned requests are refused by blockdev_submit()
 * with EINVAL and never reach r_done.
 */
struct blockdev_req {
	/* Set by the caller before blockdev_submit(). */
	enum blockdev_op r_op;
	off_t r_offset;			/* byte offset in the image */
	const struct iovec *r_iov;	/* data; unused for BLOCKDEV_FLUSH */
	int r_iovcnt;
	blockdev_done_t *r_done;	/* called once, on the completion thread
					 * (a waited read: see r_flags) */
	void *r_arg;			/* caller's cookie (the cache: a bio) */
	unsigned r_flags;		/* BLOCKDEV_REQ_*; 0 for most requests */

	/* Set by the device before r_done is called. */
	int r_error;			/* 0 or a positive errno */
	size_t r_bytes;			/* bytes transferred */

	/* Private to blockdev/: do not touch. */
	uint64_t r_seq;			/* submission order, for barriers and logs */
	uint64_t r_start_ns;		/* submission time, for the latency histogram */
	size_t r_len;			/* total bytes of r_iov */
	size_t r_done_bytes;		/* progress across short-transfer retries */
	struct blockdev_req *r_next;	/* device's internal lists */
	_Alignas(8) unsigned char r_priv[128]; /* backend state (the aio iocb) */
};

/*
 * BLOCKDEV_REQ_WAITED, on a read: the submitting thread itself will wait
 * for this request, and will call blockdev_reap_own() while it waits (the
 * cache's biowait() does).  On an idle device (no request holding a ring
 * slot, no other waited read out) the image backend then submits the read
 * on an aio context private to that thread and runs r_done there, inside
 * blockdev_reap_own(): the thread sleeps in the kernel and is woken by the
 * completion itself, instead of sleeping on a condvar until the completion
 * thread has been woken and has woken it in turn (two context switches
 * instead of one, per read, on the synchronous read path).  When it cannot
 * (the RAM backend, a test hook's verdict, the thread's private context
 * full or unavailable, the completion thread itself) the flag is ignored
 * and r_done runs on the completion thread as usual, so a waiter must
 * still be ready to be woken the ordinary way.  Waited reads do not take
 * ring slots: they are bounded per thread instead (BLOCKDEV_OWN_DEPTH), so
 * requests a sleeping thread has not reaped yet can never fill the ring
 * that other threads wait on.
 */
#define BLOCKDEV_REQ_WAITED	0x1
#define BLOCKDEV_OWN_DEPTH	32

/* Options for blockdev_open(); zero-initialise and set what you need. */
struct blockdev_opts {
	bool o_readonly;		/* open O_RDONLY; writes fail with EROFS */
	unsigned o_queue_depth;		/* in-flight limit; 0 = default (128) */
	bool o_allow_buffered;		/* tests only: permit a filesystem without
					 * O_DIRECT (tmpfs) by falling back to
					 * buffered I/O; off by default, and the
					 * fallback is reported by blockdev_stats */
};

/*
 * Open the image at PATH.  On failure *bdp is NULL, the return value is a
 * positive errno and ERRBUF (if not NULL) holds a sentence naming the path,
 * what went wrong and what to do (e.g. "tmpfs does not support O_DIRECT; put
 * the image on ext4/xfs/btrfs").  The image size must be a multiple of the
 * alignment.
 */
int blockdev_open(const char *path, const struct blockdev_opts *opts,
    struct blockdev **bdp, char *errbuf, size_t errlen);

/*
 * A RAM-backed device of SIZE bytes with alignment ALIGN (a power of two,
 * >= 512) and queue depth QDEPTH (0 = default).  DELAY_NS, if non-zero, is
 * added to every request before it completes (the "slow device" of the
 * throttle tests); requests still overlap up to the queue depth.
 */
int blockdev_open_ram(uint64_t size, unsigned align, unsigned qdepth,
    uint64_t delay_ns, struct blockdev **bdp);

/*
 * Stop accepting requests, wait for every request in flight (and every
 * pending barrier) to complete and its callback to return, stop the
 * completion thread, close the image and free the device.
 */
void blockdev_close(struct blockdev *bd);

/*
 * Submit REQ.  May sleep while the device already has queue-depth requests
 * in flight (back-pressure: it never spins and never drops a request).
 * Returns 0 if REQ was accepted (r_done will be called exactly once), or a
 * positive errno if it was refused (EINVAL misaligned or out of range, EROFS,
 * ESHUTDOWN after close began); a refused request's r_done is never called.
 * Must not be called with locks held that the completion callback takes.
 * Called from a completion callback it never sleeps: if the ring is full
 * the request is queued, already ordered before later barriers, and takes
 * the next slot that frees.
 */
int blockdev_submit(struct blockdev *bd, struct blockdev_req *req);

/*
 * If the calling thread has waited reads in flight (BLOCKDEV_REQ_WAITED,
 * on any device), sleep until at least one of them completes, run the
 * r_done of every one that did, and return true.  Otherwise return false
 * at once.  Call it without locks that those r_done callbacks take.
 */
bool blockdev_reap_own(void);

/*
 * Synchronous helpers built on blockdev_submit (mkfs, fsck, tests).  They
 * return EDEADLK when called from a completion callback.
 */
int blockdev_pread(struct blockdev *bd, void *buf, size_t len, off_t off);
int blockdev_pwrite(struct blockdev *bd, const void *buf, size_t len, off_t off);
int blockdev_flush(struct blockdev *bd);

/* Geometry. */
uint64_t blockdev_size(const struct blockdev *bd);
unsigned blockdev_align(const struct blockdev *bd);	/* offset, length and memory */
const char *blockdev_path(const struct blockdev *bd);	/* "<ram>" for RAM */

/*
 * Allocate/free memory aligned for this device (posix_memalign on a page
 * boundary).  Returns NULL on ENOMEM.
 */
void *blockdev_alloc_buf(const struct blockdev *bd, size_t len);
void blockdev_free_buf(void *p);

/*
 * Counters, read with relaxed atomics: a snapshot, not a transaction.
 * Latency buckets are powers of two in microseconds: bucket i counts
 * requests that took [2^i, 2^(i+1)) us, bucket 0 also counts < 1 us.
 */
#define BLOCKDEV_LAT_BUCKETS 24
struct blockdev_stats {
	uint64_t reads, writes, flushes;
	uint64_t read_bytes, write_bytes;
	uint64_t errors;		/* requests completed with r_error != 0 */
	uint64_t short_retries;		/* short transfers resubmitted */
	uint64_t ring_waits;		/* submitters that slept on a full ring */
	uint64_t inflight;		/* now, holding ring slots (waited
					 * reads on a private context are not
					 * counted) */
	uint64_t max_inflight;		/* high-water mark */
	uint64_t lat_hist[BLOCKDEV_LAT_BUCKETS];
	uint64_t lat_total_ns;
	bool buffered_fallback;		/* see o_allow_buffered */
	uint64_t syncs;			/* fdatasyncs issued; barriers that
					 * become ready together share one */
	uint64_t own_reads;		/* waited reads completed on the thread
					 * that waited (BLOCKDEV_REQ_WAITED) */
};
void blockdev_get_stats(struct blockdev *bd, struct blockdev_stats *st);

/*
 * ---- Test hooks ------------------------------------------------------
 * They apply to both backends.  They may be changed while I/O is running;
 * a change applies to requests submitted after it.
 */

/*
 * Write log: once started, every write (offset, length, copy of the data)
 * and every flush barrier is recorded in completion order for writes that
 * succeeded, with the barrier recorded when it completes.  A test rebuilds
 * the image as it was after entry N with blockdev_wlog_replay().
 */
enum blockdev_wlog_type { BLOCKDEV_WLOG_WRITE = 1, BLOCKDEV_WLOG_FLUSH = 2 };
struct blockdev_wlog_entry {
	enum blockdev_wlog_type e_type;
	off_t e_offset;
	size_t e_len;
	const void *e_data;		/* e_len bytes; NULL for a flush */
};
void blockdev_wlog_start(struct blockdev *bd);
void blockdev_wlog_stop(struct blockdev *bd);	/* stop recording, keep entries */
size_t blockdev_wlog_count(struct blockdev *bd);
/* Entry I (0-based); valid until blockdev_wlog_clear() or close. */
int blockdev_wlog_get(struct blockdev *bd, size_t i, struct blockdev_wlog_entry *e);
/*
 * Apply entries [0, N) to DST (another device of at least the same size,
 * e.g. a RAM copy of the image as it was when logging started).
 */
int blockdev_wlog_replay(struct blockdev *bd, size_t n, struct blockdev *dst);
void blockdev_wlog_clear(struct blockdev *bd);

/*
 * Fault injection: requests that match fail with EIO without touching the
 * image.  Matching is by operation mask and then one of:
 *   - by count:  the Nth matching request from now, and the next COUNT-1;
 *   - by range:  any request overlapping [off, off+len);
 *   - at random: each request with probability PPM / 1e6, from SEED.
 */
enum blockdev_fault_mode {
	BLOCKDEV_FAULT_OFF = 0,
	BLOCKDEV_FAULT_COUNT,
	BLOCKDEV_FAULT_RANGE,
	BLOCKDEV_FAULT_RANDOM,
};
#define BLOCKDEV_FAULT_READS  0x1
#define BLOCKDEV_FAULT_WRITES 0x2
#define BLOCKDEV_FAULT_FLUSH  0x4
struct blockdev_fault {
	enum blockdev_fault_mode f_mode;
	unsigned f_ops;			/* BLOCKDEV_FAULT_* mask */
	uint64_t f_nth, f_count;	/* COUNT: fail matches nth..nth+count-1 (1-based) */
	off_t f_offset; uint64_t f_len;	/* RANGE */
	uint32_t f_ppm; uint64_t f_seed;/* RANDOM */
};
void blockdev_set_fault(struct blockdev *bd, const struct blockdev_fault *f);
uint64_t blockdev_faults_injected(struct blockdev *bd);

/*
 * Power cut: the first N writes (counted from this call) reach the image;
 * every later write and every later barrier's fdatasync is silently dropped
 * but reported as successful, as if power failed after write N.  N = -1
 * turns the mode off.
 */
void blockdev_set_powercut(struct blockdev *bd, int64_t n_writes);
uint64_t blockdev_writes_dropped(struct blockdev *bd);

#endif /* FLYFS_BLOCKDEV_H */
