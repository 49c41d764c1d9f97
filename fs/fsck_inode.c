/*
 * fsck_inode.c - fsck.flyfs pass 1: inodes and what hangs off them.
 *
 * This module owns the inode file (mapping inode numbers to blocks,
 * reading, writing and repairing single fields of an inode) and pass 1:
 * the system files (the inode file, the inode bitmap, the orphan file),
 * then every inode slot: checksum, number, type, flags, sizes and
 * i_blocks; extent trees (node levels and bounds, records sorted and in
 * range, compressed extents decompressed), symlink targets and xattr
 * blocks.  Every block an inode uses is recorded as a run with its owner
 * (fsck_add_run), for pass 5; a tree that cannot be walked sets
 * blocks_unknown so that nothing is freed later.
 */
#include "fs/fsck_int.h"
#include "fs/compress.h"	/* the codec: only compress.c includes zstd.h */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- Inode file --------------------------------------------------------- */

/* Physical block holding logical block LBLK of the inode file, 0 if none. */
static uint64_t
ifile_bmap(struct fsck *f, uint64_t lblk)
{
	size_t lo = 0, hi = f->nifx;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct flyfs_extent *e = &f->ifx[mid];
		uint64_t el = le64_get(e->e_lblk);

		if (lblk < el)
			hi = mid;
		else if (lblk >= el + le32_get(e->e_llen))
			lo = mid + 1;
		else
			return le64_get(e->e_pblk) + (lblk - el);
	}
	return 0;
}

/* Read inode INO into *OUT (raw, unchecked). */
int
fsck_inode_read(struct fsck *f, uint64_t ino, struct flyfs_inode *out)
{
	uint64_t pb = ifile_bmap(f, ino / FLYFS_INODES_PER_BLOCK);
	int error;

	if (pb == 0)
		return ENXIO;
	if ((error = fsck_read_blocks(f, pb, 1, f->buf2)) != 0)
		return error;
	memcpy(out, f->buf2 + (ino % FLYFS_INODES_PER_BLOCK) * FLYFS_INODE_SIZE,
	    sizeof(*out));
	return 0;
}

/* Write IN as inode INO (sealed unless it is a free slot). */
static int
inode_write(struct fsck *f, uint64_t ino, struct flyfs_inode *in)
{
	uint64_t pb = ifile_bmap(f, ino / FLYFS_INODES_PER_BLOCK);
	int error;

	if (pb == 0)
		return ENXIO;
	if ((error = fsck_read_blocks(f, pb, 1, f->buf2)) != 0)
		return error;
	if (!flyfs_inode_is_free(in))
		flyfs_inode_seal(in, f->sb.csum_seed);
	memcpy(f->buf2 + (ino % FLYFS_INODES_PER_BLOCK) * FLYFS_INODE_SIZE, in,
	    sizeof(*in));
	return fsck_write_block(f, pb, f->buf2);
}

/* Set FIELD of inode INO to V (enum ifield) and write it back. */
void
fsck_inode_fix(struct fsck *f, uint64_t ino, enum ifield field, uint64_t v)
{
	struct flyfs_inode in;
	int error;

	if ((error = fsck_inode_read(f, ino, &in)) != 0) {
		fsck_unfixed(f, "inode %" PRIu64 " unreadable: %s", ino,
		    strerror(error));
		return;
	}
	switch (field) {
	case IF_NLINK:
		le32_set(&in.i_nlink, (uint32_t)v);
		break;
	case IF_PARENT:
		le64_set(&in.i_dir.dr_parent, v);
		break;
	case IF_ENTRIES:
		le64_set(&in.i_dir.dr_entries, v);
		break;
	case IF_BLOCKS:
		le64_set(&in.i_blocks, v);
		break;
	case IF_SIZE:
		le64_set(&in.i_size, v);
		break;
	case IF_CLEAR_ORPHAN:
		le32_set(&in.i_flags, le32_get(in.i_flags) & ~FLYFS_IFL_ORPHAN);
		break;
	case IF_RESEAL:
		break;
	case IF_ZERO:
		memset(&in, 0, sizeof(in));
		break;
	}
	if ((error = inode_write(f, ino, &in)) != 0)
		fsck_unfixed(f, "inode %" PRIu64 " not written: %s", ino,
		    strerror(error));
}

/* ---- Extent trees --------------------------------------------------------- */

