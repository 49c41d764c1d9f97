/*
 * blockdev_ram.c - the RAM backend: a page-aligned memory area behind the
 * blockdev interface, for the unit tests of the layers above.
 *
 * This file owns the memory area, the timer queue and the completion
 * thread.  A request is stamped with a due time (submission + delay_ns)
 * and queued; the completion thread sleeps until the head is due, then
 * moves the data and completes it.  Because every request gets the same
 * delay, submission order is due order and the queue is a plain FIFO, and
 * all queued requests wait out their delays at the same time: the device
 * behaves like one with qdepth requests overlapping, each taking delay_ns.
 *
 * Data moves on the completion thread, at completion time, so concurrent
 * requests touch the area one at a time (no data race for TSan to find)
 * and a read sees the writes that completed before it, as on a disk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/blockdev_impl.h"

#define RAM_DEFAULT_QDEPTH	128
#define RAM_MAX_QDEPTH		65536

/* (c) constant after open, (r) rd_lock. */
struct ram_dev {
	unsigned char *rd_mem;		/* (c) pointer; bytes: completion
					 * thread only */
	uint64_t rd_delay_ns;		/* (c) */
	pthread_t rd_thread;		/* (c) */
	pthread_mutex_t rd_lock;
	pthread_cond_t rd_cv;		/* "ramwork": completion thread idle */
	struct bd_list rd_q;		/* (r) requests, in due order */
	bool rd_kicked;			/* (r) soft queue needs a run */
	bool rd_stop;			/* (r) exit when the queue is empty */
};

struct ram_rpriv {
	uint64_t rp_due;		/* (r) due, CLOCK_MONOTONIC ns */
};
_Static_assert(sizeof(struct ram_rpriv) <= BD_RBACK_SIZE, "r_priv too small");

static uint64_t
due_of(struct blockdev_req *req)
{
	return (((struct ram_rpriv *)bd_rback(req))->rp_due);
}

static void
ram_enqueue(struct blockdev *bd, struct blockdev_req *req)
{
	struct ram_dev *rd = bd->bd_back;
	struct ram_rpriv *rp = bd_rback(req);
	bool idle;

	pthread_mutex_lock(&rd->rd_lock);
	/* Stamped under rd_lock so that the FIFO stays in due order. */
	rp->rp_due = bd_now_ns() + rd->rd_delay_ns;
	idle = rd->rd_q.l_head == NULL;
	bd_list_append(&rd->rd_q, req);
	/* A non-empty queue's head is due first: the sleeper's timer holds. */
	if (idle)
		pthread_cond_signal(&rd->rd_cv);
	pthread_mutex_unlock(&rd->rd_lock);
}

static void
ram_transfer(struct blockdev *bd, struct blockdev_req *req)
{
	struct ram_dev *rd = bd->bd_back;
	unsigned char *p = rd->rd_mem + req->r_offset;
	int i;

	if (req->r_op == BLOCKDEV_FLUSH) {
		bd_sync_done(bd, req, 0);
		return;
	}
	for (i = 0; i < req->r_iovcnt; i++) {
		const struct iovec *v = &req->r_iov[i];

		if (req->r_op == BLOCKDEV_READ)
			memcpy(v->iov_base, p, v->iov_len);
		else
			memcpy(p, v->iov_base, v->iov_len);
		p += v->iov_len;
	}
	req->r_error = 0;
	req->r_bytes = req->r_len;
	req->r_done_bytes = req->r_len;
	bd_complete(bd, req);
}

static void
ns_to_timespec(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ns / 1000000000u);
	ts->tv_nsec = (long)(ns % 1000000000u);
}

/*
 * The completion thread.  Sleeps on "ramwork" until the head request is
 * due or the soft queue is kicked; completes a whole batch of due requests
 * per wakeup, then runs the soft queue for anything the callbacks queued.
 */
