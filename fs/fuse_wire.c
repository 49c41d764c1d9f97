/*
 * fuse_wire.c - the one INIT flag libfuse 3.14 cannot ask for.
 *
 * FUSE_HANDLE_KILLPRIV_V2 (kernel 5.11) says that the filesystem clears
 * setuid/setgid and security.capability on write, truncate and chown.
 * With it the kernel marks the superblock SB_NOSEC, so once a file has
 * been seen without set-id bits or a capability, its writes skip the
 * kernel's own check.  Without it that check is a GETXATTR of
 * security.capability before every write(2): two daemon round trips per
 * 4 KiB write instead of one.
 *
 * libfuse learned the flag (FUSE_CAP_HANDLE_KILLPRIV_V2) after 3.14,
 * Debian 12's version, and its INIT handler drops flags it does not know.
 * So on such a libfuse the daemon reads and writes /dev/fuse through
 * fuse_session_custom_io() and adds the flag to the INIT reply itself,
 * when the kernel offered it.  Every other message passes untouched; once
 * INIT has been answered the hooks only test one atomic flag.  With a
 * libfuse that knows the capability, fl_init asks for it the normal way
 * and none of this is installed.
 *
 * What the flag promises is kept by the core (fs/flyfs.h): a write or
 * truncate by a caller other than root clears S_ISUID and S_ISGID (the
 * kernel's FUSE_WRITE_KILL_SUIDGID stands for "caller lacks CAP_FSETID",
 * which the core approximates by uid 0 as it always has), a chown clears
 * them whoever makes it, and any write, truncate or chown of a regular
 * file drops security.capability.  When a write drops set-id bits the
 * daemon also makes the kernel forget the inode's cached attributes
 * (fuse_ops.c: attr_changed).
 *
 * State: one session per process.  init_unique and init_offered are
 * written by the worker that reads INIT, before it replies; init_done is
 * set (release) before that reply goes out, and every later message sees
 * it (acquire) and leaves at once.
 */
#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fs/fuse_ops.h"

#ifndef FUSE_CAP_HANDLE_KILLPRIV_V2
static uint64_t	init_unique;	/* the INIT request's id */
static uint32_t	init_offered;	/* the kernel's INIT flags */
static int	init_done;	/* INIT answered: pass everything */

static ssize_t
wire_read(int fd, void *buf, size_t len, void *userdata)
{
	const struct fuse_in_header *h = buf;
	const struct fuse_init_in *in = (const void *)(h + 1);
	ssize_t n;

	(void)userdata;
	n = read(fd, buf, len);
	if (__atomic_load_n(&init_done, __ATOMIC_ACQUIRE) ||
	    n < (ssize_t)(sizeof(*h) + offsetof(struct fuse_init_in, flags2)) ||
	    h->opcode != FUSE_INIT)
		return n;
	__atomic_store_n(&init_offered, in->flags, __ATOMIC_RELAXED);
	__atomic_store_n(&init_unique, h->unique, __ATOMIC_RELAXED);
	return n;
}

static ssize_t
wire_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fuse_init_out out;
	const struct fuse_out_header *oh;

	(void)userdata;
	if (__atomic_load_n(&init_done, __ATOMIC_ACQUIRE) || count < 2)
		return writev(fd, iov, count);
	oh = iov[0].iov_base;
	if (oh->unique != __atomic_load_n(&init_unique, __ATOMIC_RELAXED) ||
	    oh->error != 0 || iov[1].iov_len > sizeof(out) ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, max_background))
		return writev(fd, iov, count);
	/* libfuse's reply lives on its stack: amend a copy. */
	memset(&out, 0, sizeof(out));
	memcpy(&out, iov[1].iov_base, iov[1].iov_len);
	if (__atomic_load_n(&init_offered, __ATOMIC_RELAXED) &
	    FUSE_HANDLE_KILLPRIV_V2)
		out.flags |= FUSE_HANDLE_KILLPRIV_V2;
	iov[1].iov_base = &out;
	__atomic_store_n(&init_done, 1, __ATOMIC_RELEASE);
	return writev(fd, iov, count);
}

static const struct fuse_custom_io wire_io = {
	.read	= wire_read,
	.writev	= wire_writev,
};

#endif /* !FUSE_CAP_HANDLE_KILLPRIV_V2 */

int
flyfs_fuse_wire(struct fuse_session *se)
{
#ifdef FUSE_CAP_HANDLE_KILLPRIV_V2
	(void)se;
	return 0;		/* fl_init asks for it */
#else
	int error = fuse_session_custom_io(se, &wire_io, fuse_session_fd(se));

	return error < 0 ? -error : error;
#endif
}