/* What walking one inode's extent tree found. */
struct ewalk {
	uint64_t ino;
	const struct flyfs_inode *in;
	uint64_t data_blocks;		/* physical blocks of data */
	uint64_t node_blocks;		/* FEXT blocks */
	uint64_t lend;			/* end of the last extent, blocks */
	uint64_t written_end;		/* end of the last written extent */
	uint64_t prev_end;		/* for the order check */
	bool first;
	bool bad;			/* something was not usable */
	bool
	    collect;			/* keep the leaf records (system files) */
	bool
	    norun;			/* do not record blocks (a first look) */
	struct flyfs_extent *ext;
	size_t next, capext;
	/* a record to drop: node block (0 = the inode) and its index */
	uint64_t drop_node;
	int drop_idx;
	bool drop_index_rec;
};

/* Decompress the frame of compressed extent E; false if it is wrong. */
static bool
zstd_verify(struct fsck *f, const struct flyfs_extent *e, char *why,
    size_t whylen)
{
	uint32_t plen = le32_get(e->e_plen), llen = le32_get(e->e_llen);
	uint32_t cb = le32_get(e->e_cbytes);
	uint8_t *src, *dst;
	bool ok = false;
	int error;

	src = blockdev_alloc_buf(f->bd, (size_t)plen * BS);
	dst = malloc((size_t)llen * BS);
	if (src == NULL || dst == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (fsck_read_blocks(f, le64_get(e->e_pblk), plen, src) != 0) {
		snprintf(why, whylen, "its blocks cannot be read");
		goto out;
	}
	/*
	 * The read path's own check: one frame of exactly e_cbytes, whose
	 * content is exactly e_llen blocks with a good checksum.
	 */
	error = fs_zstd_decompress(src, cb, dst, (size_t)llen * BS);
	if (error == ENOMEM)
		snprintf(why, whylen, "out of memory");
	else if (error != 0)
		snprintf(why, whylen, "its zstd frame is damaged or does not "
		    "decompress to exactly %" PRIu64 " bytes",
		    (uint64_t)llen * BS);
	else
		ok = true;
out:
	blockdev_free_buf(src);
	free(dst);
	return ok;
}

/*
 * Check one leaf record.  Returns NULL if it is valid, else why not.
 */
static const char *
extent_invalid(struct fsck *f, struct ewalk *w, const struct flyfs_extent *e,
    uint64_t lo, uint64_t hi, char *why, size_t whylen)
{
	uint64_t lb = le64_get(e->e_lblk), pb = le64_get(e->e_pblk);
	uint32_t ll = le32_get(e->e_llen), pl = le32_get(e->e_plen);
	uint32_t cb = le32_get(e->e_cbytes);
	uint32_t dbb = f->sb.data_block_size / BS;

	if (ll == 0 || ll > FLYFS_EXT_MAX_LEN || pl == 0)
		return "it has an impossible length";
	if (lb >= FLYFS_MAX_FILE_SIZE / BS ||
	    ll > FLYFS_MAX_FILE_SIZE / BS - lb)
		return "it maps past the largest possible file";
	if (lb < lo || lb + ll > hi)
		return "it lies outside the range its index gives it";
	if (!w->first && lb < w->prev_end)
		return "it overlaps or precedes the previous extent";
	if (pb == 0 || pb >= f->sb.block_count ||
	    pl > f->sb.block_count - pb) {
		snprintf(why, whylen, "blocks %" PRIu64 "..%" PRIu64 " lie "
		    "outside the filesystem (%" PRIu64 " blocks)", pb,
		    pb + pl - 1, f->sb.block_count);
		return why;
	}
	if (e->e_flags & ~FLYFS_EXT_UNWRITTEN)
		return "it has unknown flags";
	if (e->e_comp == FLYFS_COMP_NONE) {
		if (pl != ll || cb != 0)
			return "a raw extent must have equal lengths and no "
			    "compressed size";
		return NULL;
	}
	if (e->e_comp != FLYFS_COMP_ZSTD)
		return "it names an unknown compression algorithm";
	if (e->e_flags & FLYFS_EXT_UNWRITTEN)
		return "an unwritten extent cannot be compressed";
	if (pl >= ll || ll > dbb || lb % dbb != 0)
		return "a compressed extent must be one data block stored in "
		    "fewer blocks";
	if (cb == 0 || cb > (uint64_t)pl * BS ||
	    (cb + BS - 1) / BS != pl) {
		snprintf(why, whylen, "its compressed size %" PRIu32 " does "
		    "not fit its %" PRIu32 " blocks", cb, pl);
		return why;
	}
	f->have_zstd_ext = true;
	if (!zstd_verify(f, e, why, whylen))
		return why;
	return NULL;
}

static int walk_extent_node(struct fsck *f, struct ewalk *w,
    const struct flyfs_extent_node *h, const void *recs, unsigned max_leaf,
    unsigned max_idx, int level, uint64_t lo, uint64_t hi, uint64_t node);

/*
 * Walk the extent subtree in block BLK (LEVEL expected).  Damage is
 * reported here; a child that cannot be used marks the walk bad.
 */
static int
walk_extent_block(struct fsck *f, struct ewalk *w, uint64_t blk, int level,
    uint64_t lo, uint64_t hi, bool *drop)
{
	char err[256];
	uint8_t *b;
	const struct flyfs_extent_node *h;
	int error, rc;

	*drop = false;
	b = blockdev_alloc_buf(f->bd, BS);
	if (b == NULL)
		return ENOMEM;
	error = fsck_read_mblock(f, blk, FLYFS_MB_EXTENT, w->ino, b, err,
	    sizeof(err));
	h = (const void *)(b + sizeof(struct flyfs_mblock_hdr));
	if (error == EBADMSG && le16_get(h->en_magic) ==
	    FLYFS_EXTENT_NODE_MAGIC && le16_get(h->en_level) == level &&
	    le16_get(h->en_count) <= le16_get(h->en_max)) {
		/* Intact structure, wrong checksum: reseal. */
		if (fsck_problem(f, FIX_PREEN, "inode %" PRIu64
		    ": extent block %s", w->ino, err))
			fsck_reseal_block(f, blk, b);
		error = 0;
	}
	if (error == 0 && (le16_get(h->en_magic) != FLYFS_EXTENT_NODE_MAGIC ||
	    le16_get(h->en_level) != level ||
	    le16_get(h->en_max) != (level == 0 ? FLYFS_EXT_BLOCK_LEAF_MAX :
	    FLYFS_EXT_BLOCK_IDX_MAX) ||
	    le16_get(h->en_count) > le16_get(h->en_max) ||
	    le16_get(h->en_count) == 0)) {
		error = flyfs_error(err, sizeof(err), EUCLEAN, "extent block %"
		    PRIu64 " has a bad node header (magic 0x%04x, level %u "
		    "(expected %d), %u of %u records)", blk,
		    le16_get(h->en_magic), le16_get(h->en_level), level,
		    le16_get(h->en_count), le16_get(h->en_max));
	}
	if (error != 0) {
		if (fsck_problem(f, FIX_YES, "inode %" PRIu64
		    ": %s; the part of the file it maps is dropped", w->ino,
		    err))
			*drop = true;
		else
			w->bad = true;
		blockdev_free_buf(b);
		return 0;
	}
	w->node_blocks++;
	if (!w->norun && (rc = fsck_add_run(f, blk, 1, w->ino)) != 0) {
		blockdev_free_buf(b);
		return rc;
	}
	rc = walk_extent_node(f, w, h, h + 1, FLYFS_EXT_BLOCK_LEAF_MAX,
	    FLYFS_EXT_BLOCK_IDX_MAX, level, lo, hi, blk);
	blockdev_free_buf(b);
	return rc;
}

/* Remove record IDX of the node at NODE (0: the inode root) on disk. */
static void
drop_record(struct fsck *f, uint64_t ino, uint64_t node, int idx, int level)
{
	struct flyfs_inode in;
	struct flyfs_extent_node *h;
	size_t rsz = level == 0 ? sizeof(struct flyfs_extent) :
	    sizeof(struct flyfs_extent_idx);
	uint8_t *recs;
	unsigned n;

	if (node == 0) {
		if (fsck_inode_read(f, ino, &in) != 0) {
			fsck_unfixed(f, "inode %" PRIu64 " unreadable", ino);
			return;
		}
		h = &in.i_ext_hdr;
		recs = (uint8_t *)(h + 1);
	} else {
		if (fsck_read_blocks(f, node, 1, f->buf) != 0) {
			fsck_unfixed(f, "block %" PRIu64 " unreadable", node);
			return;
		}
		h = (void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
		recs = (uint8_t *)(h + 1);
	}
	n = le16_get(h->en_count);
	if (idx < 0 || (unsigned)idx >= n)
		return;
	memmove(recs + (size_t)idx * rsz, recs + (size_t)(idx + 1) * rsz,
	    (n - (unsigned)idx - 1) * rsz);
	memset(recs + (size_t)(n - 1) * rsz, 0, rsz);
	le16_set(&h->en_count, (uint16_t)(n - 1));
	if (node == 0) {
		if (inode_write(f, ino, &in) != 0)
			fsck_unfixed(f, "inode %" PRIu64 " not written", ino);
	} else {
		fsck_reseal_block(f, node, f->buf);
	}
}

static int
walk_extent_node(struct fsck *f, struct ewalk *w,
    const struct flyfs_extent_node *h, const void *recs, unsigned max_leaf,
    unsigned max_idx, int level, uint64_t lo, uint64_t hi, uint64_t node)
{
	unsigned n = le16_get(h->en_count);
	char why[256];
	int rc;
	int dropped = 0;

	(void)max_leaf;
	(void)max_idx;
	if (level == 0) {
		struct flyfs_extent ext[FLYFS_EXT_BLOCK_LEAF_MAX];

		memcpy(ext, recs, n * sizeof(ext[0]));
		for (unsigned i = 0; i < n; i++) {
			const struct flyfs_extent *e = &ext[i];
			const char *bad = extent_invalid(f, w, e, lo, hi, why,
			    sizeof(why));
			uint64_t lb = le64_get(e->e_lblk);

			if (bad != NULL) {
				if (fsck_problem(f, FIX_YES, "inode %" PRIu64
				    ": the extent for file blocks %" PRIu64
				    "..%" PRIu64
				    " is bad: %s; the range becomes a hole",
				    w->ino, lb, lb + le32_get(e->e_llen) - 1,
				    bad))
					drop_record(f, w->ino, node,
					    (int)i - dropped++, 0);
				else
					w->bad = true;
				continue;
			}
			w->first = false;
			w->prev_end = lb + le32_get(e->e_llen);
			w->lend = w->prev_end;
			if (!(e->e_flags & FLYFS_EXT_UNWRITTEN))
				w->written_end = w->prev_end;
			w->data_blocks += le32_get(e->e_plen);
			if (!w->norun && (rc = fsck_add_run(f,
			    le64_get(e->e_pblk), le32_get(e->e_plen), w->ino))
			    != 0)
				return rc;
			if (w->collect) {
				if (w->next == w->capext) {
					size_t c = w->capext ? w->capext * 2 :
					    16;
					struct flyfs_extent *p = realloc(w->ext,
					    c * sizeof(*p));
					if (p == NULL)
						return ENOMEM;
					w->ext = p;
					w->capext = c;
				}
				w->ext[w->next++] = *e;
			}
		}
		return 0;
	}
	{
		struct flyfs_extent_idx ix[FLYFS_EXT_BLOCK_IDX_MAX];

		memcpy(ix, recs, n * sizeof(ix[0]));
		for (unsigned i = 0; i < n; i++) {
			uint64_t k = le64_get(ix[i].ei_lblk);
			uint64_t khi = i + 1 < n ? le64_get(ix[i + 1].ei_lblk) :
			    hi;
			bool drop = false;

			if (k < lo || khi > hi || k >= khi) {
				if (fsck_problem(f, FIX_YES, "inode %" PRIu64
				    ": extent index key %" PRIu64 " is out of "
				    "order; the part of the file it maps is "
				    "dropped", w->ino, k))
					drop_record(f, w->ino, node,
					    (int)i - dropped++, level);
				else
					w->bad = true;
				continue;
			}
			if ((rc = walk_extent_block(f, w,
			    le64_get(ix[i].ei_child), level - 1, k, khi,
			    &drop)) != 0)
				return rc;
			if (drop)
				drop_record(f, w->ino, node, (int)i - dropped++,
				    level);
		}
	}
	return 0;
}

/* Walk the extent tree rooted in inode IN. */
static int
walk_extents(struct fsck *f, struct ewalk *w)
{
	const struct flyfs_extent_node *h = &w->in->i_ext_hdr;
	unsigned level = le16_get(h->en_level);
	unsigned max = level == 0 ? FLYFS_INODE_EXT_ROOT_MAX :
	    (FLYFS_INODE_ROOT_SIZE - sizeof(*h)) / sizeof(struct
	    flyfs_extent_idx);

	w->first = true;
	if (le16_get(h->en_magic) != FLYFS_EXTENT_NODE_MAGIC ||
	    level > FLYFS_EXT_MAX_DEPTH || le16_get(h->en_max) != max ||
	    le16_get(h->en_count) > max) {
		w->bad = true;
		return EUCLEAN;
	}
	return walk_extent_node(f, w, h, h + 1, 0, 0, (int)level, 0,
	    FLYFS_MAX_FILE_SIZE / BS, 0);
}

/* ---- Pass 1: system files and inodes -------------------------------------- */

static unsigned
mode_dtype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return DT_REG;
	case S_IFDIR: return DT_DIR;
	case S_IFLNK: return DT_LNK;
	case S_IFCHR: return DT_CHR;
	case S_IFBLK: return DT_BLK;
	case S_IFIFO: return DT_FIFO;
	case S_IFSOCK: return DT_SOCK;
	default: return DT_UNKNOWN;
	}
}

