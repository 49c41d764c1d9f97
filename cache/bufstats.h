/*
 * bufstats.h - the one registry of the buffer cache's counters and
 * tunables (the kernel's "sysctl vfs.*").
 *
 * This module owns the table.  Every entry has a name (the seed's sysctl
 * name where one exists, same meaning), a type, a range, whether it may be
 * written, a one-line description and a pointer to the variable.  The
 * xattr interface (flyfs.vfs.<name>), flyfs-stat, docs and the tests all
 * read this table; nothing else should list the variables.
 *
 * Reads are relaxed atomic loads: a snapshot, not a transaction.  Writes
 * are checked against the range and stored atomically; the cache picks up
 * a new value at its next use.
 */
#ifndef FLYFS_CACHE_BUFSTATS_H
#define FLYFS_CACHE_BUFSTATS_H

#include <stdbool.h>
#include <stddef.h>

enum bufstat_type {
	BUFSTAT_LONG,			/* long */
	BUFSTAT_INT,			/* int */
	BUFSTAT_UINT,			/* unsigned int */
};

#define BUFSTAT_RD	0x0000		/* read-only */
#define BUFSTAT_RW	0x0001		/* writable tunable */
#define BUFSTAT_COUNTER	0x0002		/* monotonic event counter */

struct bufstat {
	const char	*bs_name;
	enum bufstat_type bs_type;
	unsigned	bs_flags;	/* BUFSTAT_* */
	long		bs_min;		/* writes outside [min, max]: EINVAL */
	long		bs_max;
	void		*bs_ptr;
	const char	*bs_descr;
};

/* Iterate: index 0 .. bufstat_count() - 1. */
int	bufstat_count(void);
const struct bufstat *bufstat_at(int i);
const struct bufstat *bufstat_lookup(const char *name);
long	bufstat_read(const struct bufstat *bs);

/* 0, or ENOENT (no such name). */
int	bufstat_get(const char *name, long *valp);
/* 0, or ENOENT, EPERM (read-only), EINVAL (out of range). */
int	bufstat_set(const char *name, long val);
/*
 * Write "name value\n" for every entry into BUF (NUL-terminated, truncated
 * to LEN).  Returns the length the full text needs (like snprintf).
 */
size_t	bufstat_format(char *buf, size_t len);

/*
 * The variables.  Sizes and the seed's counters; tunables marked (rw).
 * All are updated atomically or under the locks named in vfs_bio.c.
 */
extern long nbuf;			/* buffer headers */
extern long bufspace;			/* bytes owned by buffers */
extern long maxbufspace, hibufspace, lobufspace;
extern long lorunningspace, hirunningspace;	/* (rw) */
extern long lodirtybufspace, hidirtybufspace;	/* (rw) */
extern long dirtykvaspace, dirtybufspace, dirtybufspacehw;
extern long dirtybufcount, dirtybufcounthw;
extern long runningbufspace, runningbufcount;
extern int getnewbufcalls;
extern int needsbuffer;
extern unsigned int flushperqueue;		/* (rw) */
extern int debug_bufbio;			/* (rw) */

/* Additions (not in the seed): events, all monotonic. */
struct bufcounters {
	long	getnewbufrestarts;	/* getnewbuf scan restarts */
	long	getnewbufsleeps;	/* getnewbuf slept on needsbuffer */
	long	bufrecycles;		/* CLEAN buffers recycled */
	long	bufreusemem;		/* recycles that kept their memory */
	long	cachehits;		/* getblk found the block B_CACHE */
	long	cachemisses;		/* getblk returned it without B_CACHE */
	long	readsissued;		/* BUF_CMD_READ through vn_strategy */
	long	writesissued;		/* BUF_CMD_WRITE through vn_strategy */
	long	bytesread;		/* bytes of completed device reads */
	long	byteswritten;		/* bytes of completed device writes */
	long	readerrors;		/* device reads completed with error */
	long	writeerrors;		/* device writes completed with error */
	long	readahead;		/* read-ahead reads issued */
	long	clusterwrites;		/* cluster writes issued (vfs_cluster) */
	long	clusterbufs;		/* buffers carried by them */
	long	clusterreads;		/* cluster reads issued (vfs_cluster) */
	long	flushes;		/* buffers flushed by the daemons */
	long	flushes_hw;		/* ... of which by buf_daemon_hw */
	long	bdwaits;		/* bd_wait sleeps ("flstik") */
	long	runningwaits;		/* waitrunningbufspace sleeps ("wdrn1") */
	long	biowaits;		/* biowait sleeps */
	long	bufmemahead;		/* 2 MiB extents populated ahead */
	long	bufmemsync;		/* ... mapped by the allocating thread */
};
extern struct bufcounters bufcounters;

/* Add N to a bufcounters field, atomically. */
#define BUFCOUNT(field, n)						\
	__atomic_fetch_add(&bufcounters.field, (n), __ATOMIC_RELAXED)

#endif /* FLYFS_CACHE_BUFSTATS_H */
