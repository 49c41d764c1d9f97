/*
 * fsck_dir.c - fsck.flyfs passes 2 to 4: the namespace.
 *
 * This module owns everything about names: pass 2 walks every directory
 * tree (node levels and bounds, the leaf chain, keys against name
 * hashes, names, entry targets and types, entry counts) and records the
 * links it finds; lost+found (finding it, checking it is usable, linking
 * inodes into it); pass 3, connectivity (a walk from the root, extra
 * links to directories, unreachable directories, ".." against
 * dr_parent); pass 4, link counts, unattached inodes and orphans.  When
 * some directory could not be walked (names_unknown), no link count is
 * lowered and nothing is moved to lost+found.
 */
#include "fs/fsck_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DIR_MAX_LEVELS	10		/* as dir.c */
#define DIR_IDX_MAX	(FLYFS_DIR_LEAF_SPACE / sizeof(struct flyfs_dir_idx))
#define DIR_REC_OFF	(sizeof(struct flyfs_mblock_hdr) + \
			    sizeof(struct flyfs_dir_node))
#define LF_NAME		"lost+found"

/* ---- Pass 2: directory trees ---------------------------------------------- */

struct dwalk {
	uint64_t ino;
	uint64_t blocks;
	uint64_t entries;
	uint64_t last_key;
	uint64_t last_leaf;
	uint64_t prev_next;		/* dn_next of the last leaf */
	bool bad;
	/* names of the current hash run, to find repeated names */
	char names[8][FLYFS_NAME_MAX];
	uint8_t lens[8];
	unsigned nnames;
	uint32_t run_hash;
};