bool
fsck_iszero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/*
 * Read system inode INO straight from the first inode file block and walk
 * its extents, collecting them.  False if it is unusable (then the
 * filesystem cannot be checked further).
 */
static bool
system_inode(struct fsck *f, uint64_t ino, struct ewalk *w,
    struct flyfs_inode *in)
{
	char err[256];
	int error;

	if (fsck_read_blocks(f, f->sb.ifile_start, 1, f->buf) != 0) {
		fsck_operr(f, "the first inode file block %" PRIu64
		    " cannot be read", f->sb.ifile_start);
		return false;
	}
	memcpy(in, f->buf + ino * FLYFS_INODE_SIZE, sizeof(*in));
	error = flyfs_inode_check(in, ino, f->sb.csum_seed, err, sizeof(err));
	if (error == EBADMSG) {
		/* Checked below; a reseal is decided in pass 1. */
		error = 0;
	}
	if (error != 0 || le32_get(in->i_mode) != (S_IFREG | 0600) ||
	    !(le32_get(in->i_flags) & FLYFS_IFL_SYSTEM)) {
		fsck_operr(f, "system inode %" PRIu64 " is unusable (%s); the "
		    "filesystem cannot be checked", ino, error ? err :
		    "wrong mode or flags");
		return false;
	}
	memset(w, 0, sizeof(*w));
	w->ino = ino;
	w->in = in;
	w->collect = true;
	w->norun = true;		/* pass 1 walks it again, for real */
	if (walk_extents(f, w) != 0 || w->bad) {
		fsck_operr(f, "system inode %" PRIu64 " has an unusable extent "
		    "tree; the filesystem cannot be checked", ino);
		return false;
	}
	return true;
}

