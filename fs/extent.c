/*
 * extent.c - the extent B+tree that maps a file's logical 4 KiB blocks to
 * physical blocks.
 *
 * This module owns the shape of the tree: the root in the inode (3 extent
 * records or 6 index records), FEXT blocks below it (126 / 253 records),
 * lookups, insertion with merging and splitting, removal with trimming
 * and splitting, and the accounting of i_blocks for everything the tree
 * maps or occupies.  What the records mean for file data (holes,
 * unwritten, compressed, allocation policy) is file.c's business.
 *
 * INVARIANTS (checked by fsck.flyfs; walked by the functions below)
 *   - records of one node are sorted by key and do not overlap;
 *   - an index record's subtree holds records with keys in
 *     [ei_lblk, next index record's ei_lblk): ei_lblk is a lower bound of
 *     the subtree (not necessarily its first key, after removals), and no
 *     record of a subtree reaches into the next one;
 *   - no node except the root is empty; an index root has count >= 1;
 *   - levels decrease by one from parent to child, so a walk ends.
 *
 * Readers walk the tree without holding buffers across levels: a node is
 * read, copied and released before its child is read (walk_*).  Writers
 * take a path of locked buffers from the root down (struct xpath); the
 * root is edited in a copy that is stored back into the inode, under
 * i_mtx, in one piece, so fs_inode_dirty() by another thread never sees a
 * half-edited root.  Everything the allocator must do (new node blocks,
 * frees) happens with no tree buffer locked: the lock order puts
 * s_alloc_lock before buffer locks, and a freed metadata block's revoke
 * locks its buffer.
 *
 * Locking: ip->i_extlock held by the caller throughout; for changes, a
 * transaction handle as well (fs_trans_begin before i_extlock).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/extent.h"
#include "fs/fs_int.h"

#define ROOT_LEAF_MAX	FLYFS_INODE_EXT_ROOT_MAX
#define ROOT_IDX_MAX	((FLYFS_INODE_ROOT_SIZE - \
	    sizeof(struct flyfs_extent_node)) / sizeof(struct flyfs_extent_idx))
#define MAX_LEVELS	(FLYFS_EXT_MAX_DEPTH + 1)
/* Keys stay below this so lblk + llen never wraps. */
#define MAX_LBLK	(FLYFS_MAX_FILE_SIZE >> FLYFS_BLOCK_SHIFT)

_Static_assert(ROOT_IDX_MAX == 6, "root index records");

/* ---- Node access ------------------------------------------------------ */

static inline struct flyfs_extent *
xrec(struct flyfs_extent_node *h)
{
	return (struct flyfs_extent *)(void *)(h + 1);
}

static inline struct flyfs_extent_idx *
xidx(struct flyfs_extent_node *h)
{
	return (struct flyfs_extent_idx *)(void *)(h + 1);
}

static inline unsigned
nmax(bool root, unsigned level)
{
	if (root)
		return level ? ROOT_IDX_MAX : ROOT_LEAF_MAX;
	return level ? FLYFS_EXT_BLOCK_IDX_MAX : FLYFS_EXT_BLOCK_LEAF_MAX;
}

static inline unsigned hcount(const struct flyfs_extent_node *h)
{ return le16_get(h->en_count); }
static inline unsigned hlevel(const struct flyfs_extent_node *h)
{ return le16_get(h->en_level); }
static inline void hset_count(struct flyfs_extent_node *h, unsigned c)
{ le16_set(&h->en_count, (uint16_t)c); }

static inline size_t
recsize(unsigned level)
{
	return level ? sizeof(struct flyfs_extent_idx) :
	    sizeof(struct flyfs_extent);
}

static void
ext_get(const struct flyfs_extent *d, struct fs_extent *e)
{
	e->lblk = le64_get(d->e_lblk);
	e->pblk = le64_get(d->e_pblk);
	e->llen = le32_get(d->e_llen);
	e->plen = le32_get(d->e_plen);
	e->comp = d->e_comp;
	e->flags = d->e_flags;
	e->cbytes = le32_get(d->e_cbytes);
}

static void
ext_put(struct flyfs_extent *d, const struct fs_extent *e)
{
	memset(d, 0, sizeof(*d));
	le64_set(&d->e_lblk, e->lblk);
	le64_set(&d->e_pblk, e->pblk);
	le32_set(&d->e_llen, e->llen);
	le32_set(&d->e_plen, e->plen);
	d->e_comp = e->comp;
	d->e_flags = e->flags;
	le32_set(&d->e_cbytes, e->cbytes);
}

