/*
 * bufstats.c - the buffer cache's counters and tunables, each declared
 * beside its registry entry (the kernel's SYSCTL_* lines).
 *
 * This module owns the variables' storage and the table.  The cache code
 * (vfs_bio.c, buf_daemon.c) updates them; bufinit() sets the watermarks.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cache/bufstats.h"
#include "cache/vfs_cluster.h"

/* Sizes (set by bufinit, read-only afterwards). */
long nbuf;
long maxbufspace;
long hibufspace;
long lobufspace;

/* Tunables. */
long lorunningspace;
long hirunningspace;
long lodirtybufspace;
long hidirtybufspace;
unsigned int flushperqueue = 1024;
int debug_bufbio;

/* State, updated atomically. */
long bufspace;
long dirtykvaspace;
long dirtybufspace;
long dirtybufspacehw;
long dirtybufcount;
long dirtybufcounthw;
long runningbufspace;
long runningbufcount;
int getnewbufcalls;
int needsbuffer;

struct bufcounters bufcounters;

#define RD	BUFSTAT_RD
#define RW	BUFSTAT_RW
#define CNT	(BUFSTAT_RD | BUFSTAT_COUNTER)
#define L(name, fl, lo, hi, descr) \
	{ #name, BUFSTAT_LONG, (fl), (lo), (hi), &name, (descr) }
#define C(name, descr) \
	{ #name, BUFSTAT_LONG, CNT, 0, LONG_MAX, &bufcounters.name, (descr) }

static const struct bufstat bufstat_table[] = {
	/* The seed's sysctls: operational control. */
	{ "flushperqueue", BUFSTAT_UINT, RW, 1, 1 << 20, &flushperqueue,
	  "Buffers a daemon flushes from one shard's queue before moving on" },
	L(lodirtybufspace, RW, 0, LONG_MAX,
	  "Dirty+running bytes at which the flush daemons go back to sleep"),
	L(hidirtybufspace, RW, 0, LONG_MAX,
	  "Dirty+running bytes above which writers block in bd_wait"),
	L(lorunningspace, RW, 0, LONG_MAX,
	  "Low mark of write bytes in flight (kept for compatibility)"),
	L(hirunningspace, RW, 0, LONG_MAX,
	  "Bound on write bytes in flight; waitrunningbufspace blocks at 4/6"),
	/* The seed's sysctls: state. */
	L(nbuf, RD, 0, 0, "Buffer headers preallocated"),
	L(dirtykvaspace, RD, 0, 0, "Bytes of dirty buffers counted for throttling (= dirtybufspace here)"),
	L(dirtybufspace, RD, 0, 0, "Bytes held by dirty (B_DELWRI) buffers"),
	L(dirtybufspacehw, RD, 0, 0,
	  "Bytes held by dirty B_HEAVY buffers"),
	L(dirtybufcount, RD, 0, 0, "Dirty (B_DELWRI) buffers"),
	L(dirtybufcounthw, RD, 0, 0,
	  "Dirty B_HEAVY buffers"),
	L(runningbufspace, RD, 0, 0,
	  "Bytes of buffer writes in flight"),
	L(runningbufcount, RD, 0, 0,
	  "Buffer writes in flight"),
	L(maxbufspace, RD, 0, 0,
	  "Absolute cap on buffer memory; only system threads go past hibufspace"),
	L(hibufspace, RD, 0, 0,
	  "Cap on buffer memory for ordinary threads"),
	L(lobufspace, RD, 0, 0,
	  "getnewbuf stops freeing buffers once bufspace falls below this"),
	L(bufspace, RD, 0, 0, "Bytes of memory owned by buffers now"),
	{ "getnewbufcalls", BUFSTAT_INT, CNT, 0, INT_MAX, &getnewbufcalls,
	  "Calls to getnewbuf" },
	{ "debug_bufbio", BUFSTAT_INT, RW, 0, 1, &debug_bufbio,
	  "Panic if getnewbuf loops excessively" },
	/* vfs_cluster.c's sysctls (variables live there). */
	{ "write_behind", BUFSTAT_INT, RW, 0, 2, &write_behind,
	  "Write-behind: 0 off, 1 push finished sequential clusters, 2 the run before" },
	L(write_behind_minfilesize, RW, 0, LONG_MAX,
	  "Files smaller than this get no write-behind"),
	{ "max_readahead", BUFSTAT_INT, RW, 0, 64 * 1024 * 1024, &max_readahead,
	  "Bytes of read-ahead issued per trigger at most" },
	/* Additions. */
	{ "needsbuffer", BUFSTAT_INT, RD, 0, 0, &needsbuffer,
	  "Flags of threads waiting in getnewbuf (1 any, 8 bufspace)" },
	C(getnewbufrestarts, "getnewbuf scan restarts"),
	C(getnewbufsleeps, "getnewbuf sleeps waiting for a buffer or space"),
	C(bufrecycles, "Clean buffers recycled for another block"),
	C(bufreusemem, "Recycled buffers that kept their memory"),
	C(cachehits, "getblk found the block valid in the cache"),
	C(cachemisses, "getblk returned the block without valid data"),
	C(readsissued, "Buffer reads issued to the filesystem strategy"),
	C(writesissued, "Buffer writes issued to the filesystem strategy"),
	C(bytesread, "Bytes of completed device reads"),
	C(byteswritten, "Bytes of completed device writes"),
	C(readerrors, "Device reads completed with an error"),
	C(writeerrors, "Device writes completed with an error"),
	C(readahead, "Read-ahead reads issued"),
	C(clusterwrites, "Clustered writes issued"),
	C(clusterbufs, "Buffers written as part of clustered writes"),
	C(clusterreads, "Clustered reads issued"),
	C(flushes, "Buffers flushed by buf_daemon and buf_daemon_hw"),
	C(flushes_hw, "Buffers flushed by buf_daemon_hw"),
	C(bdwaits, "Sleeps in bd_wait waiting for dirty data to drain"),
	C(runningwaits, "Sleeps in waitrunningbufspace"),
	C(biowaits, "Sleeps in biowait"),
	C(bufmemahead, "Buffer memory extents (2 MiB) populated ahead of use by the bufmem thread"),
	C(bufmemsync, "Buffer memory extents (2 MiB) mapped by the thread that needed them"),
};

#define NSTATS	((int)(sizeof(bufstat_table) / sizeof(bufstat_table[0])))

int
bufstat_count(void)
{
	return NSTATS;
}

const struct bufstat *
bufstat_at(int i)
{
	if (i < 0 || i >= NSTATS)
		return NULL;
	return &bufstat_table[i];
}

const struct bufstat *
bufstat_lookup(const char *name)
{
	int i;

	for (i = 0; i < NSTATS; i++)
		if (strcmp(bufstat_table[i].bs_name, name) == 0)
			return &bufstat_table[i];
	return NULL;
}

long
bufstat_read(const struct bufstat *bs)
{
	switch (bs->bs_type) {
	case BUFSTAT_LONG:
		return __atomic_load_n((long *)bs->bs_ptr, __ATOMIC_RELAXED);
	case BUFSTAT_INT:
		return __atomic_load_n((int *)bs->bs_ptr, __ATOMIC_RELAXED);
	case BUFSTAT_UINT:
		return __atomic_load_n((unsigned int *)bs->bs_ptr,
		    __ATOMIC_RELAXED);
	}
	return 0;
}

int
bufstat_get(const char *name, long *valp)
{
	const struct bufstat *bs = bufstat_lookup(name);

	if (bs == NULL)
		return ENOENT;
	*valp = bufstat_read(bs);
	return 0;
}

int
bufstat_set(const char *name, long val)
{
	const struct bufstat *bs = bufstat_lookup(name);

	if (bs == NULL)
		return ENOENT;
	if ((bs->bs_flags & BUFSTAT_RW) == 0)
		return EPERM;
	if (val < bs->bs_min || val > bs->bs_max)
		return EINVAL;
	switch (bs->bs_type) {
	case BUFSTAT_LONG:
		__atomic_store_n((long *)bs->bs_ptr, val, __ATOMIC_RELAXED);
		break;
	case BUFSTAT_INT:
		__atomic_store_n((int *)bs->bs_ptr, (int)val, __ATOMIC_RELAXED);
		break;
	case BUFSTAT_UINT:
		__atomic_store_n((unsigned int *)bs->bs_ptr, (unsigned int)val,
		    __ATOMIC_RELAXED);
		break;
	}
	return 0;
}

size_t
bufstat_format(char *buf, size_t len)
{
	size_t off = 0;
	int i, n;

	if (len > 0)
		buf[0] = '\0';
	for (i = 0; i < NSTATS; i++) {
		n = snprintf(off < len ? buf + off : NULL,
		    off < len ? len - off : 0, "%s %ld\n",
		    bufstat_table[i].bs_name, bufstat_read(&bufstat_table[i]));
		if (n > 0)
			off += (size_t)n;
	}
	return off;
}