/* The logical blocks 0..N-1 of a system file, all mapped, into OUT. */
static bool
sysfile_blocks(struct fsck *f, struct ewalk *w, uint64_t n, uint64_t **out,
    const char *what)
{
	uint64_t *v = calloc(n ? n : 1, sizeof(*v));
	uint64_t covered = 0;

	if (v == NULL) {
		fsck_operr(f, "out of memory");
		return false;
	}
	for (size_t i = 0; i < w->next; i++) {
		const struct flyfs_extent *e = &w->ext[i];
		uint64_t lb = le64_get(e->e_lblk);
		for (uint32_t k = 0; k < le32_get(e->e_llen); k++)
			if (lb + k < n) {
				v[lb + k] = le64_get(e->e_pblk) + k;
				covered++;
			}
		if (e->e_comp != FLYFS_COMP_NONE ||
		    (e->e_flags & FLYFS_EXT_UNWRITTEN)) {
			fsck_operr(f, "the %s has a compressed or unwritten "
			    "extent", what);
			free(v);
			return false;
		}
	}
	if (covered != n) {
		fsck_operr(f, "the %s has holes (%" PRIu64 " of %" PRIu64
		    " blocks mapped)", what, covered, n);
		free(v);
		return false;
	}
	*out = v;
	return true;
}