static void
hinit(struct flyfs_extent_node *h, bool root, unsigned level)
{
	memset(h, 0, sizeof(*h));
	le16_set(&h->en_magic, FLYFS_EXTENT_NODE_MAGIC);
	le16_set(&h->en_max, (uint16_t)nmax(root, level));
	le16_set(&h->en_level, (uint16_t)level);
}

/*
 * Check a node header: magic, level, capacity, count.  LEVEL < 0: the
 * root (any level up to the maximum).  A root of all zeros is an empty
 * leaf (an inode whose root was never initialised).
 */
static int
hcheck(struct fs_inode *ip, struct flyfs_extent_node *h, int level,
    uint64_t blk)
{
	bool root = level < 0;
	unsigned lv = hlevel(h);

	if (root && le16_get(h->en_magic) == 0 && hcount(h) == 0 &&
	    lv == 0) {
		hinit(h, true, 0);
		return 0;
	}
	if (le16_get(h->en_magic) != FLYFS_EXTENT_NODE_MAGIC ||
	    lv > FLYFS_EXT_MAX_DEPTH || (!root && lv != (unsigned)level) ||
	    hcount(h) > nmax(root, lv) ||
	    (lv > 0 && hcount(h) == 0) || (!root && hcount(h) == 0))
		return fs_corrupt(ip->i_fs, blk, ip->i_ino,
		    "bad extent node (magic %#x level %u count %u)",
		    le16_get(h->en_magic), lv, hcount(h));
	/* The root's en_max is rewritten whenever the root changes. */
	le16_set(&h->en_max, (uint16_t)nmax(root, lv));
	return 0;
}

