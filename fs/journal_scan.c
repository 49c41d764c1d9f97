/*
 * journal_scan.c - the one reader of the journal log.
 *
 * This module owns the interpretation of the log on the device
 * (docs/format.md section 11): which transactions are committed, which
 * logged copies are replayed (the newest per home block, unless a revoke
 * of the same or a later transaction forbids it), and the escape rule of
 * logged blocks.  journal.c replays through it at mount, fsck.flyfs
 * replays through it (-p/-y) or overlays its result in memory (-n), so
 * the two can never disagree about what the next mount will see.
 *
 * It reads the device with blockdev_pread only: no buffer cache, no
 * locks, no mount state.  Everything it needs is in struct fs_jscan_geom.
 *
 * A transaction at relative block P with sequence S is committed iff,
 * following its control blocks from P (each a valid FJDS / FJRV / FJCM
 * metadata block at its own block number with mb_txid == S; a descriptor
 * is followed by jd_count logged copies), an FJCM block is reached within
 * the log's length.  The first transaction that is not committed ends the
 * log.  A committed one must also be intact: jc_blocks equals the blocks
 * walked, every copy matches its tag's crc, every home lies in the
 * filesystem and outside the journal.  A committed transaction that is
 * not intact is damage (EUCLEAN), never silently the end of the log: the
 * transactions after it may have been checkpointed already, so stopping
 * there would hide a half-applied state.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fs/format.h"
#include "fs/journal_scan.h"
#include "fs/ondisk.h"

#define BS	FLYFS_BLOCK_SIZE

/* The low half of every journal control magic: "FJ". */
#define JMAGIC_LOW	0x4a46u

struct jrev {
	uint64_t	blk;
	uint64_t	seq;		/* highest revoking transaction */
};

struct scan {
	struct blockdev	*bd;
	const struct fs_jscan_geom *g;
	uint64_t	logsize;	/* blocks - first */
	void		*cb;		/* one control block */
	void		*data;		/* one logged copy */
	struct fs_jscan_ref *refs;
	size_t		nrefs, caprefs;
	struct jrev	*rev;
	size_t		nrev, caprev;
};

/* ---- Escape rule ------------------------------------------------------ */

static bool
is_control_magic(uint32_t m)
{
	return m == FLYFS_MB_JSUPER || m == FLYFS_MB_JDESC ||
	    m == FLYFS_MB_JCOMMIT || m == FLYFS_MB_JREVOKE;
}

uint32_t
fs_jscan_escape(void *block)
{
	uint32_t m = le32_load(block);

	if (!is_control_magic(m))
		return 0;
	memset(block, 0, 4);
	return FLYFS_JTAG_ESCAPED | (m & 0xffff0000u);
}

void
fs_jscan_unescape(void *block, uint32_t flags)
{
	if (flags & FLYFS_JTAG_ESCAPED)
		le32_set((le32_t *)block, (flags & 0xffff0000u) | JMAGIC_LOW);
}

/* ---- Scanning ----------------------------------------------------------- */

static uint64_t
rel_next(const struct scan *sc, uint64_t rel, uint64_t k)
{
	uint64_t first = sc->g->first;

	return first + (rel - first + k) % sc->logsize;
}

static int
rread(struct scan *sc, uint64_t rel, void *buf)
{
	return blockdev_pread(sc->bd, buf, BS,
	    (off_t)((sc->g->start + rel) * BS));
}

/*
 * The control block of transaction SEQ at REL, into sc->cb: its magic, 0
 * if there is none (end of the log), or -1 with *ERROR on a read error.
 */
static uint32_t
control(struct scan *sc, uint64_t rel, uint64_t seq, int *error)
{
	const struct flyfs_mblock_hdr *h = sc->cb;
	uint32_t magic;

	if ((*error = rread(sc, rel, sc->cb)) != 0)
		return 0;
	magic = le32_get(h->mb_magic);
	if (magic != FLYFS_MB_JDESC && magic != FLYFS_MB_JCOMMIT &&
	    magic != FLYFS_MB_JREVOKE)
		return 0;
	if (flyfs_mblock_check(sc->cb, magic, sc->g->start + rel, sc->g->seed,
	    NULL, 0) != 0 || le64_get(h->mb_txid) != seq)
		return 0;
	return magic;
}

static bool
grow(void **v, size_t *cap, size_t need, size_t size)
{
	void *p;
	size_t c;

	if (need <= *cap)
		return true;
	c = *cap ? *cap * 2 : 256;
	while (c < need)
		c *= 2;
	if ((p = realloc(*v, c * size)) == NULL)
		return false;
	*v = p;
	*cap = c;
	return true;
}

/*
 * Pass A over transaction SEQ at REL: follow the control blocks to the
 * commit block.  0 with *LEN (blocks, commit included), ENOENT if the
 * transaction is not committed, EUCLEAN if its commit block's count
 * disagrees, EIO.
 */