/* Remove the entry with KEY from leaf LEAF of directory DIR on disk. */
static bool
dir_remove_entry(struct fsck *f, uint64_t dir, uint64_t leaf, uint64_t key)
{
	struct flyfs_dir_node *dn;
	uint8_t *recs;
	unsigned used, off = 0;
	char err[256];

	if (fsck_read_mblock(f, leaf, FLYFS_MB_DIR, dir, f->buf, err,
	    sizeof(err)) != 0 && f->mode != FLYFS_FSCK_NO) {
		fsck_unfixed(f, "%s", err);
		return false;
	}
	dn = (void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	recs = (uint8_t *)(dn + 1);
	used = le16_get(dn->dn_used);
	while (off < used) {
		struct flyfs_dirent *de = (void *)(recs + off);
		unsigned sz = (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);

		if (le64_get(de->de_key) == key) {
			memmove(recs + off, recs + off + sz, used - off - sz);
			memset(recs + used - sz, 0, sz);
			le16_set(&dn->dn_used, (uint16_t)(used - sz));
			le16_set(&dn->dn_count,
			    (uint16_t)(le16_get(dn->dn_count) - 1));
			fsck_reseal_block(f, leaf, f->buf);
			f->ii[dir].entries--;
			if (f->ii[dir].dentries > 0) {
				f->ii[dir].dentries--;
				fsck_inode_fix(f, dir, IF_ENTRIES,
				    f->ii[dir].dentries);
			}
			return true;
		}
		off += sz;
	}
	fsck_unfixed(f, "entry not found again in block %" PRIu64, leaf);
	return false;
}

static bool
name_ok(const char *name, unsigned len)
{
	if (memchr(name, '/', len) != NULL || memchr(name, 0, len) != NULL)
		return false;
	return !(len == 1 && name[0] == '.') &&
	    !(len == 2 && name[0] == '.' && name[1] == '.');
}

/* Check one leaf's records; count entries, record links and edges. */
static int
dir_leaf(struct fsck *f, struct dwalk *d, uint64_t blk, uint8_t *b,
    uint64_t lo, uint64_t hi)
{
	const struct flyfs_dir_node *dn = (const void *)(b +
	    sizeof(struct flyfs_mblock_hdr));
	const uint8_t *recs = (const uint8_t *)(dn + 1);
	unsigned used = le16_get(dn->dn_used), count = le16_get(dn->dn_count);
	unsigned off = 0, k = 0;
	struct { uint64_t key; char what[320]; enum fixkind kind; }
	    drops[32];
	unsigned ndrops = 0;

	if (used > FLYFS_DIR_LEAF_SPACE || used % 8 != 0) {
		fsck_problem(f, FIX_NEVER, "directory %" PRIu64 ": leaf %"
		    PRIu64 " says %u bytes are in use", d->ino, blk, used);
		d->bad = true;
		return 0;
	}
	while (off < used) {
		const struct flyfs_dirent *de = (const void *)(recs + off);
		unsigned sz, len;
		uint64_t key, target;
		uint32_t hash;
		char name[FLYFS_NAME_MAX + 1];
		const struct iinfo *t;

		if (used - off < sizeof(*de) ||
		    (sz = (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len)) >
		    used - off || de->de_name_len == 0) {
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    ": leaf %" PRIu64
			    " has a record cut short at byte %u", d->ino, blk,
			    off);
			d->bad = true;
			return 0;
		}
		len = de->de_name_len;
		memcpy(name, de->de_name, len);
		name[len] = '\0';
		key = le64_get(de->de_key);
		target = le64_get(de->de_ino);
		hash = FLYFS_DIR_HASH_MAJOR(key);
		if (key < lo || key >= hi || key <= d->last_key ||
		    key >= (1ULL << 63)) {
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    ": key 0x%" PRIx64 " of \"%s\" is out of order",
			    d->ino, key, name);
			d->bad = true;
			return 0;
		}
		d->last_key = key;
		off += sz;
		k++;
		d->entries++;
		if (!name_ok(name, len) || hash != flyfs_dir_hash(
		    f->sb.hash_key, name, len)) {
			if (ndrops < 32) {
				drops[ndrops].key = key;
				drops[ndrops].kind = FIX_YES;
				snprintf(drops[ndrops++].what, 320, "entry "
				    "\"%s\" %s", name, !name_ok(name, len) ?
				    "has an impossible name" :
				    "is stored under the wrong hash");
			}
			continue;
		}
		if (hash != d->run_hash) {
			d->run_hash = hash;
			d->nnames = 0;
		}
		for (unsigned i = 0; i < d->nnames && i < 8; i++) {
			if (d->lens[i] == len &&
			    memcmp(d->names[i], name, len) == 0 &&
			    ndrops < 32) {
				drops[ndrops].key = key;
				drops[ndrops].kind = FIX_YES;
				snprintf(drops[ndrops++].what, 320, "entry "
				    "\"%s\" repeats a name", name);
				goto next;
			}
		}
		if (d->nnames < 8) {
			memcpy(d->names[d->nnames], name, len);
			d->lens[d->nnames++] = (uint8_t)len;
		}
		t = target < f->ninodes ? &f->ii[target] : NULL;
		if (t == NULL || t->type == 0 || target == FLYFS_INO_ROOT ||
		    (target < FLYFS_FIRST_INO)) {
			if (ndrops < 32) {
				drops[ndrops].key = key;
				drops[ndrops].kind = FIX_PREEN;
				snprintf(drops[ndrops++].what, 320, "entry "
				    "\"%s\" points to %s inode %" PRIu64, name,
				    target == FLYFS_INO_ROOT ? "the root" :
				    target < FLYFS_FIRST_INO ? "reserved" :
				    t == NULL ? "nonexistent" : "free",
				    target);
			}
			continue;
		}
		if (t->flags & IF_BAD)
			continue;
		if (de->de_type != t->type) {
			/* Reported; the type byte is informational. */
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    ": entry \"%s\" says type %u but inode %" PRIu64
			    " is type %u", d->ino, name, de->de_type, target,
			    t->type);
		}
		if (t->type == DT_DIR) {
			if (f->nedges == f->capedge) {
				size_t c = f->capedge ? f->capedge * 2 : 256;
				struct dedge *p = realloc(f->edges,
				    c * sizeof(*p));
				if (p == NULL)
					return ENOMEM;
				f->edges = p;
				f->capedge = c;
			}
			f->edges[f->nedges++] = (struct dedge){ d->ino,
			    target, blk, key, false };
			if (d->ino == FLYFS_INO_ROOT && len == 10 &&
			    memcmp(name, LF_NAME, 10) == 0)
				f->lostfound = target;
		} else {
			f->ii[target].links++;
		}
