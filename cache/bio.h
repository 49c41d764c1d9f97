/*
 * bio.h - struct bio (one translation layer of an I/O) and struct
 * bio_track (a count of I/Os in progress, for drains).
 *
 * A struct buf embeds NBUF_BIO bios.  b_bio1 is the logical layer: its
 * bio_offset is the buffer's offset in its vnode (b_loffset).  A strategy
 * routine that forwards the I/O deeper pushes the next layer with
 * push_bio(), fills in that layer's bio_offset (for the filesystem: the
 * device offset found by bmap or allocation, in b_bio2) and passes it down.
 * Completion runs back up: biodone(bio) calls the first bio_done it meets
 * walking bio_prev, or finishes the buffer (bpdone) when there is none.
 * A layer's bio_offset stays cached after the I/O (the block translation),
 * until clearbiocache() or the buffer is reused.
 */
#ifndef FLYFS_CACHE_BIO_H
#define FLYFS_CACHE_BIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct bio;
struct buf;

typedef void biodone_t(struct bio *);

/*
 * Tracks the I/Os in progress on one vnode in one direction
 * (v_track_read, v_track_write).  bk_active counts them; its top bit says
 * somebody sleeps in bio_track_wait() for the count to reach zero.
 */
struct bio_track {
	int		bk_active;	/* (a) count | BIO_TRACK_WANTED */
};

#define BIO_TRACK_WANTED	0x80000000U

/* Caller-private scratch that travels with a bio layer. */
union bio_info {
	void		*ptr;
	off_t		offset;
	int		index;
	long		lval;
	struct buf	*cluster_head;	/* vfs_cluster */
	struct buf	*cluster_tail;
};

struct bio {
	struct bio	*bio_prev;	/* (b) layer above, NULL for bio1 */
	struct bio	*bio_next;	/* (b) layer below, once pushed */
	struct buf	*bio_buf;	/* (c) the buffer this layer is part of */
	biodone_t	*bio_done;	/* (b) completion for this layer */
	off_t		bio_offset;	/* (b) offset in this layer's space, or
					 * NOOFFSET: a cached translation */
	void		*bio_driver_info; /* (b) the lower layer's cookie */
	struct bio_track *bio_track;	/* (b) I/O tracking, released in biodone */
	union bio_info	bio_caller_info1; /* (b) scratch for bio_done */
	union bio_info	bio_caller_info2;
	union bio_info	bio_caller_info3;
	uint32_t	bio_flags;	/* (a) BIO_* */
};

#define BIO_SYNC	0x00000001	/* a thread waits in biowait() */
#define BIO_WANT	0x20000000	/* biowait() is asleep on the bio */
#define BIO_DONE	0x40000000	/* the I/O is complete (biodone_sync) */

/* Will the thread submitting BIO wait for it in biowait()? */
static inline bool
bio_is_sync(const struct bio *bio)
{
	return (__atomic_load_n(&bio->bio_flags, __ATOMIC_RELAXED) &
	    BIO_SYNC) != 0;
}

#define NOOFFSET	(-1LL)		/* no offset (translation) yet */

/* push_bio / pop_bio / initbufbio & co. are declared in buf.h. */
void	bio_track_ref(struct bio_track *track);
void	bio_track_rel(struct bio_track *track);
int	bio_track_wait(struct bio_track *track, int slp_flags, int slp_timo);
int	bio_track_active(const struct bio_track *track);

#endif /* FLYFS_CACHE_BIO_H */