bool
fsck_pass1_system(struct fsck *f)
{
	struct flyfs_inode in;
	struct ewalk w;
	uint64_t size, nb;
	uint64_t *v;

	/* Inode 0: the inode file.  Its size gives the slot count. */
	if (!system_inode(f, FLYFS_INO_IFILE, &w, &in))
		return false;
	size = le64_get(in.i_size);
	if (size == 0 || size % BS != 0 || size / FLYFS_INODE_SIZE >
	    FLYFS_MAX_INO || w.lend * BS < size) {
		fsck_operr(f, "the inode file has an impossible size %" PRIu64,
		    size);
		free(w.ext);
		return false;
	}
	f->ninodes = size / FLYFS_INODE_SIZE;
	f->ifx = w.ext;
	f->nifx = w.next;
	if (!sysfile_blocks(f, &w, size / BS, &v, "inode file")) {
		return false;
	}
	free(v);
	if (ifile_bmap(f, 0) != f->sb.ifile_start) {
		fsck_operr(f, "the inode file does not start at block %" PRIu64,
		    f->sb.ifile_start);
		return false;
	}
	f->ii = calloc(f->ninodes, sizeof(*f->ii));
	if (f->ii == NULL) {
		fsck_operr(f, "out of memory for %" PRIu64 " inodes",
		    f->ninodes);
		return false;
	}

	/* Inode 2: the inode bitmap file. */
	if (!system_inode(f, FLYFS_INO_IBITMAP, &w, &in))
		return false;
	nb = (f->ninodes + FLYFS_INODES_PER_IBITMAP - 1) /
	    FLYFS_INODES_PER_IBITMAP;
	if (le64_get(in.i_size) < nb * BS) {
		fsck_operr(f, "the inode bitmap file is too small for %" PRIu64
		    " inodes", f->ninodes);
		free(w.ext);
		return false;
	}
	if (!sysfile_blocks(f, &w, nb, &f->ibm_blk, "inode bitmap file")) {
		free(w.ext);
		return false;
	}
	free(w.ext);
	f->nibm = nb;
	f->ibitmap = calloc(nb, FLYFS_MB_PAYLOAD);
	if (f->ibitmap == NULL) {
		fsck_operr(f, "out of memory");
		return false;
	}
	for (size_t i = 0; i < nb; i++) {
		char err[256];
		int error = fsck_read_mblock(f, f->ibm_blk[i], FLYFS_MB_IBITMAP,
		    FLYFS_INO_IBITMAP, f->buf, err, sizeof(err));
		if (error == 0 || error == EBADMSG)
			memcpy(f->ibitmap + i * FLYFS_MB_PAYLOAD,
			    f->buf + sizeof(struct flyfs_mblock_hdr),
			    FLYFS_MB_PAYLOAD);
		if (error != 0) {
			/* Rebuilt in pass 5 from the inodes found. */
			fsck_problem(f, FIX_PREEN, "inode bitmap: %s", err);
			f->ibm_blk[i] |= 1ULL << 63;	/* mark: rewrite */
		}
	}

	/* Inode 3: the orphan file. */
	if (!system_inode(f, FLYFS_INO_ORPHAN, &w, &in))
		return false;
	nb = le64_get(in.i_size) / BS;
	if (le64_get(in.i_size) % BS != 0 || nb == 0 || nb > w.lend) {
		fsck_operr(f, "the orphan file has an impossible size %" PRIu64,
		    le64_get(in.i_size));
		free(w.ext);
		return false;
	}
	if (!sysfile_blocks(f, &w, nb, &f->orph_blk, "orphan file")) {
		free(w.ext);
		return false;
	}
	free(w.ext);
	f->norph = nb;
	return true;
}