next:		;
	}
	if (k != count) {
		if (fsck_problem(f, FIX_PREEN, "directory %" PRIu64 ": leaf %"
		    PRIu64 " says %u records but holds %u", d->ino, blk,
		    count, k)) {
			struct flyfs_dir_node *w = (void *)(b +
			    sizeof(struct flyfs_mblock_hdr));
			le16_set(&w->dn_count, (uint16_t)k);
			fsck_reseal_block(f, blk, b);
		}
	}
	for (unsigned i = 0; i < ndrops; i++)
		if (fsck_problem(f, drops[i].kind, "directory %" PRIu64
		    ": %s; it is removed", d->ino, drops[i].what))
			dir_remove_entry(f, d->ino, blk, drops[i].key);
		else if (drops[i].kind == FIX_YES)
			f->names_unknown = true;
	return 0;
}

static int
dir_node(struct fsck *f, struct dwalk *d, uint64_t blk, int level,
    uint64_t lo, uint64_t hi, bool root)
{
	char err[256];
	uint8_t *b;
	const struct flyfs_dir_node *dn;
	int error, rc = 0;

	b = blockdev_alloc_buf(f->bd, BS);
	if (b == NULL)
		return ENOMEM;
	error = fsck_read_mblock(f, blk, FLYFS_MB_DIR, d->ino, b, err,
	    sizeof(err));
	dn = (const void *)(b + sizeof(struct flyfs_mblock_hdr));
	if (error == EBADMSG && le16_get(dn->dn_level) == level) {
		if (fsck_problem(f, FIX_PREEN, "directory %" PRIu64 ": %s",
		    d->ino, err))
			fsck_reseal_block(f, blk, b);
		error = 0;
	}
	if (error == 0 && le16_get(dn->dn_level) != level)
		error = flyfs_error(err, sizeof(err), EUCLEAN, "block %" PRIu64
		    " is at level %u, expected %d", blk,
		    le16_get(dn->dn_level), level);
	if (error != 0) {
		fsck_problem(f, FIX_NEVER, "directory %" PRIu64 ": %s", d->ino,
		    err);
		d->bad = true;
		goto out;
	}
	d->blocks++;
	if ((rc = fsck_add_run(f, blk, 1, d->ino)) != 0)
		goto out;
	if (level == 0) {
		if (d->last_leaf != 0 && d->prev_next != blk)
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    ": leaf %" PRIu64
			    " is not chained to the next leaf %" PRIu64, d->ino,
			    d->last_leaf, blk);
		d->prev_next = le64_get(dn->dn_next);
		if (!root && le16_get(dn->dn_count) == 0)
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    ": leaf %" PRIu64 " is empty but not the root",
			    d->ino, blk);
		d->last_leaf = blk;
		rc = dir_leaf(f, d, blk, b, lo, hi);
		goto out;
	}
	{
		unsigned n = le16_get(dn->dn_count);
		struct flyfs_dir_idx ix[DIR_IDX_MAX];

		if (n > DIR_IDX_MAX || n == 0 || (root && n < 2)) {
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    ": index block %" PRIu64 " holds %u records",
			    d->ino, blk, n);
			d->bad = true;
			goto out;
		}
		memcpy(ix, dn + 1, n * sizeof(ix[0]));
		for (unsigned i = 0; i < n && rc == 0 && !d->bad; i++) {
			uint64_t k = le64_get(ix[i].di_key);
			uint64_t khi = i + 1 < n ? le64_get(ix[i + 1].di_key) :
			    hi;
			uint64_t child = le64_get(ix[i].di_child);

			if (k < lo || k >= khi || khi > hi) {
				fsck_problem(f, FIX_NEVER, "directory %" PRIu64
				    ": index block %" PRIu64 " has keys out "
				    "of order", d->ino, blk);
				d->bad = true;
				break;
			}
			rc = dir_node(f, d, child, level - 1, k, khi, false);
		}
	}
out:
	blockdev_free_buf(b);
	return rc;
}

