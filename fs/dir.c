/*
 * dir.c - directory B+trees.
 *
 * This module owns the tree of FDIR blocks under a directory inode's root
 * area (struct flyfs_dir_root): lookup by name, insertion with the lowest
 * free collision minor, removal with merging of underfull nodes, ordered
 * iteration from a cookie, and freeing the whole tree.  It knows nothing
 * of link counts, permissions or timestamps (namei.c).
 *
 * The tree (fs/ondisk.h, docs/format.md section 7):
 *   - leaves hold variable-size records packed in key order (dn_used
 *     bytes), chained left to right by dn_next;
 *   - interior nodes hold up to DIR_IDX_MAX (253) index records (key,
 *     child); child i holds keys >= di_key[i] and < di_key[i + 1].  A
 *     separator is a lower bound, not necessarily a key present: removal
 *     never rewrites separators, insertion lowers di_key[0] along the path
 *     when it adds a new smallest key to a subtree;
 *   - dr_levels is the height (1: the root is a leaf), 0 with dr_root 0
 *     (a directory that never had an entry owns no block).  An emptied
 *     directory keeps its root leaf, as lost+found from mkfs has one.
 *
 * Invariants kept by insert and remove: every node but the root holds at
 * least one record; an interior root holds at least two (a root with one
 * child is collapsed).  Nodes below a quarter full are merged with a
 * sibling under the same parent when the two fit in one node; an empty
 * leaf is always freed.  Leaf splits cut at half of the bytes, so a leaf
 * holds at least ~2 KiB after a split.
 *
 * Names hash to 31 bits, so a hash group (names sharing a hash) is nearly
 * always one record; it may still span leaves, which is why a name search
 * walks the leaf chain from the group's first key.
 *
 * Concurrency: the caller holds dp->i_lock (dir.h); with it exclusive, no
 * other thread reads or changes this tree, so the path found by a descent
 * stays valid while the buffers are released and re-read.  Buffers of one
 * tree are locked parent before child, at most three at a time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/dir.h"
#include "fs/fs_int.h"

/* ---- Node layout ------------------------------------------------------ */

#define DIR_HDR_OFF	sizeof(struct flyfs_mblock_hdr)			/* 32 */
#define DIR_REC_OFF	(DIR_HDR_OFF + sizeof(struct flyfs_dir_node))	/* 48 */
#define DIR_LEAF_SPACE	((unsigned)FLYFS_DIR_LEAF_SPACE)		/* 4048 */
#define DIR_IDX_MAX	((unsigned)(FLYFS_DIR_LEAF_SPACE / \
			    sizeof(struct flyfs_dir_idx)))		/* 253 */
/*
 * A tree never grows past this height: with 253-way nodes at least a
 * quarter full and leaves of at least one 280-byte record, 10 levels hold
 * far more entries than the inode file can name.
 */
#define DIR_MAX_LEVELS	10
#define DIR_LEAF_LOW	(DIR_LEAF_SPACE / 4)	/* merge a leaf below this */
#define DIR_IDX_LOW	(DIR_IDX_MAX / 4)	/* merge an index node below */
#define DIR_KEY_MIN	((uint64_t)1 << 32)	/* smallest stored key */

static inline struct flyfs_dir_node *
node_hdr(struct buf *bp)
{
	return (struct flyfs_dir_node *)(bp->b_data + DIR_HDR_OFF);
}

static inline uint8_t *
leaf_recs(struct buf *bp)
{
	return (uint8_t *)bp->b_data + DIR_REC_OFF;
}

static inline struct flyfs_dir_idx *
node_idx(struct buf *bp)
{
	return (struct flyfs_dir_idx *)(bp->b_data + DIR_REC_OFF);
}

static inline struct flyfs_dirent *
rec_at(uint8_t *recs, unsigned off)
{
	return (struct flyfs_dirent *)(recs + off);
}