/* Mark the inodes the orphan file lists; problems in it are pass 5's. */
void
fsck_read_orphans(struct fsck *f)
{
	for (size_t b = 0; b < f->norph; b++) {
		const struct flyfs_orphan_block *ob = (const void *)f->buf;
		char err[256];

		if (fsck_read_mblock(f, f->orph_blk[b], FLYFS_MB_ORPHAN,
		    FLYFS_INO_ORPHAN, f->buf, err, sizeof(err)) != 0)
			continue;
		for (size_t i = 0; i < FLYFS_ORPHANS_PER_BLOCK; i++) {
			uint64_t ino = le64_get(ob->ob_ino[i]);
			if (ino >= FLYFS_FIRST_INO && ino < f->ninodes)
				f->ii[ino].flags |= IF_LISTED;
		}
	}
}

/* Check a symlink's target: inline or one raw block. */
static const char *
check_symlink(struct fsck *f, const struct flyfs_inode *in, struct ewalk *w)
{
	uint64_t size = le64_get(in->i_size);

	if (size == 0 || size > FLYFS_SYMLINK_MAX)
		return "a symlink target length must be 1..4095 bytes";
	if (le32_get(in->i_flags) & FLYFS_IFL_INLINE) {
		if (size > FLYFS_INLINE_SYMLINK_MAX)
			return "an inline symlink target is longer than 112 "
			    "bytes";
		if (memchr(in->i_symlink, 0, size) != NULL)
			return "the symlink target contains a NUL byte";
		if (!fsck_iszero(in->i_symlink + size,
		    FLYFS_INLINE_SYMLINK_MAX - size))
			return "bytes past the inline symlink target are not "
			    "zero";
		return NULL;
	}
	if (w->data_blocks != 1 || w->lend != 1)
		return "a symlink target must be one block";
	(void)f;
	return NULL;
}