static int
txn_length(struct scan *sc, uint64_t rel, uint64_t seq, uint64_t *len,
    char *err, size_t errlen)
{
	uint64_t pos = rel, n = 0;
	uint32_t magic;
	int error;

	for (;;) {
		if (n >= sc->logsize)
			return ENOENT;
		magic = control(sc, pos, seq, &error);
		if (error)
			return error;
		if (magic == 0)
			return ENOENT;
		n++;
		pos = rel_next(sc, pos, 1);
		if (magic == FLYFS_MB_JCOMMIT)
			break;
		if (magic == FLYFS_MB_JDESC) {
			const struct flyfs_journal_desc *d = sc->cb;
			uint32_t cnt = le32_get(d->jd_count);

			if (cnt > FLYFS_JTAGS_PER_DESC)
				return ENOENT;
			n += cnt;
			pos = rel_next(sc, pos, cnt);
		}
	}
	{
		const struct flyfs_journal_commit *c = sc->cb;

		if (le32_get(c->jc_blocks) != n)
			return flyfs_error(err, errlen, EUCLEAN, "journal "
			    "transaction %" PRIu64 " has a commit block "
			    "claiming %" PRIu32 " blocks but %" PRIu64 " were "
			    "found", seq, le32_get(c->jc_blocks), n);
	}
	*len = n;
	return 0;
}

/* Pass B: verify and collect the copies and revokes of a committed txn. */
static int
txn_collect(struct scan *sc, uint64_t rel, uint64_t seq, uint64_t len,
    char *err, size_t errlen)
{
	const struct fs_jscan_geom *g = sc->g;
	uint64_t pos = rel;
	uint32_t magic;
	int error;

	for (uint64_t k = 0; k < len;) {
		magic = control(sc, pos, seq, &error);
		if (error)
			return error;
		if (magic == 0)
			return flyfs_error(err, errlen, EUCLEAN, "journal "
			    "transaction %" PRIu64 ": control block at "
			    "journal block %" PRIu64 " changed while reading",
			    seq, g->start + pos);
		k++;
		pos = rel_next(sc, pos, 1);
		if (magic == FLYFS_MB_JDESC) {
			const struct flyfs_journal_desc *d = sc->cb;
			uint32_t cnt = le32_get(d->jd_count);

			for (uint32_t t = 0; t < cnt; t++, k++) {
				const struct flyfs_journal_tag *tag =
				    &d->jd_tag[t];
				uint64_t home = le64_get(tag->jt_blocknr);
				uint32_t crc = le32_get(tag->jt_crc);

				if (home == 0 || home >= g->fs_blocks ||
				    (home >= g->start &&
				    home < g->start + g->blocks))
					return flyfs_error(err, errlen,
					    EUCLEAN, "journal transaction %"
					    PRIu64 " logs impossible block %"
					    PRIu64, seq, home);
				if ((error = rread(sc, pos, sc->data)) != 0)
					return error;
				if (flyfs_crc32c(g->seed, sc->data, BS) != crc)
					return flyfs_error(err, errlen,
					    EUCLEAN, "journal transaction %"
					    PRIu64 " is committed but its copy "
					    "of block %" PRIu64 " (journal "
					    "block %" PRIu64 ") fails its "
					    "checksum", seq, home,
					    g->start + pos);
				if (!grow((void **)&sc->refs, &sc->caprefs,
				    sc->nrefs + 1, sizeof(*sc->refs)))
					return ENOMEM;
				sc->refs[sc->nrefs++] = (struct fs_jscan_ref){
				    .home = home, .jabs = g->start + pos,
				    .seq = seq,
				    .flags = le32_get(tag->jt_flags),
				    .crc = crc };
				pos = rel_next(sc, pos, 1);
			}
		} else if (magic == FLYFS_MB_JREVOKE) {
			const struct flyfs_journal_revoke *rv = sc->cb;
			uint32_t cnt = le32_get(rv->jr_count);

			if (cnt > FLYFS_JREVOKES_PER_BLOCK)
				return flyfs_error(err, errlen, EUCLEAN,
				    "journal transaction %" PRIu64 " has a "
				    "revoke block with %" PRIu32 " entries",
				    seq, cnt);
			if (!grow((void **)&sc->rev, &sc->caprev,
			    sc->nrev + cnt, sizeof(*sc->rev)))
				return ENOMEM;
			for (uint32_t t = 0; t < cnt; t++)
				sc->rev[sc->nrev++] = (struct jrev){
				    le64_get(rv->jr_blocknr[t]), seq };
		}
	}
	return 0;
}