int
fsck_pass2_dir(struct fsck *f, uint64_t ino)
{
	struct flyfs_inode in;
	struct dwalk *d;
	uint64_t root;
	unsigned levels;
	int rc = 0;

	if (fsck_inode_read(f, ino, &in) != 0)
		return 0;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return ENOMEM;
	d->ino = ino;
	d->run_hash = 0;
	root = le64_get(in.i_dir.dr_root);
	levels = le16_get(in.i_dir.dr_levels);
	if (root == 0) {
		if (levels != 0)
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    " has no tree but says %u levels", ino, levels);
	} else if (levels == 0 || levels > DIR_MAX_LEVELS) {
		fsck_problem(f, FIX_NEVER, "directory %" PRIu64 " has an "
		    "impossible height %u", ino, levels);
		d->bad = true;
	} else {
		rc = dir_node(f, d, root, (int)levels - 1, 0, UINT64_MAX, true);
		if (rc == 0 && !d->bad && d->prev_next != 0)
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    ": its last leaf %" PRIu64
			    " points to a next leaf %" PRIu64, ino,
			    d->last_leaf, d->prev_next);
	}
	f->ii[ino].entries += d->entries;
	if (d->bad) {
		f->names_unknown = true;
		f->blocks_unknown = true;
	} else {
		f->ii[ino].flags |= IF_WALKED;
		if (le64_get(in.i_size) != d->blocks * BS &&
		    fsck_problem(f, FIX_PREEN, "directory %" PRIu64
		    ": size is %" PRIu64 " but its tree has %" PRIu64 " blocks",
		    ino, le64_get(in.i_size), d->blocks))
			fsck_inode_fix(f, ino, IF_SIZE, d->blocks * BS);
		if (le64_get(in.i_blocks) != d->blocks +
		    (le64_get(in.i_xattr_block) != 0) &&
		    fsck_problem(f, FIX_PREEN, "directory %" PRIu64
		    ": i_blocks is %" PRIu64 " but it holds %" PRIu64 " blocks",
		    ino, le64_get(in.i_blocks), d->blocks +
		    (le64_get(in.i_xattr_block) != 0)))
			fsck_inode_fix(f, ino, IF_BLOCKS, d->blocks +
			    (le64_get(in.i_xattr_block) != 0));
	}
	free(d);
	return rc;
}

/* ---- lost+found ------------------------------------------------------------ */

/* Find /lost+found's single leaf; false (said why) if it cannot be used. */
static bool
lf_usable(struct fsck *f, char *why, size_t whylen)
{
	struct flyfs_inode in;

	if (f->lf_leaf != 0)
		return true;
	if (f->lostfound == 0 || f->lostfound >= f->ninodes ||
	    f->ii[f->lostfound].type != DT_DIR ||
	    (f->ii[f->lostfound].flags & IF_BAD)) {
		snprintf(why, whylen, "there is no /lost+found");
		return false;
	}
	if (fsck_inode_read(f, f->lostfound, &in) != 0 ||
	    le64_get(in.i_dir.dr_root) == 0 ||
	    le16_get(in.i_dir.dr_levels) != 1) {
		snprintf(why, whylen, "/lost+found is not a single-block "
		    "directory (fsck does not allocate)");
		return false;
	}
	f->lf_leaf = le64_get(in.i_dir.dr_root);
	return true;
}

/*
 * Link inode INO (DT_* TYPE) into /lost+found as "#INO", with the lowest
 * free minor of its hash.  Updates lost+found's inode (entries, and nlink
 * for a directory) at once so pass 4 sees a consistent lost+found.
 */