/* Check an xattr block: structure and order.  NULL if valid. */
static const char *
check_xattrs(struct fsck *f, uint64_t ino, uint64_t blk, char *why,
    size_t whylen)
{
	const struct flyfs_xattr_hdr *xh;
	const uint8_t *p;
	size_t off = 0, used;
	unsigned count, k = 0;
	int error;
	uint8_t pns = 0;
	const char *pname = NULL;
	size_t plen = 0;

	error = fsck_read_mblock(f, blk, FLYFS_MB_XATTR, ino, f->buf, why,
	    whylen);
	if (error != 0)
		return why;
	xh = (const void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	p = (const uint8_t *)(xh + 1);
	count = le16_get(xh->xh_count);
	used = le16_get(xh->xh_used);
	if (used > FLYFS_XATTR_SPACE || used % 8 != 0)
		return "the xattr block's used size is impossible";
	while (off < used) {
		const struct flyfs_xattr_entry *xe = (const void *)(p + off);
		size_t sz;

		if (used - off < sizeof(*xe))
			return "an xattr record is cut short";
		sz = FLYFS_XATTR_ENTRY_SIZE(xe->xe_name_len,
		    le16_get(xe->xe_value_len));
		if (xe->xe_name_len == 0 || sz > used - off)
			return "an xattr record is cut short or has no name";
		if (xe->xe_ns < FLYFS_XATTR_NS_USER ||
		    xe->xe_ns > FLYFS_XATTR_NS_SECURITY)
			return "an xattr record has an unknown namespace";
		if (pname != NULL) {
			int c = xe->xe_ns != pns ? xe->xe_ns - pns :
			    memcmp(xe->xe_data, pname, xe->xe_name_len < plen ?
			    xe->xe_name_len : plen);
			if (c == 0 && xe->xe_ns == pns)
				c = (int)xe->xe_name_len - (int)plen;
			if (c <= 0)
				return "xattr records are not sorted or "
				    "repeat a name";
		}
		pns = xe->xe_ns;
		pname = xe->xe_data;
		plen = xe->xe_name_len;
		off += sz;
		k++;
	}
	if (k != count)
		return "the xattr record count is wrong";
	return NULL;
}

/* Check inode INO (a used slot, IN) and record what it uses. */
static int
check_inode(struct fsck *f, uint64_t ino, struct flyfs_inode *in)
{
	struct iinfo *ii = &f->ii[ino];
	uint32_t mode = le32_get(in->i_mode), flags = le32_get(in->i_flags);
	unsigned type = mode_dtype(mode);
	char err[256], why[256];
	const char *bad = NULL;
	struct ewalk w;
	uint64_t want_blocks = 0, size = le64_get(in->i_size);
	bool sys = ino == FLYFS_INO_IFILE || ino == FLYFS_INO_IBITMAP ||
	    ino == FLYFS_INO_ORPHAN;
	int error, rc;

	error = flyfs_inode_check(in, ino, f->sb.csum_seed, err, sizeof(err));
	if (error == EUCLEAN) {
		/* Wrong number: a misdirected or stale copy. */
		if (fsck_problem(f, FIX_YES, "%s; the inode is cleared", err))
			fsck_inode_fix(f, ino, IF_ZERO, 0);
		else
			ii->flags |= IF_BAD;
		if (ii->flags & IF_BAD)
			f->blocks_unknown = true;
		return 0;
	}
	ii->nlink = le32_get(in->i_nlink);
	ii->type = (uint8_t)type;
	if (flags & FLYFS_IFL_ORPHAN)
		ii->flags |= IF_ORPHAN;

	/* What makes an inode unusable as a whole. */
	if (type == DT_UNKNOWN)
		bad = "its file type is unknown";
	else if (sys != ((flags & FLYFS_IFL_SYSTEM) != 0))
		bad = "its SYSTEM flag is wrong";
	else if (ino < FLYFS_FIRST_INO && !sys && ino != FLYFS_INO_ROOT)
		bad = "it is a reserved inode but in use";
	else if (ino == FLYFS_INO_ROOT && type != DT_DIR)
		bad = "the root is not a directory";
	else if (flags & ~FLYFS_IFL_KNOWN)
		bad = "it has unknown flags";
	else if ((flags & FLYFS_IFL_INLINE) && type != DT_LNK)
		bad = "only symlinks may be inline";
	if (bad == NULL && type != DT_DIR && !(flags & FLYFS_IFL_INLINE) &&
	    (type == DT_REG || type == DT_LNK)) {
		memset(&w, 0, sizeof(w));
		w.ino = ino;
		w.in = in;
		if ((rc = walk_extents(f, &w)) == ENOMEM)
			return rc;
		if (rc == EUCLEAN)
			bad = "its extent root is damaged";
		else if (w.bad)
			f->blocks_unknown = true;
		want_blocks = w.data_blocks + w.node_blocks;
		if (bad == NULL && type == DT_LNK)
			bad = check_symlink(f, in, &w);
		if (bad == NULL && type == DT_REG && !sys &&
		    w.written_end * BS > size + f->sb.data_block_size - 1 &&
		    (w.written_end - 1) * BS >= (size +
		    f->sb.data_block_size - 1) / f->sb.data_block_size *
		    f->sb.data_block_size)
			fsck_problem(f, FIX_NEVER, "inode %" PRIu64 ": data is "
			    "mapped past its size of %" PRIu64 " bytes", ino,
			    size);
		if (bad == NULL && sys && w.lend * BS < size)
			bad = "a system file is shorter than its size";
	} else if (bad == NULL && type == DT_LNK) {
		bad = check_symlink(f, in, &w);
	} else if (bad == NULL && type == DT_DIR) {
		ii->dparent = le64_get(in->i_dir.dr_parent);
		ii->dentries = le64_get(in->i_dir.dr_entries);
	} else if (bad == NULL && !fsck_iszero(in->i_root_raw,
	    sizeof(in->i_root_raw))) {
		bad = "a device, fifo or socket has a non-zero root area";
	}
	if (bad != NULL) {
		if (fsck_problem(f, FIX_YES, "inode %" PRIu64
		    " is unusable: %s; it is cleared", ino, bad)) {
			fsck_inode_fix(f, ino, IF_ZERO, 0);
			ii->type = 0;
			ii->flags = 0;
		} else {
			ii->flags |= IF_BAD;
			f->blocks_unknown = true;
		}
		return 0;
	}
	if (error == EBADMSG && fsck_problem(f, FIX_PREEN,
	    "%s but its contents are consistent; the checksum is rewritten",
	    err))
		fsck_inode_fix(f, ino, IF_RESEAL, 0);

	/* The xattr block. */
	if (le64_get(in->i_xattr_block) != 0) {
		uint64_t xb = le64_get(in->i_xattr_block);
		const char *xbad = check_xattrs(f, ino, xb, why, sizeof(why));

		if (xbad != NULL) {
			fsck_problem(f, FIX_NEVER, "inode %" PRIu64
			    ": xattr block %" PRIu64 ": %s", ino, xb, xbad);
		}
		if (xb < f->sb.block_count) {
			if ((rc = fsck_add_run(f, xb, 1, ino)) != 0)
				return rc;
			want_blocks++;
		}
	}
	if (type == DT_DIR)
		return 0;	/* i_blocks and i_size: pass 2 */
	if (le64_get(in->i_blocks) != want_blocks && !(ii->flags & IF_BAD) &&
	    !(type == DT_REG && w.bad)) {
		if (fsck_problem(f, FIX_PREEN, "inode %" PRIu64
		    ": i_blocks is %" PRIu64 " but it holds %" PRIu64 " blocks",
		    ino, le64_get(in->i_blocks), want_blocks))
			fsck_inode_fix(f, ino, IF_BLOCKS, want_blocks);
	}
	return 0;
}

/* Pass 1: every inode slot of the inode file, in chunks. */
int
fsck_pass1_inodes(struct fsck *f)
{
	const uint64_t chunk = 64;
	uint64_t nblocks = f->ninodes / FLYFS_INODES_PER_BLOCK;
	uint8_t *b = blockdev_alloc_buf(f->bd, chunk * BS);
	int rc = 0;

	if (b == NULL)
		return ENOMEM;
	for (uint64_t lb = 0; lb < nblocks; ) {
		uint64_t pb = ifile_bmap(f, lb), n = 1;

		while (n < chunk && lb + n < nblocks &&
		    ifile_bmap(f, lb + n) == pb + n)
			n++;
		if (fsck_read_blocks(f, pb, n, b) != 0) {
			fsck_problem(f, FIX_NEVER, "inode file blocks %" PRIu64
			    "..%" PRIu64 " cannot be read", pb, pb + n - 1);
			for (uint64_t i = lb * 16; i < (lb + n) * 16; i++)
				f->ii[i].flags |= IF_BAD;
			f->blocks_unknown = f->names_unknown = true;
			lb += n;
			continue;
		}
		for (uint64_t i = 0; i < n * FLYFS_INODES_PER_BLOCK; i++) {
			uint64_t ino = lb * FLYFS_INODES_PER_BLOCK + i;
			struct flyfs_inode in;

			memcpy(&in, b + i * FLYFS_INODE_SIZE, sizeof(in));
			if (flyfs_inode_is_free(&in))
				continue;
			if ((rc = check_inode(f, ino, &in)) != 0)
				goto out;
		}
		lb += n;
	}
out:
	blockdev_free_buf(b);
	return rc;
}