static int
cmp_rev(const void *a, const void *b)
{
	const struct jrev *x = a, *y = b;

	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
cmp_ref(const void *a, const void *b)
{
	const struct fs_jscan_ref *x = a, *y = b;

	if (x->home != y->home)
		return x->home < y->home ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
cmp_rev_blk(const void *a, const void *b)
{
	const struct jrev *x = a, *y = b;

	return x->blk < y->blk ? -1 : x->blk > y->blk;
}

/* Highest revoking sequence of BLK (revokes sorted, one per block), 0. */
static uint64_t
revoked_seq(const struct scan *sc, uint64_t blk)
{
	struct jrev key = { .blk = blk }, *e;

	if (sc->nrev == 0)
		return 0;
	e = bsearch(&key, sc->rev, sc->nrev, sizeof(*e), cmp_rev_blk);
	return e ? e->seq : 0;
}

/*
 * Keep, per home block, the newest copy, and drop it if a transaction
 * at or after it revoked the block.  This is what replaying every
 * transaction in order, skipping revoked copies, would leave.
 */
static void
plan(struct scan *sc)
{
	size_t n = 0;

	if (sc->nrev > 0) {
		qsort(sc->rev, sc->nrev, sizeof(*sc->rev), cmp_rev);
		for (size_t i = 0; i < sc->nrev; i++) {
			if (n > 0 && sc->rev[n - 1].blk == sc->rev[i].blk)
				sc->rev[n - 1].seq = sc->rev[i].seq;
			else
				sc->rev[n++] = sc->rev[i];
		}
		sc->nrev = n;
	}
	if (sc->nrefs > 0)
		qsort(sc->refs, sc->nrefs, sizeof(*sc->refs), cmp_ref);
	n = 0;
	for (size_t i = 0; i < sc->nrefs; i++) {
		if (i + 1 < sc->nrefs && sc->refs[i + 1].home ==
		    sc->refs[i].home)
			continue;		/* a newer copy follows */
		if (revoked_seq(sc, sc->refs[i].home) >= sc->refs[i].seq)
			continue;
		sc->refs[n++] = sc->refs[i];
	}
	sc->nrefs = n;
}

int
fs_jscan_run(struct blockdev *bd, const struct fs_jscan_geom *g,
    uint64_t tail, uint64_t seq, struct fs_jscan *s, char *err,
    size_t errlen)
{
	struct scan sc = { .bd = bd, .g = g };
	uint64_t pos = tail, len = 0;
	int error = 0;

	s->txns = 0;
	s->next_seq = seq;
	s->end = tail;
	s->logged = 0;
	s->refs = NULL;
	s->nrefs = 0;
	if (tail == 0)
		return 0;
	if (g->first < 1 || g->first >= g->blocks || tail < g->first ||
	    tail >= g->blocks)
		return flyfs_error(err, errlen, EUCLEAN, "the journal "
		    "superblock's log start %" PRIu64 " is outside the log",
		    tail);
	sc.logsize = g->blocks - g->first;
	sc.cb = blockdev_alloc_buf(bd, 2 * BS);
	if (sc.cb == NULL)
		return flyfs_error(err, errlen, ENOMEM, "out of memory");
	sc.data = (char *)sc.cb + BS;
	for (uint64_t scanned = 0; scanned < sc.logsize; scanned += len) {
		size_t nrefs0 = sc.nrefs, nrev0 = sc.nrev;

		error = txn_length(&sc, pos, seq, &len, err, errlen);
		if (error == 0 && scanned + len > sc.logsize)
			error = ENOENT;		/* would overlap itself */
		if (error == 0)
			error = txn_collect(&sc, pos, seq, len, err, errlen);
		if (error) {
			/* S describes the intact transactions only. */
			sc.nrefs = nrefs0;
			sc.nrev = nrev0;
			if (error == ENOENT)
				error = 0;
			else if (error == ENOMEM)
				flyfs_error(err, errlen, ENOMEM,
				    "out of memory");
			else if (error != EUCLEAN)
				flyfs_error(err, errlen, error, "cannot read "
				    "the journal: %s", strerror(error));
			break;
		}
		s->logged += sc.nrefs - nrefs0;
		s->txns++;
		pos = rel_next(&sc, pos, len);
		seq++;
	}
	s->next_seq = seq;
	s->end = pos;
	plan(&sc);
	s->refs = sc.refs;
	s->nrefs = sc.nrefs;
	free(sc.rev);
	blockdev_free_buf(sc.cb);
	return error;
}

int
fs_jscan_read(struct blockdev *bd, uint32_t seed,
    const struct fs_jscan_ref *r, void *buf)
{
	int error;

	if ((error = blockdev_pread(bd, buf, BS, (off_t)(r->jabs * BS))) != 0)
		return error;
	if (flyfs_crc32c(seed, buf, BS) != r->crc)
		return EUCLEAN;
	fs_jscan_unescape(buf, r->flags);
	return 0;
}

int
fs_jscan_replay(struct blockdev *bd, uint32_t seed, const struct fs_jscan *s,
    void *buf, int (*fn)(void *arg, uint64_t home, const void *block),
    void *arg)
{
	int error;

	for (size_t i = 0; i < s->nrefs; i++) {
		if ((error = fs_jscan_read(bd, seed, &s->refs[i], buf)) != 0)
			return error;
		if ((error = fn(arg, s->refs[i].home, buf)) != 0)
			return error;
	}
	return 0;
}

void
fs_jscan_free(struct fs_jscan *s)
{
	free(s->refs);
	s->refs = NULL;
	s->nrefs = 0;
}