static bool
lf_link(struct fsck *f, uint64_t ino, unsigned type)
{
	char name[32], why[256];
	struct flyfs_dir_node *dn;
	struct flyfs_dirent *de;
	uint8_t *recs;
	unsigned len, used, off = 0, at = 0, sz;
	uint32_t hash, minor = 0;
	uint64_t key, lf = f->lostfound;
	bool have_at = false;

	if (!lf_usable(f, why, sizeof(why))) {
		fsck_unfixed(f, "%s", why);
		return false;
	}
	len = (unsigned)snprintf(name, sizeof(name), "#%" PRIu64, ino);
	hash = flyfs_dir_hash(f->sb.hash_key, name, len);
	if (fsck_read_mblock(f, f->lf_leaf, FLYFS_MB_DIR, lf, f->buf, why,
	    sizeof(why)) != 0) {
		fsck_unfixed(f, "/lost+found: %s", why);
		return false;
	}
	dn = (void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	recs = (uint8_t *)(dn + 1);
	used = le16_get(dn->dn_used);
	sz = (unsigned)FLYFS_DIRENT_SIZE(len);
	if (used > FLYFS_DIR_LEAF_SPACE || sz > FLYFS_DIR_LEAF_SPACE - used) {
		fsck_unfixed(f, "/lost+found is full");
		return false;
	}
	/* Minors of this hash are consecutive keys: take the lowest gap. */
	while (off < used) {
		de = (void *)(recs + off);
		key = le64_get(de->de_key);
		if (FLYFS_DIR_HASH_MAJOR(key) == hash) {
			if ((uint32_t)key == minor)
				minor++;
			if (de->de_name_len == len &&
			    memcmp(de->de_name, name, len) == 0) {
				fsck_unfixed(f, "/lost+found already has %s",
				    name);
				return false;
			}
		}
		off += (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
	}
	key = FLYFS_DIR_KEY(hash, minor);
	for (off = 0; off < used && !have_at; ) {
		de = (void *)(recs + off);
		if (le64_get(de->de_key) > key) {
			at = off;
			have_at = true;
		} else {
			off += (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
		}
	}
	if (!have_at)
		at = used;
	memmove(recs + at + sz, recs + at, used - at);
	memset(recs + at, 0, sz);
	de = (void *)(recs + at);
	le64_set(&de->de_key, key);
	le64_set(&de->de_ino, ino);
	de->de_name_len = (uint8_t)len;
	de->de_type = (uint8_t)type;
	memcpy(de->de_name, name, len);
	le16_set(&dn->dn_used, (uint16_t)(used + sz));
	le16_set(&dn->dn_count, (uint16_t)(le16_get(dn->dn_count) + 1));
	fsck_reseal_block(f, f->lf_leaf, f->buf);
	f->ii[lf].entries++;
	f->ii[lf].dentries++;
	fsck_inode_fix(f, lf, IF_ENTRIES, f->ii[lf].dentries);
	if (type == DT_DIR) {
		f->ii[lf].subdirs++;
		if (f->ii[lf].nlink == 2 + f->ii[lf].subdirs - 1) {
			f->ii[lf].nlink++;
			fsck_inode_fix(f, lf, IF_NLINK, f->ii[lf].nlink);
		}
	}
	return true;
}

/* ---- Pass 3: connectivity ----------------------------------------------- */

static int
cmp_edge(const void *a, const void *b)
{
	const struct dedge *x = a, *y = b;

	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* First edge of PARENT in the sorted edge array. */
static size_t
edges_of(struct fsck *f, uint64_t parent)
{
	size_t lo = 0, hi = f->nedges;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->edges[mid].parent < parent)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Breadth-first from START (already reached): reach what it contains. */
static void
reach_from(struct fsck *f, uint64_t start, uint64_t *queue)
{
	size_t head = 0, tail = 0;

	queue[tail++] = start;
	while (head < tail) {
		uint64_t d = queue[head++];

		for (size_t i = edges_of(f, d); i < f->nedges &&
		    f->edges[i].parent == d; i++) {
			struct dedge *e = &f->edges[i];
			struct iinfo *c = &f->ii[e->child];

			if (c->flags & IF_REACHED) {
				e->bad = true;
				continue;
			}
			c->flags |= IF_REACHED;
			c->parent = d;
			f->ii[d].subdirs++;
			queue[tail++] = e->child;
		}
	}
}

/* The name of the entry KEY in leaf LEAF of DIR, for messages. */
static void
entry_name(struct fsck *f, uint64_t dir, uint64_t leaf, uint64_t key,
    char *name, size_t namelen)
{
	const struct flyfs_dir_node *dn;
	const uint8_t *recs;
	unsigned used, off = 0;
	char err[128];

	snprintf(name, namelen, "?");
	if (fsck_read_mblock(f, leaf, FLYFS_MB_DIR, dir, f->buf, err,
	    sizeof(err)) == EUCLEAN)
		return;
	dn = (const void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	recs = (const uint8_t *)(dn + 1);
	used = le16_get(dn->dn_used);
	if (used > FLYFS_DIR_LEAF_SPACE)
		return;
	while (off + sizeof(struct flyfs_dirent) <= used) {
		const struct flyfs_dirent *de = (const void *)(recs + off);
		if (off + FLYFS_DIRENT_SIZE(de->de_name_len) > used)
			return;
		if (le64_get(de->de_key) == key) {
			snprintf(name, namelen, "%.*s", de->de_name_len,
			    de->de_name);
			return;
		}
		off += (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
	}
}

static bool
is_orphan(const struct iinfo *ii)
{
	return ii->nlink == 0 && (ii->flags & (IF_LISTED | IF_ORPHAN));
}

int
fsck_pass3_connect(struct fsck *f)
{
	uint64_t *queue = calloc(f->nedges + 2, sizeof(*queue));
	uint64_t *up = NULL;
	uint32_t *stamp = NULL;
	char name[FLYFS_NAME_MAX + 1];

	if (queue == NULL)
		return ENOMEM;
	qsort(f->edges, f->nedges, sizeof(*f->edges), cmp_edge);
	f->ii[FLYFS_INO_ROOT].flags |= IF_REACHED;
	f->ii[FLYFS_INO_ROOT].parent = FLYFS_INO_ROOT;
	reach_from(f, FLYFS_INO_ROOT, queue);

	/* Unreachable directories: connect the top of each cut subtree. */
	up = calloc(f->ninodes, sizeof(*up));
	stamp = calloc(f->ninodes, sizeof(*stamp));
	if (up == NULL || stamp == NULL) {
		free(queue);
		free(up);
		free(stamp);
		return ENOMEM;
	}
	for (size_t i = 0; i < f->nedges; i++)
		if (up[f->edges[i].child] == 0)
			up[f->edges[i].child] = f->edges[i].parent;
	for (uint64_t ino = FLYFS_FIRST_INO; ino < f->ninodes; ino++) {
		struct iinfo *ii = &f->ii[ino];
		uint64_t top = ino;

		if (ii->type != DT_DIR || (ii->flags & (IF_REACHED | IF_BAD)) ||
		    is_orphan(ii))
			continue;
		/* Up through unreached parents until none, or a loop. */
		stamp[top] = (uint32_t)ino;
		while (up[top] != 0 && !(f->ii[up[top]].flags & IF_REACHED) &&
		    !(f->ii[up[top]].flags & IF_BAD) &&
		    stamp[up[top]] != (uint32_t)ino) {
			top = up[top];
			stamp[top] = (uint32_t)ino;
		}
		if (f->names_unknown) {
			fsck_problem(f, FIX_NEVER, "directory %" PRIu64
			    " is not reachable from the root (left: some "
			    "directories could not be read)", top);
		} else if (fsck_problem(f, FIX_PREEN, "directory %" PRIu64
		    " is not reachable from the root%s; it is linked into "
		    "/lost+found as #%" PRIu64, top, up[top] != 0 ?
		    " (it is part of a directory loop)" : "", top) &&
		    lf_link(f, top, DT_DIR)) {
			f->ii[top].flags |= IF_REACHED;
			f->ii[top].parent = f->lostfound;
			reach_from(f, top, queue);
			continue;
		}
		/* Not connected: check below it anyway, parent unknown. */
		f->ii[top].flags |= IF_REACHED;
		f->ii[top].parent = 0;
		reach_from(f, top, queue);
	}

	/* Extra links to directories (loops, hard links). */
	for (size_t i = 0; i < f->nedges; i++) {
		struct dedge *e = &f->edges[i];

		if (!e->bad)
			continue;
		entry_name(f, e->parent, e->leaf, e->key, name, sizeof(name));
		if (fsck_problem(f, FIX_PREEN, "directory %" PRIu64
		    ": entry \"%s\" is a second link to directory %" PRIu64
		    "%s; it is removed", e->parent, name, e->child,
		    f->ii[e->child].parent == e->parent ? "" :
		    " (a directory loop)"))
			dir_remove_entry(f, e->parent, e->leaf, e->key);
	}

	/* ".." against where each directory was found. */
	for (uint64_t ino = FLYFS_INO_ROOT; ino < f->ninodes; ino++) {
		struct iinfo *ii = &f->ii[ino];

		if (ii->type != DT_DIR || !(ii->flags & IF_REACHED) ||
		    ii->parent == 0 || ii->dparent == ii->parent)
			continue;
		if (fsck_problem(f, FIX_PREEN, "directory %" PRIu64
		    ": \"..\" is inode %" PRIu64 " but it is in directory %"
		    PRIu64, ino, ii->dparent, ii->parent)) {
			fsck_inode_fix(f, ino, IF_PARENT, ii->parent);
			ii->dparent = ii->parent;
		}
	}
	free(queue);
	free(up);
	free(stamp);
	return 0;
}

/* ---- Pass 4: link counts and orphans --------------------------------------- */

static void
check_nlink(struct fsck *f, uint64_t ino, uint32_t want)
{
	struct iinfo *ii = &f->ii[ino];

	if (ii->nlink == want)
		return;
	if (f->names_unknown && want < ii->nlink) {
		fsck_problem(f, FIX_NEVER, "inode %" PRIu64 ": link count is %"
		    PRIu32 " but %" PRIu32 " links were found (not lowered: "
		    "some directories could not be read)", ino, ii->nlink,
		    want);
		return;
	}
	if (fsck_problem(f, FIX_PREEN, "inode %" PRIu64 ": link count is %"
	    PRIu32 " but %" PRIu32 " link%s found", ino, ii->nlink, want,
	    want == 1 ? " was" : "s were")) {
		fsck_inode_fix(f, ino, IF_NLINK, want);
		ii->nlink = want;
	}
}

void
fsck_pass4_links(struct fsck *f)
{
	for (uint64_t ino = FLYFS_INO_ROOT; ino < f->ninodes; ino++) {
		struct iinfo *ii = &f->ii[ino];

		if (ii->type == 0 || (ii->flags & IF_BAD) ||
		    (ino < FLYFS_FIRST_INO && ino != FLYFS_INO_ROOT))
			continue;
		if (is_orphan(ii) && (ii->type == DT_DIR ?
		    !(ii->flags & IF_REACHED) : ii->links == 0)) {
			f->r->orphans++;
			if (f->mode == FLYFS_FSCK_NO) {
				fsck_info(f, "inode %" PRIu64
				    " is an orphan (deleted while open); the "
				    "next mount reclaims it", ino);
				continue;
			}
			f->r->found++;
			f->r->fixed++;
			f->r->orphans_reclaimed++;
			fsck_info(f, "inode %" PRIu64
			    " is an orphan (deleted while open); reclaimed",
			    ino);
			fsck_inode_fix(f, ino, IF_ZERO, 0);
			ii->flags |= IF_RECLAIM;
			ii->type = 0;
			continue;
		}
		if (ii->type == DT_DIR) {
			if (ii->flags & IF_WALKED && ii->entries != ii->dentries
			    && fsck_problem(f, FIX_PREEN, "directory %" PRIu64
			    " says it has %" PRIu64 " entr%s but %" PRIu64
			    " %s found", ino, ii->dentries, ii->dentries == 1 ?
			    "y" : "ies", ii->entries, ii->entries == 1 ?
			    "was" : "were")) {
				fsck_inode_fix(f, ino, IF_ENTRIES, ii->entries);
				ii->dentries = ii->entries;
			}
			if (ii->flags & IF_REACHED)
				check_nlink(f, ino, 2 + ii->subdirs);
			continue;
		}
		if (ii->links == 0) {
			if (f->names_unknown) {
				fsck_problem(f, FIX_NEVER, "inode %" PRIu64
				    " is not in any directory (left: some "
				    "directories could not be read)", ino);
				continue;
			}
			if (fsck_problem(f, FIX_PREEN, "inode %" PRIu64
			    " is not in any directory; it is linked into "
			    "/lost+found as #%" PRIu64, ino, ino) &&
			    lf_link(f, ino, ii->type))
				ii->links = 1;
			else
				continue;
		}
		check_nlink(f, ino, ii->links);
		if ((ii->flags & IF_ORPHAN) && ii->links > 0 &&
		    fsck_problem(f, FIX_PREEN, "inode %" PRIu64
		    " is marked as an orphan but is linked", ino)) {
			fsck_inode_fix(f, ino, IF_CLEAR_ORPHAN, 0);
			ii->flags &= ~IF_ORPHAN;
		}
	}
}