static inline unsigned
rec_size(const struct flyfs_dirent *de)
{
	return (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
}

static inline unsigned
dn_count(struct buf *bp)
{
	return le16_get(node_hdr(bp)->dn_count);
}

static inline unsigned
dn_used(struct buf *bp)
{
	return le16_get(node_hdr(bp)->dn_used);
}

static inline struct flyfs_dir_root *
droot(struct fs_inode *dp)
{
	return &dp->i_din.i_dir;
}

static inline unsigned
dlevels(struct fs_inode *dp)
{
	return le16_get(droot(dp)->dr_levels);
}

/* A descent: the node at each level from the root, and the child taken. */
struct dpath {
	unsigned	levels;			/* = dr_levels at descent */
	uint64_t	blk[DIR_MAX_LEVELS];	/* [0] root .. [levels-1] leaf */
	unsigned	idx[DIR_MAX_LEVELS];	/* child index in blk[i] */
	bool		full[DIR_MAX_LEVELS];	/* interior blk[i] is full */
	/*
	 * Blocks allocated before an insertion changes anything, one per
	 * node its splits will create, so that running out of space fails
	 * the insertion cleanly instead of half way through a split.
	 */
	uint64_t	pool[DIR_MAX_LEVELS + 1];
	unsigned	npool;
};

/* ---- Reading and checking nodes ---------------------------------------- */

/*
 * A leaf's records must tile exactly [0, dn_used) with sane lengths and
 * ascending keys >= 2^32; an interior node must hold 1..253 ascending
 * keys.  Checked on every read (the records are walked anyway), so a
 * corrupt block never sends a search out of its buffer.
 */
static int
node_verify(struct fs_inode *dp, uint64_t blk, struct buf *bp,
    unsigned level)
{
	struct flyfs_dir_node *h = node_hdr(bp);
	unsigned count = le16_get(h->dn_count), used = le16_get(h->dn_used);
	uint64_t prev = 0;

	if (le16_get(h->dn_level) != level)
		return fs_corrupt(dp->i_fs, blk, dp->i_ino,
		    "directory node level %u, expected %u",
		    le16_get(h->dn_level), level);
	if (level > 0) {
		struct flyfs_dir_idx *ix = node_idx(bp);

		if (count == 0 || count > DIR_IDX_MAX)
			return fs_corrupt(dp->i_fs, blk, dp->i_ino,
			    "directory index node holds %u records", count);
		for (unsigned i = 0; i < count; i++) {
			uint64_t k = le64_get(ix[i].di_key);

			if ((i > 0 && k <= prev) ||
			    le64_get(ix[i].di_child) == 0)
				return fs_corrupt(dp->i_fs, blk, dp->i_ino,
				    "directory index record %u out of order",
				    i);
			prev = k;
		}
		return 0;
	}
	if (used > DIR_LEAF_SPACE)
		return fs_corrupt(dp->i_fs, blk, dp->i_ino,
		    "directory leaf uses %u bytes", used);
	unsigned off = 0, n = 0;
	uint8_t *recs = leaf_recs(bp);
	while (off < used) {
		struct flyfs_dirent *de = rec_at(recs, off);
		uint64_t k;

		if (used - off < sizeof(*de) || de->de_name_len == 0 ||
		    rec_size(de) > used - off)
			return fs_corrupt(dp->i_fs, blk, dp->i_ino,
			    "directory leaf record at %u overruns", off);
		k = le64_get(de->de_key);
		if (k < DIR_KEY_MIN || k <= prev)
			return fs_corrupt(dp->i_fs, blk, dp->i_ino,
			    "directory leaf key %#llx out of order",
			    (unsigned long long)k);
		prev = k;
		off += rec_size(de);
		n++;
	}
	if (n != count)
		return fs_corrupt(dp->i_fs, blk, dp->i_ino,
		    "directory leaf counts %u records, holds %u", count, n);
	return 0;
}

/* Read node BLK of DP's tree, expected at LEVEL; locked in *BPP. */
static int
node_read(struct fs_inode *dp, uint64_t blk, unsigned level,
    struct buf **bpp)
{
	int error;

	error = fs_meta_read(dp->i_fs, blk, FLYFS_MB_DIR, dp->i_ino, bpp);
	if (error != 0)
		return error;
	if ((error = node_verify(dp, blk, *bpp, level)) != 0) {
		fs_meta_release(*bpp);
		*bpp = NULL;
	}
	return error;
}

/* Index of the child of interior node BP to search for KEY. */
static unsigned
idx_search(struct buf *bp, uint64_t key)
{
	struct flyfs_dir_idx *ix = node_idx(bp);
	unsigned lo = 0, hi = dn_count(bp);

	/* last i with di_key[i] <= key; 0 if none */
	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;
		if (le64_get(ix[mid].di_key) <= key)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Offset of the first record of leaf BP with a key >= KEY (or dn_used). */
static unsigned
leaf_search(struct buf *bp, uint64_t key)
{
	uint8_t *recs = leaf_recs(bp);
	unsigned off = 0, used = dn_used(bp);

	while (off < used && le64_get(rec_at(recs, off)->de_key) < key)
		off += rec_size(rec_at(recs, off));
	return off;
}

/*
 * Descend DP's tree toward KEY, recording the path in *P, and return the
 * leaf locked in *BPP.  With TX (insertion of KEY), a separator greater
 * than KEY met at child 0 is lowered to KEY, so every subtree's first
 * separator stays a lower bound of its keys.
 */
static int
descend(struct fs_inode *dp, struct fs_trans *tx, uint64_t key,
    struct dpath *p, struct buf **bpp)
{
	struct flyfs_dir_root *dr = droot(dp);
	uint64_t blk = le64_get(dr->dr_root);
	struct buf *bp;
	int error;

	p->levels = dlevels(dp);
	p->npool = 0;
	if (p->levels == 0 || p->levels > DIR_MAX_LEVELS || blk == 0)
		return fs_corrupt(dp->i_fs, 0, dp->i_ino,
		    "directory tree of height %u at block %llu", p->levels,
		    (unsigned long long)blk);
	for (unsigned i = 0; i < p->levels; i++) {
		unsigned level = p->levels - 1 - i;

		if ((error = node_read(dp, blk, level, &bp)) != 0)
			return error;
		p->blk[i] = blk;
		if (level == 0)
			break;
		p->idx[i] = idx_search(bp, key);
		p->full[i] = dn_count(bp) >= DIR_IDX_MAX;
		if (tx != NULL && p->idx[i] == 0 &&
		    le64_get(node_idx(bp)[0].di_key) > key) {
			le64_set(&node_idx(bp)[0].di_key, key);
			fs_trans_dirty(tx, bp);
		}
		blk = le64_get(node_idx(bp)[p->idx[i]].di_child);
		fs_meta_release(bp);
	}
	*bpp = bp;
	return 0;
}

/* ---- Hash groups: finding a name, choosing a minor ----------------------- */

struct hscan {
	/* in */
	const char	*name;
	size_t		len;
	bool		want_minors;
	/* out */
	bool		found;
	struct fs_dirent ent;
	uint32_t	*minors;	/* malloc'd when want_minors */
	size_t		nminors, cap;
};

static int
minor_add(struct hscan *s, uint32_t minor)
{
	if (s->nminors == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		uint32_t *m = realloc(s->minors, cap * sizeof(*m));
		if (m == NULL)
			return ENOMEM;
		s->minors = m;
		s->cap = cap;
	}
	s->minors[s->nminors++] = minor;
	return 0;
}

/*
 * Walk the records of hash HASH (a run of keys from HASH << 32, possibly
 * across leaves) looking for S->name; with want_minors, collect the minors
 * in use.  Stops at the name unless minors are wanted.
 */
static int
hash_scan(struct fs_inode *dp, uint32_t hash, struct hscan *s)
{
	uint64_t lo = FLYFS_DIR_KEY(hash, 0);
	struct dpath p;
	struct buf *bp;
	unsigned off;
	int error;

	s->found = false;
	if (le64_get(droot(dp)->dr_root) == 0)
		return 0;
	if ((error = descend(dp, NULL, lo, &p, &bp)) != 0)
		return error;
	off = leaf_search(bp, lo);
	for (;;) {
		uint8_t *recs = leaf_recs(bp);
		unsigned used = dn_used(bp);
		uint64_t next, blk;

		for (; off < used; off += rec_size(rec_at(recs, off))) {
			struct flyfs_dirent *de = rec_at(recs, off);
			uint64_t k = le64_get(de->de_key);

			if (FLYFS_DIR_HASH_MAJOR(k) != hash)
				goto done;
			if (de->de_name_len == s->len &&
			    memcmp(de->de_name, s->name, s->len) == 0) {
				s->found = true;
				s->ent.key = k;
				s->ent.ino = le64_get(de->de_ino);
				s->ent.type = de->de_type;
				if (!s->want_minors)
					goto done;
			}
			if (s->want_minors &&
			    (error = minor_add(s, (uint32_t)k)) != 0)
				goto out;
		}
		next = le64_get(node_hdr(bp)->dn_next);
		blk = bp->b_loffset >> FLYFS_BLOCK_SHIFT;
		fs_meta_release(bp);
		bp = NULL;
		if (next == 0)
			return 0;
		if (next == blk)
			return fs_corrupt(dp->i_fs, blk, dp->i_ino,
			    "directory leaf chained to itself");
		if ((error = node_read(dp, next, 0, &bp)) != 0)
			return error;
		off = 0;
	}
done:
	error = 0;
out:
	if (bp != NULL)
		fs_meta_release(bp);
	return error;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The lowest minor not in S->minors. */
static int
lowest_minor(struct hscan *s, uint32_t *minor)
{
	uint64_t m = 0;

	if (s->nminors > 1)
		qsort(s->minors, s->nminors, sizeof(*s->minors), cmp_u32);
	for (size_t i = 0; i < s->nminors; i++) {
		if (s->minors[i] > m)
			break;
		if (s->minors[i] == m)
			m++;
	}
	if (m > UINT32_MAX)
		return ENOSPC;
	*minor = (uint32_t)m;
	return 0;
}

/* ---- Accounting ---------------------------------------------------------- */

/* One more (DELTA 1) or one fewer (-1) tree block for DP. */
static void
account_block(struct fs_inode *dp, int delta)
{
	pthread_mutex_lock(&dp->i_mtx);
	le64_set(&dp->i_din.i_size, fs_i_size(dp) +
	    (uint64_t)(int64_t)delta * FLYFS_BLOCK_SIZE);
	le64_set(&dp->i_din.i_blocks, le64_get(dp->i_din.i_blocks) +
	    (uint64_t)(int64_t)delta);
	pthread_mutex_unlock(&dp->i_mtx);
}

/*
 * A new, zeroed tree node at LEVEL, locked in *BPP: a block from P's pool
 * if it has one, else one allocated near GOAL.
 */
static int
node_new(struct fs_trans *tx, struct fs_inode *dp, struct dpath *p,
    uint64_t goal, unsigned level, struct buf **bpp)
{
	uint64_t blk;
	int error;

	if (p != NULL && p->npool > 0)
		blk = p->pool[--p->npool];
	else if ((error = fs_alloc_meta_block(tx, goal, &blk)) != 0)
		return error;
	if ((error = fs_meta_new(tx, blk, FLYFS_MB_DIR, dp->i_ino, bpp)) != 0) {
		fs_trans_free_blocks(tx, blk, 1, FS_FREE_META);
		return error;
	}
	le16_set(&node_hdr(*bpp)->dn_level, (uint16_t)level);
	account_block(dp, 1);
	return 0;
}

/* Release node BP (not locked by anyone else) and free its block. */
static int
node_free(struct fs_trans *tx, struct fs_inode *dp, struct buf *bp)
{
	uint64_t blk = (uint64_t)bp->b_loffset >> FLYFS_BLOCK_SHIFT;

	fs_meta_release(bp);
	account_block(dp, -1);
	return fs_trans_free_blocks(tx, blk, 1, FS_FREE_META);
}

static inline uint64_t
bp_blk(struct buf *bp)
{
	return (uint64_t)bp->b_loffset >> FLYFS_BLOCK_SHIFT;
}

/* Lowest key of node BP (its first record). */
static uint64_t
node_low_key(struct buf *bp)
{
	if (le16_get(node_hdr(bp)->dn_level) > 0)
		return le64_get(node_idx(bp)[0].di_key);
	return le64_get(rec_at(leaf_recs(bp), 0)->de_key);
}

unsigned
fs_dir_insert_blocks(struct fs_inode *dp)
{
	unsigned l = dlevels(dp) + 1;

	/* path nodes, a split per level plus a new root (node + 2 for the
	 * allocation each), the inode */
	return l + 3 * (l + 1) + 1;
}

unsigned
fs_dir_remove_blocks(struct fs_inode *dp)
{
	unsigned l = dlevels(dp) + 1;

	/* path, a sibling per level, the path to the previous leaf, a
	 * freed node per level (2 each for the bitmap), the inode */
	return 3 * l + 2 * (l + 1) + 1;
}

unsigned
fs_dir_replace_blocks(struct fs_inode *dp)
{
	return dlevels(dp) + 2;
}

/* ---- Insertion ---------------------------------------------------------- */

/*
 * Insert index record (KEY, CHILD) after the record P->idx[PL] of the
 * interior node at path level PL; PL < 0 means a new root above the old
 * one.  Splits and recurses upward as needed.
 */
static int
idx_insert(struct fs_trans *tx, struct fs_inode *dp, struct dpath *p,
    int pl, uint64_t key, uint64_t child)
{
	struct flyfs_dir_root *dr = droot(dp);
	struct buf *bp, *nbp;
	struct flyfs_dir_idx *ix, tmp[DIR_IDX_MAX + 1];
	unsigned n, pos, half;
	int error;

	if (pl < 0) {
		uint64_t old = le64_get(dr->dr_root);
		unsigned levels = dlevels(dp);

		if (levels >= DIR_MAX_LEVELS)
			return ENOSPC;
		if ((error = node_read(dp, old, levels - 1, &bp)) != 0)
			return error;
		uint64_t low = node_low_key(bp);
		fs_meta_release(bp);
		if ((error = node_new(tx, dp, p, old, levels, &nbp)) != 0)
			return error;
		ix = node_idx(nbp);
		le64_set(&ix[0].di_key, low);
		le64_set(&ix[0].di_child, old);
		le64_set(&ix[1].di_key, key);
		le64_set(&ix[1].di_child, child);
		le16_set(&node_hdr(nbp)->dn_count, 2);
		le64_set(&dr->dr_root, bp_blk(nbp));
		le16_set(&dr->dr_levels, (uint16_t)(levels + 1));
		fs_trans_dirty(tx, nbp);
		fs_meta_release(nbp);
		return 0;
	}
	if ((error = node_read(dp, p->blk[pl], p->levels - 1 - pl, &bp)) != 0)
		return error;
	n = dn_count(bp);
	pos = p->idx[pl] + 1;
	ix = node_idx(bp);
	if (n < DIR_IDX_MAX) {
		memmove(&ix[pos + 1], &ix[pos], (n - pos) * sizeof(*ix));
		le64_set(&ix[pos].di_key, key);
		le64_set(&ix[pos].di_child, child);
		le16_set(&node_hdr(bp)->dn_count, (uint16_t)(n + 1));
		fs_trans_dirty(tx, bp);
		fs_meta_release(bp);
		return 0;
	}
	/* Full: split the n + 1 records in two halves. */
	memcpy(tmp, ix, pos * sizeof(*ix));
	le64_set(&tmp[pos].di_key, key);
	le64_set(&tmp[pos].di_child, child);
	memcpy(&tmp[pos + 1], &ix[pos], (n - pos) * sizeof(*ix));
	half = (n + 1) / 2;
	error = node_new(tx, dp, p, p->blk[pl], p->levels - 1 - pl, &nbp);
	if (error != 0) {
		fs_meta_release(bp);
		return error;
	}
	memset(ix, 0, DIR_LEAF_SPACE);
	memcpy(ix, tmp, half * sizeof(*ix));
	le16_set(&node_hdr(bp)->dn_count, (uint16_t)half);
	memcpy(node_idx(nbp), &tmp[half], (n + 1 - half) * sizeof(*ix));
	le16_set(&node_hdr(nbp)->dn_count, (uint16_t)(n + 1 - half));
	fs_trans_dirty(tx, bp);
	fs_meta_release(bp);
	key = le64_get(tmp[half].di_key);
	child = bp_blk(nbp);
	fs_trans_dirty(tx, nbp);
	fs_meta_release(nbp);
	return idx_insert(tx, dp, p, pl - 1, key, child);
}

/*
 * Put record REC (SIZE bytes) into leaf BP (locked, path P), splitting the
 * leaf when it does not fit.  Consumes BP.
 */
static int
leaf_insert(struct fs_trans *tx, struct fs_inode *dp, struct dpath *p,
    struct buf *bp, const struct flyfs_dirent *rec, unsigned size)
{
	struct flyfs_dir_node *h = node_hdr(bp);
	uint8_t *recs = leaf_recs(bp);
	uint8_t tmp[FLYFS_DIR_LEAF_SPACE + FLYFS_DIRENT_SIZE(FLYFS_NAME_MAX)];
	unsigned used = le16_get(h->dn_used), count = le16_get(h->dn_count);
	unsigned pos = leaf_search(bp, le64_get(rec->de_key));
	unsigned total, cut, ncut;
	struct buf *nbp;
	uint64_t sep, nblk;
	int error;

	if (used + size <= DIR_LEAF_SPACE) {
		memmove(recs + pos + size, recs + pos, used - pos);
		memcpy(recs + pos, rec, size);
		le16_set(&h->dn_used, (uint16_t)(used + size));
		le16_set(&h->dn_count, (uint16_t)(count + 1));
		fs_trans_dirty(tx, bp);
		fs_meta_release(bp);
		return 0;
	}
	/* Split: lay out all records with the new one, cut at half. */
	total = used + size;
	memcpy(tmp, recs, pos);
	memcpy(tmp + pos, rec, size);
	memcpy(tmp + pos + size, recs + pos, used - pos);
	cut = 0;
	ncut = 0;
	while (cut < total / 2) {
		cut += rec_size(rec_at(tmp, cut));
		ncut++;
	}
	error = node_new(tx, dp, p, p->blk[p->levels - 1], 0, &nbp);
	if (error != 0) {
		fs_meta_release(bp);
		return error;
	}
	nblk = bp_blk(nbp);
	memset(recs, 0, DIR_LEAF_SPACE);
	memcpy(recs, tmp, cut);
	memcpy(leaf_recs(nbp), tmp + cut, total - cut);
	le16_set(&node_hdr(nbp)->dn_used, (uint16_t)(total - cut));
	le16_set(&node_hdr(nbp)->dn_count, (uint16_t)(count + 1 - ncut));
	node_hdr(nbp)->dn_next = h->dn_next;
	le16_set(&h->dn_used, (uint16_t)cut);
	le16_set(&h->dn_count, (uint16_t)ncut);
	le64_set(&h->dn_next, nblk);
	sep = le64_get(rec_at(tmp, cut)->de_key);
	fs_trans_dirty(tx, bp);
	fs_meta_release(bp);
	fs_trans_dirty(tx, nbp);
	fs_meta_release(nbp);
	return idx_insert(tx, dp, p, (int)p->levels - 2, sep, nblk);
}

/*
 * Allocate into P's pool the blocks that inserting SIZE more bytes into
 * leaf BP will need: one per node that splits (the leaf, then each full
 * ancestor) and one for a new root if the root splits.
 */
static int
reserve_splits(struct fs_trans *tx, struct dpath *p, struct buf *bp,
    unsigned size)
{
	unsigned need = 0;
	int i, error;

	if (dn_used(bp) + size > DIR_LEAF_SPACE) {
		need = 1;
		for (i = (int)p->levels - 2; i >= 0 && p->full[i]; i--)
			need++;
		if (i < 0) {
			need++;		/* a new root */
			if (p->levels >= DIR_MAX_LEVELS)
				return ENOSPC;
		}
	}
	while (p->npool < need) {
		error = fs_alloc_meta_block(tx, p->blk[p->levels - 1],
		    &p->pool[p->npool]);
		if (error != 0) {
			while (p->npool > 0)
				fs_trans_free_blocks(tx, p->pool[--p->npool],
				    1, FS_FREE_META);
			return error;
		}
		p->npool++;
	}
	return 0;
}

int
fs_dir_insert(struct fs_trans *tx, struct fs_inode *dp, const char *name,
    size_t len, uint64_t ino, unsigned type, uint64_t *keyp)
{
	struct flyfs_dir_root *dr = droot(dp);
	struct hscan s = { .name = name, .len = len, .want_minors = true };
	union {
		struct flyfs_dirent de;
		uint8_t raw[FLYFS_DIRENT_SIZE(FLYFS_NAME_MAX)];
	} rec;
	uint32_t hash, minor;
	uint64_t key;
	struct dpath p;
	struct buf *bp;
	int error;

	if (len == 0 || len > FLYFS_NAME_MAX)
		return len == 0 ? EINVAL : ENAMETOOLONG;
	hash = flyfs_dir_hash(dp->i_fs->s_sb.hash_key, name, len);
	if ((error = hash_scan(dp, hash, &s)) != 0)
		goto out;
	if (s.found) {
		error = EEXIST;
		goto out;
	}
	if ((error = lowest_minor(&s, &minor)) != 0)
		goto out;
	key = FLYFS_DIR_KEY(hash, minor);

	if (le64_get(dr->dr_root) == 0) {
		/* First entry ever: the tree starts as one leaf. */
		error = node_new(tx, dp, NULL, 0, 0, &bp);
		if (error != 0)
			goto out;
		le64_set(&dr->dr_root, bp_blk(bp));
		le16_set(&dr->dr_levels, 1);
		fs_meta_release(bp);
	}
	memset(&rec, 0, sizeof(rec));
	le64_set(&rec.de.de_key, key);
	le64_set(&rec.de.de_ino, ino);
	rec.de.de_name_len = (uint8_t)len;
	rec.de.de_type = (uint8_t)type;
	memcpy(rec.de.de_name, name, len);
	if ((error = descend(dp, tx, key, &p, &bp)) != 0)
		goto out;
	if ((error = reserve_splits(tx, &p, bp, (unsigned)
	    FLYFS_DIRENT_SIZE(len))) != 0) {
		fs_meta_release(bp);
		goto dirty;
	}
	error = leaf_insert(tx, dp, &p, bp, &rec.de,
	    (unsigned)FLYFS_DIRENT_SIZE(len));
	if (error == 0) {
		le64_set(&dr->dr_entries, le64_get(dr->dr_entries) + 1);
		if (keyp != NULL)
			*keyp = key;
	}
	while (p.npool > 0)	/* only after an error */
		fs_trans_free_blocks(tx, p.pool[--p.npool], 1, FS_FREE_META);
dirty:
	{
		int e2 = fs_inode_dirty(tx, dp);
		if (error == 0)
			error = e2;
	}
out:
	free(s.minors);
	return error;
}

/* ---- Removal ------------------------------------------------------------ */

/*
 * Remove the index record at position POS of interior node BP (locked,
 * at path level PL), then restore the invariants upward.  Consumes BP.
 */
static int idx_remove(struct fs_trans *tx, struct fs_inode *dp,
    struct dpath *p, int pl, struct buf *bp, unsigned pos);

/*
 * Children LI and LI + 1 of interior node PBP (locked, path level PL):
 * if both fit in one node, move the right one's records into the left,
 * free the right one and drop its index record.  Consumes PBP.
 */
static int
merge_children(struct fs_trans *tx, struct fs_inode *dp, struct dpath *p,
    int pl, struct buf *pbp, unsigned li)
{
	struct flyfs_dir_idx *pix = node_idx(pbp);
	unsigned level = p->levels - 2 - (unsigned)pl;
	struct buf *lbp, *rbp;
	bool fits;
	int error;

	error = node_read(dp, le64_get(pix[li].di_child), level, &lbp);
	if (error != 0)
		goto fail;
	error = node_read(dp, le64_get(pix[li + 1].di_child), level, &rbp);
	if (error != 0) {
		fs_meta_release(lbp);
		goto fail;
	}
	if (level == 0)
		fits = dn_used(lbp) + dn_used(rbp) <= DIR_LEAF_SPACE;
	else
		fits = dn_count(lbp) + dn_count(rbp) <= DIR_IDX_MAX;
	if (!fits) {
		fs_meta_release(rbp);
		fs_meta_release(lbp);
		fs_meta_release(pbp);
		return 0;
	}
	struct flyfs_dir_node *lh = node_hdr(lbp), *rh = node_hdr(rbp);
	if (level == 0) {
		memcpy(leaf_recs(lbp) + dn_used(lbp), leaf_recs(rbp),
		    dn_used(rbp));
		le16_set(&lh->dn_used, (uint16_t)(dn_used(lbp) + dn_used(rbp)));
		lh->dn_next = rh->dn_next;
	} else {
		memcpy(node_idx(lbp) + dn_count(lbp), node_idx(rbp),
		    dn_count(rbp) * sizeof(struct flyfs_dir_idx));
	}
	le16_set(&lh->dn_count, (uint16_t)(dn_count(lbp) + dn_count(rbp)));
	fs_trans_dirty(tx, lbp);
	fs_meta_release(lbp);
	if ((error = node_free(tx, dp, rbp)) != 0)
		goto fail;
	return idx_remove(tx, dp, p, pl, pbp, li + 1);
fail:
	fs_meta_release(pbp);
	return error;
}

/*
 * The leaf before the one at the end of path P, found from the deepest
 * ancestor where the path did not take child 0; 0 if it is the first.
 */
static int
prev_leaf(struct fs_inode *dp, struct dpath *p, uint64_t *blkp)
{
	struct buf *bp;
	int j, error;
	uint64_t blk;

	*blkp = 0;
	for (j = (int)p->levels - 2; j >= 0 && p->idx[j] == 0; j--)
		;
	if (j < 0)
		return 0;
	if ((error = node_read(dp, p->blk[j], p->levels - 1 - (unsigned)j,
	    &bp)) != 0)
		return error;
	blk = le64_get(node_idx(bp)[p->idx[j] - 1].di_child);
	fs_meta_release(bp);
	for (unsigned level = p->levels - 2 - (unsigned)j; level > 0; level--) {
		if ((error = node_read(dp, blk, level, &bp)) != 0)
			return error;
		blk = le64_get(node_idx(bp)[dn_count(bp) - 1].di_child);
		fs_meta_release(bp);
	}
	*blkp = blk;
	return 0;
}

static int
idx_remove(struct fs_trans *tx, struct fs_inode *dp, struct dpath *p,
    int pl, struct buf *bp, unsigned pos)
{
	struct flyfs_dir_root *dr = droot(dp);
	struct flyfs_dir_idx *ix = node_idx(bp);
	unsigned n = dn_count(bp) - 1;
	struct buf *pbp;
	int error;

	memmove(&ix[pos], &ix[pos + 1], (n - pos) * sizeof(*ix));
	memset(&ix[n], 0, sizeof(*ix));
	le16_set(&node_hdr(bp)->dn_count, (uint16_t)n);
	fs_trans_dirty(tx, bp);

	if (pl == 0) {
		/* The root: collapse while it has a single child. */
		unsigned levels = p->levels;

		if (n == 0) {
			/* Cannot happen with the invariants (root >= 2). */
			le64_set(&dr->dr_root, 0);
			le16_set(&dr->dr_levels, 0);
			return node_free(tx, dp, bp);
		}
		while (n == 1 && levels > 1) {
			uint64_t child = le64_get(node_idx(bp)[0].di_child);

			if ((error = node_free(tx, dp, bp)) != 0)
				return error;
			levels--;
			le64_set(&dr->dr_root, child);
			le16_set(&dr->dr_levels, (uint16_t)levels);
			if (levels == 1)
				return 0;
			if ((error = node_read(dp, child, levels - 1,
			    &bp)) != 0)
				return error;
			n = dn_count(bp);
		}
		fs_meta_release(bp);
		return 0;
	}
	if (n == 0) {
		if ((error = node_free(tx, dp, bp)) != 0)
			return error;
		error = node_read(dp, p->blk[pl - 1], p->levels - pl, &pbp);
		if (error != 0)
			return error;
		return idx_remove(tx, dp, p, pl - 1, pbp, p->idx[pl - 1]);
	}
	fs_meta_release(bp);
	if (n >= DIR_IDX_LOW)
		return 0;
	/* Underfull: try to merge with a sibling under the same parent. */
	if ((error = node_read(dp, p->blk[pl - 1], p->levels - pl, &pbp)) != 0)
		return error;
	if (dn_count(pbp) < 2) {
		fs_meta_release(pbp);
		return 0;
	}
	unsigned i = p->idx[pl - 1];
	return merge_children(tx, dp, p, pl - 1, pbp,
	    i + 1 < dn_count(pbp) ? i : i - 1);
}

/*
 * Leaf at the end of path P lost a record and is now USED bytes with
 * dn_next NEXT.  Merge or free it as the invariants require.
 */
static int
leaf_rebalance(struct fs_trans *tx, struct fs_inode *dp, struct dpath *p,
    unsigned used, uint64_t next)
{
	int pl = (int)p->levels - 2;
	struct buf *pbp, *bp;
	uint64_t prev;
	unsigned i;
	int error;

	if (p->levels == 1 || used >= DIR_LEAF_LOW)
		return 0;
	if ((error = node_read(dp, p->blk[pl], 1, &pbp)) != 0)
		return error;
	i = p->idx[pl];
	if (dn_count(pbp) >= 2)
		return merge_children(tx, dp, p, pl, pbp,
		    i + 1 < dn_count(pbp) ? i : i - 1);
	fs_meta_release(pbp);
	if (used > 0)
		return 0;
	/* An empty only child: unchain it from the previous leaf, free it. */
	if ((error = prev_leaf(dp, p, &prev)) != 0)
		return error;
	if (prev != 0) {
		if ((error = node_read(dp, prev, 0, &bp)) != 0)
			return error;
		le64_set(&node_hdr(bp)->dn_next, next);
		fs_trans_dirty(tx, bp);
		fs_meta_release(bp);
	}
	if ((error = node_read(dp, p->blk[p->levels - 1], 0, &bp)) != 0)
		return error;
	if ((error = node_free(tx, dp, bp)) != 0)
		return error;
	if ((error = node_read(dp, p->blk[pl], 1, &pbp)) != 0)
		return error;
	return idx_remove(tx, dp, p, pl, pbp, i);
}

/* Remove the record with key KEY (known to exist) from DP's tree. */
static int
remove_key(struct fs_trans *tx, struct fs_inode *dp, uint64_t key)
{
	struct flyfs_dir_root *dr = droot(dp);
	struct dpath p;
	struct buf *bp;
	struct flyfs_dirent *de;
	unsigned off, used, sz;
	uint64_t next;
	int error;

	if ((error = descend(dp, NULL, key, &p, &bp)) != 0)
		return error;
	off = leaf_search(bp, key);
	used = dn_used(bp);
	de = rec_at(leaf_recs(bp), off);
	if (off >= used || le64_get(de->de_key) != key) {
		fs_meta_release(bp);
		return fs_corrupt(dp->i_fs, p.blk[p.levels - 1], dp->i_ino,
		    "directory key %#llx not where the tree says",
		    (unsigned long long)key);
	}
	sz = rec_size(de);
	memmove(leaf_recs(bp) + off, leaf_recs(bp) + off + sz,
	    used - off - sz);
	memset(leaf_recs(bp) + used - sz, 0, sz);
	used -= sz;
	le16_set(&node_hdr(bp)->dn_used, (uint16_t)used);
	le16_set(&node_hdr(bp)->dn_count, (uint16_t)(dn_count(bp) - 1));
	next = le64_get(node_hdr(bp)->dn_next);
	fs_trans_dirty(tx, bp);
	fs_meta_release(bp);
	le64_set(&dr->dr_entries, le64_get(dr->dr_entries) - 1);
	return leaf_rebalance(tx, dp, &p, used, next);
}

int
fs_dir_remove(struct fs_trans *tx, struct fs_inode *dp, const char *name,
    size_t len, struct fs_dirent *out)
{
	struct hscan s = { .name = name, .len = len };
	int error, e2;

	if (len == 0 || len > FLYFS_NAME_MAX)
		return len == 0 ? ENOENT : ENAMETOOLONG;
	error = hash_scan(dp, flyfs_dir_hash(dp->i_fs->s_sb.hash_key, name,
	    len), &s);
	if (error != 0)
		return error;
	if (!s.found)
		return ENOENT;
	error = remove_key(tx, dp, s.ent.key);
	e2 = fs_inode_dirty(tx, dp);
	if (error == 0 && out != NULL)
		*out = s.ent;
	return error != 0 ? error : e2;
}

int
fs_dir_replace(struct fs_trans *tx, struct fs_inode *dp, const char *name,
    size_t len, uint64_t ino, unsigned type)
{
	struct hscan s = { .name = name, .len = len };
	struct dpath p;
	struct buf *bp;
	struct flyfs_dirent *de;
	unsigned off;
	int error;

	if (len == 0 || len > FLYFS_NAME_MAX)
		return len == 0 ? ENOENT : ENAMETOOLONG;
	error = hash_scan(dp, flyfs_dir_hash(dp->i_fs->s_sb.hash_key, name,
	    len), &s);
	if (error != 0)
		return error;
	if (!s.found)
		return ENOENT;
	if ((error = descend(dp, NULL, s.ent.key, &p, &bp)) != 0)
		return error;
	off = leaf_search(bp, s.ent.key);
	de = rec_at(leaf_recs(bp), off);
	if (off >= dn_used(bp) || le64_get(de->de_key) != s.ent.key) {
		fs_meta_release(bp);
		return fs_corrupt(dp->i_fs, p.blk[p.levels - 1], dp->i_ino,
		    "directory key not where the tree says");
	}
	le64_set(&de->de_ino, ino);
	de->de_type = (uint8_t)type;
	fs_trans_dirty(tx, bp);
	fs_meta_release(bp);
	return fs_inode_dirty(tx, dp);
}

/* ---- Lookup and iteration ------------------------------------------------ */

int
fs_dir_lookup(struct fs_inode *dp, const char *name, size_t len,
    struct fs_dirent *out)
{
	struct hscan s = { .name = name, .len = len };
	int error;

	if (len == 0 || len > FLYFS_NAME_MAX)
		return len == 0 ? ENOENT : ENAMETOOLONG;
	error = hash_scan(dp, flyfs_dir_hash(dp->i_fs->s_sb.hash_key, name,
	    len), &s);
	if (error != 0)
		return error;
	if (!s.found)
		return ENOENT;
	*out = s.ent;
	return 0;
}

int
fs_dir_iterate(struct fs_inode *dp, uint64_t cookie, fs_dir_iter_t *fn,
    void *arg)
{
	uint64_t start = cookie < DIR_KEY_MIN ? DIR_KEY_MIN : cookie + 1;
	uint8_t *copy;
	struct dpath p;
	struct buf *bp;
	unsigned off, used;
	uint64_t next, blk;
	int error;

	if (le64_get(droot(dp)->dr_root) == 0 || cookie == UINT64_MAX)
		return 0;
	if ((copy = malloc(DIR_LEAF_SPACE)) == NULL)
		return ENOMEM;
	if ((error = descend(dp, NULL, start, &p, &bp)) != 0)
		goto out;
	off = leaf_search(bp, start);
	for (;;) {
		/* Copy the leaf so FN runs without a buffer lock. */
		used = dn_used(bp);
		memcpy(copy, leaf_recs(bp), used);
		next = le64_get(node_hdr(bp)->dn_next);
		blk = bp_blk(bp);
		fs_meta_release(bp);
		for (; off < used; off += rec_size(rec_at(copy, off))) {
			struct flyfs_dirent *de = rec_at(copy, off);

			if (fn(arg, de->de_name, de->de_name_len,
			    le64_get(de->de_ino), de->de_type,
			    le64_get(de->de_key)) != 0)
				goto out;
		}
		if (next == 0)
			break;
		if (next == blk) {
			error = fs_corrupt(dp->i_fs, blk, dp->i_ino,
			    "directory leaf chained to itself");
			goto out;
		}
		if ((error = node_read(dp, next, 0, &bp)) != 0)
			goto out;
		off = 0;
	}
out:
	free(copy);
	return error;
}

/* ---- Small accessors ------------------------------------------------------ */

void
fs_dir_init(struct fs_inode *dp, uint64_t parent)
{
	struct flyfs_dir_root *dr = droot(dp);

	memset(dr, 0, sizeof(*dr));
	le64_set(&dr->dr_parent, parent);
	pthread_mutex_lock(&dp->i_mtx);
	le64_set(&dp->i_din.i_size, 0);
	pthread_mutex_unlock(&dp->i_mtx);
}

uint64_t
fs_dir_parent(struct fs_inode *dp)
{
	return le64_get(droot(dp)->dr_parent);
}

void
fs_dir_set_parent(struct fs_inode *dp, uint64_t parent)
{
	le64_set(&droot(dp)->dr_parent, parent);
}

uint64_t
fs_dir_entries(struct fs_inode *dp)
{
	return le64_get(droot(dp)->dr_entries);
}

bool
fs_dir_is_empty(struct fs_inode *dp)
{
	return fs_dir_entries(dp) == 0;
}

/* ---- Freeing a whole tree -------------------------------------------------- */

/*
 * Free DP's tree a leaf at a time, leftmost first: each step empties the
 * first leaf (its entries are dropped) and removes it with the same code
 * as a removal, so every transaction leaves a valid, smaller tree.  A
 * crash in the middle leaves the orphan to be reclaimed again at mount.
 */
#define RECLAIM_STEPS_PER_TXN	8

int
fs_dir_reclaim(struct fs_inode *dp)
{
	struct flyfs_dir_root *dr;
	struct fs_trans *tx;
	struct dpath p;
	struct buf *bp;
	int error = 0, e2;

	pthread_rwlock_wrlock(&dp->i_lock);
	dr = droot(dp);
	while (error == 0 && le64_get(dr->dr_root) != 0) {
		unsigned steps = RECLAIM_STEPS_PER_TXN;
		unsigned need = steps * fs_dir_remove_blocks(dp);

		if (need > FS_TRANS_MAX_BLOCKS)
			need = FS_TRANS_MAX_BLOCKS,
			steps = need / fs_dir_remove_blocks(dp);
		if ((error = fs_trans_begin(dp->i_fs, need, &tx)) != 0)
			break;
		while (error == 0 && steps-- > 0 &&
		    le64_get(dr->dr_root) != 0) {
			unsigned n;
			uint64_t next;

			if ((error = descend(dp, NULL, 0, &p, &bp)) != 0)
				break;
			n = dn_count(bp);
			next = le64_get(node_hdr(bp)->dn_next);
			if (p.levels == 1) {
				le64_set(&dr->dr_root, 0);
				le16_set(&dr->dr_levels, 0);
				le64_set(&dr->dr_entries, 0);
				error = node_free(tx, dp, bp);
				break;
			}
			memset(leaf_recs(bp), 0, DIR_LEAF_SPACE);
			le16_set(&node_hdr(bp)->dn_count, 0);
			le16_set(&node_hdr(bp)->dn_used, 0);
			fs_trans_dirty(tx, bp);
			fs_meta_release(bp);
			le64_set(&dr->dr_entries, le64_get(dr->dr_entries) -
			    (n < le64_get(dr->dr_entries) ? n :
			    le64_get(dr->dr_entries)));
			error = leaf_rebalance(tx, dp, &p, 0, next);
		}
		e2 = fs_inode_dirty(tx, dp);
		if (error == 0)
			error = e2;
		if (error != 0)
			fs_trans_set_error(tx, error);
		e2 = fs_trans_end(tx);
		if (error == 0)
			error = e2;
	}
	pthread_rwlock_unlock(&dp->i_lock);
	return error;
}

/* ---- Checking a whole tree (tests) ----------------------------------------- */

struct tcheck {
	struct fs_inode	*dp;
	char		*err;
	size_t		errlen;
	uint64_t	entries, blocks, leaves;
	uint64_t	last_leaf;	/* previous leaf in key order */
	uint64_t	last_key;
	int		leaf_depth;
};

static int
check_node(struct tcheck *c, uint64_t blk, unsigned level, uint64_t lo,
    uint64_t hi, bool is_root)
{
	struct buf *bp;
	int error;

	if ((error = node_read(c->dp, blk, level, &bp)) != 0)
		return flyfs_error(c->err, c->errlen, error,
		    "node %llu unreadable", (unsigned long long)blk);
	c->blocks++;
	if (level == 0) {
		uint8_t *recs = leaf_recs(bp);

		if (c->last_leaf != 0) {
			struct buf *pbp;
			if ((error = node_read(c->dp, c->last_leaf, 0,
			    &pbp)) == 0) {
				if (le64_get(node_hdr(pbp)->dn_next) != blk)
					error = EUCLEAN;
				fs_meta_release(pbp);
			}
			if (error != 0) {
				fs_meta_release(bp);
				return flyfs_error(c->err, c->errlen, EUCLEAN,
				    "leaf chain broken before %llu",
				    (unsigned long long)blk);
			}
		}
		if (!is_root && dn_count(bp) == 0) {
			fs_meta_release(bp);
			return flyfs_error(c->err, c->errlen, EUCLEAN,
			    "empty non-root leaf %llu",
			    (unsigned long long)blk);
		}
		for (unsigned off = 0; off < dn_used(bp);
		    off += rec_size(rec_at(recs, off))) {
			uint64_t k = le64_get(rec_at(recs, off)->de_key);
			if (k < lo || k >= hi || k <= c->last_key) {
				fs_meta_release(bp);
				return flyfs_error(c->err, c->errlen, EUCLEAN,
				    "key %#llx out of bounds in leaf %llu",
				    (unsigned long long)k,
				    (unsigned long long)blk);
			}
			c->last_key = k;
			c->entries++;
		}
		c->last_leaf = blk;
		c->leaves++;
		fs_meta_release(bp);
		return 0;
	}
	unsigned n = dn_count(bp);
	struct flyfs_dir_idx *ix = malloc(n * sizeof(*ix));
	if (ix == NULL) {
		fs_meta_release(bp);
		return ENOMEM;
	}
	memcpy(ix, node_idx(bp), n * sizeof(*ix));
	fs_meta_release(bp);
	if (is_root && n < 2) {
		free(ix);
		return flyfs_error(c->err, c->errlen, EUCLEAN,
		    "interior root with one child");
	}
	for (unsigned i = 0; i < n && error == 0; i++) {
		uint64_t k = le64_get(ix[i].di_key);
		uint64_t khi = i + 1 < n ? le64_get(ix[i + 1].di_key) : hi;
		if (k < lo)
			error = flyfs_error(c->err, c->errlen, EUCLEAN,
			    "separator below its bound in %llu",
			    (unsigned long long)blk);
		else
			error = check_node(c, le64_get(ix[i].di_child),
			    level - 1, k, khi, false);
	}
	free(ix);
	return error;
}

int
fs_dir_check(struct fs_inode *dp, char *err, size_t errlen)
{
	struct flyfs_dir_root *dr = droot(dp);
	struct tcheck c = { .dp = dp, .err = err, .errlen = errlen };
	uint64_t root = le64_get(dr->dr_root);
	unsigned levels = dlevels(dp);
	int error;

	if (root == 0) {
		if (levels != 0 || fs_dir_entries(dp) != 0)
			return flyfs_error(err, errlen, EUCLEAN,
			    "no tree but %u levels, %llu entries", levels,
			    (unsigned long long)fs_dir_entries(dp));
		return 0;
	}
	if (levels == 0 || levels > DIR_MAX_LEVELS)
		return flyfs_error(err, errlen, EUCLEAN, "height %u", levels);
	if ((error = check_node(&c, root, levels - 1, 0, UINT64_MAX, true)))
		return error;
	if (c.last_leaf != 0) {
		struct buf *bp;
		if ((error = node_read(dp, c.last_leaf, 0, &bp)) != 0)
			return error;
		uint64_t next = le64_get(node_hdr(bp)->dn_next);
		fs_meta_release(bp);
		if (next != 0)
			return flyfs_error(err, errlen, EUCLEAN,
			    "last leaf has a successor");
	}
	if (c.entries != fs_dir_entries(dp))
		return flyfs_error(err, errlen, EUCLEAN,
		    "%llu entries found, root says %llu",
		    (unsigned long long)c.entries,
		    (unsigned long long)fs_dir_entries(dp));
	if (fs_i_size(dp) != c.blocks * FLYFS_BLOCK_SIZE)
		return flyfs_error(err, errlen, EUCLEAN,
		    "size %llu for %llu blocks",
		    (unsigned long long)fs_i_size(dp),
		    (unsigned long long)c.blocks);
	return 0;
}