static void *
ram_thread(void *arg)
{
	struct blockdev *bd = arg;
	struct ram_dev *rd = bd->bd_back;
	struct blockdev_req *req, *batch, **tailp;
	struct timespec ts;
	uint64_t now;

	bd_completion_thread_enter(bd);
	pthread_mutex_lock(&rd->rd_lock);
	for (;;) {
		if (rd->rd_kicked) {
			rd->rd_kicked = false;
			pthread_mutex_unlock(&rd->rd_lock);
			bd_run_softq(bd);
			pthread_mutex_lock(&rd->rd_lock);
			continue;
		}
		if ((req = rd->rd_q.l_head) == NULL) {
			if (rd->rd_stop)
				break;
			pthread_cond_wait(&rd->rd_cv, &rd->rd_lock);
			continue;
		}
		now = bd_now_ns();
		if (due_of(req) > now) {
			ns_to_timespec(due_of(req), &ts);
			pthread_cond_timedwait(&rd->rd_cv, &rd->rd_lock, &ts);
			continue;
		}
		batch = NULL;
		tailp = &batch;
		while ((req = rd->rd_q.l_head) != NULL && due_of(req) <= now) {
			*tailp = bd_list_pop(&rd->rd_q);
			tailp = &(*tailp)->r_next;
		}
		pthread_mutex_unlock(&rd->rd_lock);
		while ((req = batch) != NULL) {
			batch = req->r_next;
			ram_transfer(bd, req);
		}
		bd_run_softq(bd);
		pthread_mutex_lock(&rd->rd_lock);
	}
	pthread_mutex_unlock(&rd->rd_lock);
	return (NULL);
}

static void
ram_submit(struct blockdev *bd, struct blockdev_req *req)
{
	ram_enqueue(bd, req);
}

static void
ram_sync(struct blockdev *bd, struct blockdev_req *head)
{
	/* Memory is as durable as it gets; a sync costs one delay. */
	ram_enqueue(bd, head);
}

static void
ram_kick(struct blockdev *bd)
{
	struct ram_dev *rd = bd->bd_back;

	pthread_mutex_lock(&rd->rd_lock);
	rd->rd_kicked = true;
	pthread_cond_signal(&rd->rd_cv);
	pthread_mutex_unlock(&rd->rd_lock);
}

static void
ram_destroy(struct blockdev *bd)
{
	struct ram_dev *rd = bd->bd_back;

	pthread_mutex_lock(&rd->rd_lock);
	rd->rd_stop = true;
	pthread_cond_signal(&rd->rd_cv);
	pthread_mutex_unlock(&rd->rd_lock);
	pthread_join(rd->rd_thread, NULL);
	pthread_cond_destroy(&rd->rd_cv);
	pthread_mutex_destroy(&rd->rd_lock);
	free(rd->rd_mem);
	free(rd);
}

static const struct bd_backend_ops ram_ops = {
	.bo_submit = ram_submit,
	.bo_sync = ram_sync,
	.bo_kick = ram_kick,
	.bo_destroy = ram_destroy,
};

int
blockdev_open_ram(uint64_t size, unsigned align, unsigned qdepth,
    uint64_t delay_ns, struct blockdev **bdp)
{
	struct blockdev *bd;
	struct ram_dev *rd;
	pthread_condattr_t ca;
	int error;

	*bdp = NULL;
	if (qdepth == 0)
		qdepth = RAM_DEFAULT_QDEPTH;
	if (align < 512 || (align & (align - 1)) != 0 || size == 0 ||
	    size % align != 0 || qdepth > RAM_MAX_QDEPTH)
		return (EINVAL);
	if ((rd = calloc(1, sizeof(*rd))) == NULL)
		return (ENOMEM);
	if (posix_memalign((void **)&rd->rd_mem, align < 4096 ? 4096 : align,
	    size) != 0) {
		free(rd);
		return (ENOMEM);
	}
	memset(rd->rd_mem, 0, size);
	rd->rd_delay_ns = delay_ns;
	pthread_mutex_init(&rd->rd_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rd->rd_cv, &ca);
	pthread_condattr_destroy(&ca);

	if ((bd = bd_alloc("<ram>", size, align, qdepth, false)) == NULL) {
		error = ENOMEM;
		goto out;
	}
	bd->bd_ops = &ram_ops;
	bd->bd_back = rd;
	if ((error = bd_thread_create(&rd->rd_thread, ram_thread, bd,
	    "bd-ram")) != 0) {
		bd_free(bd);
		goto out;
	}
	*bdp = bd;
	return (0);
out:
	pthread_cond_destroy(&rd->rd_cv);
	pthread_mutex_destroy(&rd->rd_lock);
	free(rd->rd_mem);
	free(rd);
	return (error);
}