/* Last leaf record with key <= KEY, or -1. */
static int
leaf_search(struct flyfs_extent_node *h, uint64_t key)
{
	struct flyfs_extent *r = xrec(h);
	int lo = 0, hi = (int)hcount(h) - 1, ans = -1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (le64_get(r[mid].e_lblk) <= key) {
			ans = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return ans;
}

/* Last index record with key <= KEY, or -1. */
static int
idx_search(struct flyfs_extent_node *h, uint64_t key)
{
	struct flyfs_extent_idx *r = xidx(h);
	int lo = 0, hi = (int)hcount(h) - 1, ans = -1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (le64_get(r[mid].ei_lblk) <= key) {
			ans = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return ans;
}

static void
iblocks_add(struct fs_inode *ip, int64_t delta)
{
	if (delta == 0)
		return;
	pthread_mutex_lock(&ip->i_mtx);
	le64_set(&ip->i_din.i_blocks,
	    (uint64_t)((int64_t)le64_get(ip->i_din.i_blocks) + delta));
	pthread_mutex_unlock(&ip->i_mtx);
}

/* ---- Read-only walks (no buffer held across levels) ---------------- */

/* A private copy of the root area, checked. */
static int
root_copy(struct fs_inode *ip, uint64_t *buf)
{
	memcpy(buf, ip->i_din.i_root_raw, FLYFS_INODE_ROOT_SIZE);
	return hcheck(ip, (struct flyfs_extent_node *)(void *)buf, -1, 0);
}

/* Read child BLK (expected LEVEL) into a malloc'd 4 KiB copy. */
static int
node_copy(struct fs_inode *ip, uint64_t blk, unsigned level,
    struct flyfs_extent_node **hp)
{
	struct buf *bp;
	void *copy;
	int error;

	error = fs_meta_read(ip->i_fs, blk, FLYFS_MB_EXTENT, ip->i_ino, &bp);
	if (error)
		return error;
	copy = malloc(FLYFS_BLOCK_SIZE);
	if (copy == NULL) {
		fs_meta_release(bp);
		return ENOMEM;
	}
	memcpy(copy, bp->b_data, FLYFS_BLOCK_SIZE);
	fs_meta_release(bp);
	*hp = (struct flyfs_extent_node *)(void *)((char *)copy +
	    sizeof(struct flyfs_mblock_hdr));
	error = hcheck(ip, *hp, (int)level, blk);
	if (error)
		free(copy);
	return error;
}

static void
node_copy_free(struct flyfs_extent_node *h)
{
	free((char *)h - sizeof(struct flyfs_mblock_hdr));
}

typedef int walk_fn(void *arg, const struct fs_extent *ext);

/*
 * Call FN on each record of the subtree H whose end is after FROM, in
 * order.  Returns FN's non-zero value, an errno (as a negative number,
 * to tell it apart), or 0.
 */
static int
walk(struct fs_inode *ip, struct flyfs_extent_node *h, uint64_t from,
    walk_fn *fn, void *arg)
{
	struct fs_extent e;
	unsigned n = hcount(h);
	int i, r;

	if (hlevel(h) == 0) {
		i = leaf_search(h, from);
		for (i = i < 0 ? 0 : i; i < (int)n; i++) {
			ext_get(&xrec(h)[i], &e);
			if (fs_ext_end(&e) <= from)
				continue;
			if ((r = fn(arg, &e)) != 0)
				return r;
		}
		return 0;
	}
	i = idx_search(h, from);
	for (i = i < 0 ? 0 : i; i < (int)n; i++) {
		struct flyfs_extent_node *c;
		int error;

		error = node_copy(ip, le64_get(xidx(h)[i].ei_child),
		    hlevel(h) - 1, &c);
		if (error)
			return -error;
		r = walk(ip, c, from, fn, arg);
		node_copy_free(c);
		if (r != 0)
			return r;
	}
	return 0;
}

static int
walk_from(struct fs_inode *ip, uint64_t from, walk_fn *fn, void *arg)
{
	uint64_t root[FLYFS_INODE_ROOT_SIZE / 8];
	int error, r;

	if ((error = root_copy(ip, root)) != 0)
		return error;
	r = walk(ip, (struct flyfs_extent_node *)(void *)root, from, fn, arg);
	return r;
}

static int
find_cb(void *arg, const struct fs_extent *ext)
{
	*(struct fs_extent *)arg = *ext;
	return 1;
}

int
fs_extent_find(struct fs_inode *ip, uint64_t lblk, struct fs_extent *ext)
{
	int r = walk_from(ip, lblk, find_cb, ext);

	if (r < 0)
		return -r;
	if (r > 1)
		return r;
	return r == 1 ? 0 : ENOENT;
}

int
fs_extent_iter(struct fs_inode *ip, uint64_t lblk,
    int (*fn)(void *arg, const struct fs_extent *ext), void *arg)
{
	int r = walk_from(ip, lblk, fn, arg);

	return r < 0 ? -r : r;
}

/*
 * The last record with key < B: backtracking through index records,
 * since a subtree's lower bound may be below its first key.
 */
static int
walk_last(struct fs_inode *ip, struct flyfs_extent_node *h, uint64_t b,
    struct fs_extent *out)
{
	int i, error;

	if (b == 0)
		return ENOENT;
	if (hlevel(h) == 0) {
		i = leaf_search(h, b - 1);
		if (i < 0)
			return ENOENT;
		ext_get(&xrec(h)[i], out);
		return 0;
	}
	for (i = idx_search(h, b - 1); i >= 0; i--) {
		struct flyfs_extent_node *c;

		error = node_copy(ip, le64_get(xidx(h)[i].ei_child),
		    hlevel(h) - 1, &c);
		if (error)
			return error;
		error = walk_last(ip, c, b, out);
		node_copy_free(c);
		if (error != ENOENT)
			return error;
	}
	return ENOENT;
}

static int
find_last_before(struct fs_inode *ip, uint64_t b, struct fs_extent *out)
{
	uint64_t root[FLYFS_INODE_ROOT_SIZE / 8];
	int error;

	if ((error = root_copy(ip, root)) != 0)
		return error;
	return walk_last(ip, (struct flyfs_extent_node *)(void *)root, b, out);
}

static int
count_cb(void *arg, const struct fs_extent *ext)
{
	(void)ext;
	(*(uint64_t *)arg)++;
	return 0;
}

int
fs_extent_count(struct fs_inode *ip, uint64_t *count)
{
	int r;

	*count = 0;
	pthread_mutex_lock(&ip->i_extlock);
	r = walk_from(ip, 0, count_cb, count);
	pthread_mutex_unlock(&ip->i_extlock);
	return r < 0 ? -r : r;
}

int
fs_extent_depth(struct fs_inode *ip)
{
	const struct flyfs_extent_node *h = &ip->i_din.i_ext_hdr;

	return (int)hlevel(h);
}

unsigned
fs_extent_op_cost(struct fs_inode *ip)
{
	unsigned d = (unsigned)fs_extent_depth(ip);

	/*
	 * Insert: every node of the path (d blocks and the inode) may split,
	 * each split dirtying a new block plus a bitmap and a descriptor;
	 * the root may grow by one more block.  A remove step touches the
	 * path and frees at most every node of it.
	 */
	return 4 * (d + 2) + 2;
}

/* ---- Paths of locked buffers for changes ----------------------------- */

struct xlevel {
	struct buf	*bp;		/* NULL at the root */
	uint64_t	blk;		/* 0 at the root */
	struct flyfs_extent_node *h;
	int		pos;		/* index record taken / leaf position */
	bool		dirty;
	bool		freed;		/* emptied: block to free */
};

struct xpath {
	struct fs_inode	*ip;
	struct fs_trans	*tx;
	int		n;		/* levels: 0 root .. n-1 leaf */
	struct xlevel	lv[MAX_LEVELS + 1];
	uint64_t	root[FLYFS_INODE_ROOT_SIZE / 8];
	int64_t		iblocks;	/* i_blocks change to apply */
};

static inline struct xlevel *
leaf_of(struct xpath *p)
{
	return &p->lv[p->n - 1];
}

static void
path_init(struct xpath *p, struct fs_trans *tx, struct fs_inode *ip)
{
	memset(p, 0, sizeof(*p));
	p->ip = ip;
	p->tx = tx;
}

/*
 * Lock the path from the root to the leaf where KEY belongs.  The leaf's
 * pos is the last record with key <= KEY (-1 if none).
 */
static int
path_lookup(struct xpath *p, uint64_t key)
{
	struct fs_inode *ip = p->ip;
	struct flyfs_extent_node *h;
	int error;

	if ((error = root_copy(ip, p->root)) != 0)
		return error;
	h = (struct flyfs_extent_node *)(void *)p->root;
	p->n = 1;
	p->lv[0] = (struct xlevel){ .h = h };
	while (hlevel(h) > 0) {
		struct xlevel *lv = &p->lv[p->n - 1];
		struct buf *bp;
		uint64_t child;
		int i = idx_search(h, key);

		lv->pos = i < 0 ? 0 : i;
		child = le64_get(xidx(h)[lv->pos].ei_child);
		error = fs_meta_read(ip->i_fs, child, FLYFS_MB_EXTENT, ip->i_ino,
		    &bp);
		if (error)
			return error;
		h = (struct flyfs_extent_node *)(void *)(bp->b_data +
		    sizeof(struct flyfs_mblock_hdr));
		p->lv[p->n] = (struct xlevel){ .bp = bp, .blk = child, .h = h };
		p->n++;
		if ((error = hcheck(ip, h, (int)hlevel(lv->h) - 1, child)) != 0)
			return error;
	}
	leaf_of(p)->pos = leaf_search(h, key);
	return 0;
}

/*
 * Release the path: dirty and unlock the changed blocks, store the root,
 * account i_blocks, write the inode, then free the emptied nodes (no
 * buffer of ours locked any more).  Returns ERROR or the first new one.
 */
static int
path_release(struct xpath *p, int error)
{
	struct fs_inode *ip = p->ip;
	uint64_t freed[MAX_LEVELS + 1];
	bool root_dirty = p->n > 0 && p->lv[0].dirty;
	int nfreed = 0;
	int e;

	for (int i = p->n - 1; i >= 1; i--) {
		struct xlevel *lv = &p->lv[i];

		if (lv->bp == NULL)
			continue;
		if (lv->freed)
			freed[nfreed++] = lv->blk;
		else if (lv->dirty)
			fs_trans_dirty(p->tx, lv->bp);
		fs_meta_release(lv->bp);
		lv->bp = NULL;
	}
	if (root_dirty) {
		pthread_mutex_lock(&ip->i_mtx);
		memcpy(ip->i_din.i_root_raw, p->root, FLYFS_INODE_ROOT_SIZE);
		pthread_mutex_unlock(&ip->i_mtx);
	}
	p->iblocks -= nfreed;
	iblocks_add(ip, p->iblocks);
	if (root_dirty || p->iblocks != 0) {
		e = fs_inode_dirty(p->tx, ip);
		if (error == 0)
			error = e;
	}
	for (int i = 0; i < nfreed; i++) {
		e = fs_trans_free_blocks(p->tx, freed[i], 1, FS_FREE_META);
		if (error == 0)
			error = e;
	}
	p->n = 0;
	p->iblocks = 0;
	return error;
}

/* Make the index keys above the leaf no greater than KEY (insert at 0). */
static void
lower_keys(struct xpath *p, uint64_t key)
{
	for (int l = p->n - 2; l >= 0; l--) {
		struct xlevel *lv = &p->lv[l];
		struct flyfs_extent_idx *x = &xidx(lv->h)[lv->pos];

		if (le64_get(x->ei_lblk) <= key)
			break;
		le64_set(&x->ei_lblk, key);
		lv->dirty = true;
	}
}

/*
 * Index keys are lower bounds: a removal leaves the key of the next
 * subtree where it was, possibly inside the hole that E now fills.  Every
 * record must lie below the key that follows its subtree, so if E would
 * reach past that key, lower the key to E's start.  That is safe both
 * ways: the range of E is a hole, so the left subtree has nothing at or
 * after E's start, and the right subtree's records all begin at or after
 * E's end.  Returns true if a key moved (the caller looks the path up
 * again: E now belongs to the right subtree).
 */
static bool
lower_next_key(struct xpath *p, const struct fs_extent *e)
{
	for (int l = p->n - 2; l >= 0; l--) {
		struct xlevel *lv = &p->lv[l];
		struct flyfs_extent_idx *x;

		if (lv->pos + 1 >= (int)hcount(lv->h))
			continue;
		x = &xidx(lv->h)[lv->pos + 1];
		if (le64_get(x->ei_lblk) >= fs_ext_end(e))
			return false;
		le64_set(&x->ei_lblk, e->lblk);
		lv->dirty = true;
		return true;
	}
	return false;
}

/* Insert record REC (of the node's level) at position AT of level L. */
static void
node_insert(struct xpath *p, int l, int at, const void *rec)
{
	struct xlevel *lv = &p->lv[l];
	size_t rs = recsize(hlevel(lv->h));
	char *base = (char *)(lv->h + 1);
	unsigned n = hcount(lv->h);

	KKASSERT(n < le16_get(lv->h->en_max));
	memmove(base + (size_t)(at + 1) * rs, base + (size_t)at * rs,
	    (size_t)(n - (unsigned)at) * rs);
	memcpy(base + (size_t)at * rs, rec, rs);
	hset_count(lv->h, n + 1);
	lv->dirty = true;
}

static void
node_delete(struct xpath *p, int l, int at)
{
	struct xlevel *lv = &p->lv[l];
	size_t rs = recsize(hlevel(lv->h));
	char *base = (char *)(lv->h + 1);
	unsigned n = hcount(lv->h);

	memmove(base + (size_t)at * rs, base + (size_t)(at + 1) * rs,
	    (size_t)(n - (unsigned)at - 1) * rs);
	memset(base + (size_t)(n - 1) * rs, 0, rs);
	hset_count(lv->h, n - 1);
	lv->dirty = true;
}

/* ---- Growth and splits ------------------------------------------------- */

/*
 * The root is full: move its records into new block BLK and make the
 * root an index with that one child.  The path gains a level.
 */
static int
grow(struct xpath *p, uint64_t blk)
{
	struct flyfs_extent_node *root = p->lv[0].h, *nh;
	unsigned level = hlevel(root), n = hcount(root);
	struct flyfs_extent_idx x;
	struct buf *bp;
	int error;

	if (level + 1 > FLYFS_EXT_MAX_DEPTH)
		return EFBIG;
	error = fs_meta_new(p->tx, blk, FLYFS_MB_EXTENT, p->ip->i_ino, &bp);
	if (error)
		return error;
	nh = (struct flyfs_extent_node *)(void *)(bp->b_data +
	    sizeof(struct flyfs_mblock_hdr));
	hinit(nh, false, level);
	memcpy(nh + 1, root + 1, n * recsize(level));
	hset_count(nh, n);

	memset(&x, 0, sizeof(x));
	le64_set(&x.ei_lblk, level ? le64_get(xidx(root)[0].ei_lblk) :
	    le64_get(xrec(root)[0].e_lblk));
	le64_set(&x.ei_child, blk);
	hinit(root, true, level + 1);
	memset(root + 1, 0, FLYFS_INODE_ROOT_SIZE - sizeof(*root));
	memcpy(xidx(root), &x, sizeof(x));
	hset_count(root, 1);

	memmove(&p->lv[2], &p->lv[1], (size_t)(p->n - 1) * sizeof(p->lv[0]));
	p->lv[1] = (struct xlevel){ .bp = bp, .blk = blk, .h = nh,
	    .pos = p->lv[0].pos, .dirty = true };
	p->lv[0].pos = 0;
	p->lv[0].dirty = true;
	p->n++;
	p->iblocks++;
	return 0;
}

/*
 * Level L (not the root) is full: move its upper part into new block
 * BLK and enter that in the parent (which has room: splits go top-down).
 * KEY is the key being inserted; the path follows the half it belongs
 * to.  An append (KEY after every record) moves nothing in a leaf and
 * one record in an index node, so streaming writes leave full nodes.
 */
static int
split(struct xpath *p, int l, uint64_t key, uint64_t blk)
{
	struct xlevel *lv = &p->lv[l], *up = &p->lv[l - 1];
	unsigned level = hlevel(lv->h), n = hcount(lv->h), s;
	size_t rs = recsize(level);
	struct flyfs_extent_node *nh;
	struct flyfs_extent_idx x;
	struct buf *bp;
	bool go_new;
	int error;

	if (level == 0)
		s = lv->pos + 1 == (int)n ? n : n / 2;
	else
		s = lv->pos == (int)n - 1 ? n - 1 : n / 2;

	error = fs_meta_new(p->tx, blk, FLYFS_MB_EXTENT, p->ip->i_ino, &bp);
	if (error)
		return error;
	nh = (struct flyfs_extent_node *)(void *)(bp->b_data +
	    sizeof(struct flyfs_mblock_hdr));
	hinit(nh, false, level);
	memcpy(nh + 1, (char *)(lv->h + 1) + s * rs, (n - s) * rs);
	hset_count(nh, n - s);
	memset((char *)(lv->h + 1) + s * rs, 0, (n - s) * rs);
	hset_count(lv->h, s);
	lv->dirty = true;
	p->iblocks++;

	memset(&x, 0, sizeof(x));
	if (level == 0)
		le64_set(&x.ei_lblk, s == n ? key :
		    le64_get(xrec(nh)[0].e_lblk));
	else
		le64_set(&x.ei_lblk, le64_get(xidx(nh)[0].ei_lblk));
	le64_set(&x.ei_child, blk);
	node_insert(p, l - 1, up->pos + 1, &x);

	if (level == 0)
		go_new = s == n || lv->pos + 1 > (int)s;
	else
		go_new = lv->pos >= (int)s;
	if (go_new) {
		fs_trans_dirty(p->tx, lv->bp);
		fs_meta_release(lv->bp);
		*lv = (struct xlevel){ .bp = bp, .blk = blk, .h = nh,
		    .pos = lv->pos - (int)s, .dirty = true };
		up->pos++;
	} else {
		fs_trans_dirty(p->tx, bp);
		fs_meta_release(bp);
	}
	return 0;
}

/* ---- Insert ------------------------------------------------------------ */

static bool
mergeable(const struct fs_extent *a, const struct fs_extent *b)
{
	return fs_ext_end(a) == b->lblk && a->comp == 0 && b->comp == 0 &&
	    a->flags == b->flags && a->pblk + a->plen == b->pblk &&
	    (uint64_t)a->llen + b->llen <= FLYFS_EXT_MAX_LEN;
}

/* Try to extend a neighbour in the leaf instead of adding a record. */
static bool
try_merge(struct xpath *p, const struct fs_extent *e)
{
	struct xlevel *lf = leaf_of(p);
	struct fs_extent l, r, m;
	bool ml = false, mr = false;
	int pos = lf->pos;

	if (pos >= 0) {
		ext_get(&xrec(lf->h)[pos], &l);
		ml = mergeable(&l, e);
	}
	if (pos + 1 < (int)hcount(lf->h)) {
		ext_get(&xrec(lf->h)[pos + 1], &r);
		mr = mergeable(e, &r);
	}
	if (ml && mr && (uint64_t)l.llen + e->llen + r.llen <=
	    FLYFS_EXT_MAX_LEN) {
		m = l;
		m.llen += e->llen + r.llen;
		m.plen += e->plen + r.plen;
		ext_put(&xrec(lf->h)[pos], &m);
		node_delete(p, p->n - 1, pos + 1);
	} else if (ml) {
		m = l;
		m.llen += e->llen;
		m.plen += e->plen;
		ext_put(&xrec(lf->h)[pos], &m);
	} else if (mr) {
		m = *e;
		m.llen += r.llen;
		m.plen += r.plen;
		ext_put(&xrec(lf->h)[pos + 1], &m);
		if (pos + 1 == 0)
			lower_keys(p, m.lblk);
	} else {
		return false;
	}
	lf->dirty = true;
	return true;
}

int
fs_extent_insert(struct fs_trans *tx, struct fs_inode *ip,
    const struct fs_extent *e)
{
	uint64_t pool[MAX_LEVELS + 1];
	struct fs_extent nx;
	struct flyfs_extent d;
	struct xpath p;
	int npool = 0, used = 0, need, error;

	if (e->llen == 0 || e->llen > FLYFS_EXT_MAX_LEN || e->plen == 0 ||
	    e->lblk >= MAX_LBLK || e->llen > MAX_LBLK - e->lblk)
		return EINVAL;
	/* The range must be a hole, also across leaves. */
	error = fs_extent_find(ip, e->lblk, &nx);
	if (error == 0 && nx.lblk < fs_ext_end(e))
		return EEXIST;
	if (error != 0 && error != ENOENT)
		return error;

	path_init(&p, tx, ip);
	if ((error = path_lookup(&p, e->lblk)) != 0)
		return path_release(&p, error);
	if (lower_next_key(&p, e)) {
		if ((error = path_release(&p, 0)) != 0)
			return error;
		path_init(&p, tx, ip);
		if ((error = path_lookup(&p, e->lblk)) != 0)
			return path_release(&p, error);
	}
	if (try_merge(&p, e)) {
		p.iblocks += e->plen;
		return path_release(&p, 0);
	}

	/* Blocks for the splits: allocated with no tree buffer locked. */
	need = 0;
	for (int l = 0; l < p.n; l++)
		if (hcount(p.lv[l].h) >= le16_get(p.lv[l].h->en_max))
			need++;
	if (need > 0) {
		uint64_t goal = p.lv[p.n - 1].blk ? p.lv[p.n - 1].blk :
		    ip->i_alloc_goal;

		path_release(&p, 0);
		for (npool = 0; npool < need; npool++) {
			error = fs_alloc_meta_block(tx, goal, &pool[npool]);
			if (error)
				goto out_pool;
			goal = pool[npool];
		}
		path_init(&p, tx, ip);
		if ((error = path_lookup(&p, e->lblk)) != 0)
			goto out_path;
		if (hcount(p.lv[0].h) >= le16_get(p.lv[0].h->en_max)) {
			if ((error = grow(&p, pool[used++])) != 0)
				goto out_path;
		}
		for (int l = 1; l < p.n; l++) {
			if (hcount(p.lv[l].h) < le16_get(p.lv[l].h->en_max))
				continue;
			if (used >= npool) {
				error = fs_corrupt(ip->i_fs, 0, ip->i_ino,
				    "extent tree changed under i_extlock");
				goto out_path;
			}
			if ((error = split(&p, l, e->lblk, pool[used++])) != 0)
				goto out_path;
		}
	}
	ext_put(&d, e);
	node_insert(&p, p.n - 1, leaf_of(&p)->pos + 1, &d);
	if (leaf_of(&p)->pos + 1 == 0)
		lower_keys(&p, e->lblk);
	p.iblocks += e->plen;
out_path:
	error = path_release(&p, error);
out_pool:
	while (used < npool) {
		int e2 = fs_trans_free_blocks(tx, pool[used++], 1, FS_FREE_META);

		if (error == 0)
			error = e2;
	}
	return error;
}

/* ---- Remove ------------------------------------------------------------ */

/*
 * Delete the leaf record at POS; drop nodes that become empty, and pull
 * the root's only child up into the root when it fits.
 */
static void
delete_rec(struct xpath *p, int pos)
{
	int l = p->n - 1;

	node_delete(p, l, pos);
	while (l > 0 && hcount(p->lv[l].h) == 0) {
		p->lv[l].freed = true;
		node_delete(p, l - 1, p->lv[l - 1].pos);
		l--;
	}
	if (l == 0 && hcount(p->lv[0].h) == 0 && hlevel(p->lv[0].h) > 0) {
		hinit(p->lv[0].h, true, 0);
		p->lv[0].dirty = true;
	}
}

/* The root has one child that would fit in it: take its records. */
static void
collapse(struct xpath *p)
{
	struct flyfs_extent_node *root = p->lv[0].h, *c;
	unsigned level;

	if (p->n < 2 || hlevel(root) == 0 || hcount(root) != 1 ||
	    p->lv[1].freed)
		return;
	c = p->lv[1].h;
	level = hlevel(c);
	if (hcount(c) > nmax(true, level))
		return;
	hinit(root, true, level);
	memset(root + 1, 0, FLYFS_INODE_ROOT_SIZE - sizeof(*root));
	memcpy(root + 1, c + 1, hcount(c) * recsize(level));
	hset_count(root, hcount(c));
	p->lv[0].dirty = true;
	p->lv[1].freed = true;
}

static unsigned
groups_spanned(uint64_t blk, uint64_t n)
{
	if (n == 0)
		return 0;
	return flyfs_group_of(blk + n - 1) - flyfs_group_of(blk) + 1;
}

int
fs_extent_remove(struct fs_trans *tx, struct fs_inode *ip, uint64_t lblk,
    uint64_t end, unsigned flags, unsigned *budget, uint64_t *lowest)
{
	uint64_t b = end;
	int error = 0;

	while (b > lblk) {
		struct fs_extent r, m, right;
		uint64_t x0, x1, fblk = 0, fn = 0;
		bool middle = false;
		unsigned cost;
		struct xpath p;
		int pos;

		error = find_last_before(ip, b, &r);
		if (error == ENOENT || (error == 0 && fs_ext_end(&r) <= lblk)) {
			error = 0;
			break;
		}
		if (error)
			break;
		x0 = r.lblk > lblk ? r.lblk : lblk;
		x1 = fs_ext_end(&r) < b ? fs_ext_end(&r) : b;
		if (r.comp != 0 && (x0 > r.lblk || x1 < fs_ext_end(&r))) {
			if ((flags & FS_EXT_KEEPCOMP) == 0) {
				error = EINVAL;
				break;
			}
			b = r.lblk;
			continue;
		}
		middle = x0 > r.lblk && x1 < fs_ext_end(&r);
		cost = fs_extent_op_cost(ip) * (middle ? 2 : 1);
		if (flags & FS_EXT_FREE)
			cost += 2 * groups_spanned(r.pblk, r.plen);
		if (cost > *budget) {
			*lowest = b;
			return EAGAIN;
		}
		*budget -= cost;

		path_init(&p, tx, ip);
		if ((error = path_lookup(&p, r.lblk)) != 0) {
			path_release(&p, error);
			break;
		}
		pos = leaf_of(&p)->pos;
		if (pos < 0 || le64_get(xrec(leaf_of(&p)->h)[pos].e_lblk) !=
		    r.lblk) {
			error = fs_corrupt(ip->i_fs, leaf_of(&p)->blk, ip->i_ino,
			    "extent %llu not found where it belongs",
			    (unsigned long long)r.lblk);
			path_release(&p, error);
			break;
		}
		m = r;
		if (x0 == r.lblk && x1 == fs_ext_end(&r)) {
			fblk = r.pblk;
			fn = r.plen;
			delete_rec(&p, pos);
			collapse(&p);
		} else if (x0 == r.lblk) {
			m.lblk = x1;
			m.pblk += x1 - r.lblk;
			m.llen -= (uint32_t)(x1 - r.lblk);
			m.plen = m.llen;
			fblk = r.pblk;
			fn = x1 - r.lblk;
			ext_put(&xrec(leaf_of(&p)->h)[pos], &m);
			leaf_of(&p)->dirty = true;
		} else {
			m.llen = (uint32_t)(x0 - r.lblk);
			m.plen = m.llen;
			fblk = r.pblk + (x0 - r.lblk);
			fn = x1 - x0;
			ext_put(&xrec(leaf_of(&p)->h)[pos], &m);
			leaf_of(&p)->dirty = true;
			if (middle) {
				right = r;
				right.lblk = x1;
				right.pblk = r.pblk + (x1 - r.lblk);
				right.llen = (uint32_t)(fs_ext_end(&r) - x1);
				right.plen = right.llen;
				/* The right piece re-enters through insert. */
				p.iblocks -= fs_ext_end(&r) - x0;
			}
		}
		if (!middle)
			p.iblocks -= (int64_t)fn;
		error = path_release(&p, 0);
		if (error == 0 && middle)
			error = fs_extent_insert(tx, ip, &right);
		if (error == 0 && (flags & FS_EXT_FREE) && fn > 0)
			error = fs_trans_free_blocks(tx, fblk, fn, 0);
		if (error)
			break;
		b = x0;
	}
	*lowest = error ? b : lblk;
	return error;
}
