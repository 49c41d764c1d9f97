/*
 * fsck_alloc.c - fsck.flyfs pass 5: allocation.
 *
 * This module owns the map of who uses which block and the allocation
 * state derived from it: the runs of used blocks (one per extent, each
 * with its owner inode, or a fixed region), sorted to find blocks with
 * two owners; group by group, the bitmap each group should have,
 * compared with the on-disk block bitmaps and free counts; the inode
 * bitmap; the orphan file; and the repairs of all of these.  When some
 * tree could not be walked (blocks_unknown), bitmap bits are only ever
 * set, never cleared.
 */
#include "fs/fsck_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Runs of used blocks ------------------------------------------------- */

int
fsck_add_run(struct fsck *f, uint64_t blk, uint64_t len, uint64_t owner)
{
	if (len == 0)
		return 0;
	if (f->nruns == f->caprun) {
		size_t cap = f->caprun ? f->caprun * 2 : 1024;
		struct run *n = realloc(f->runs, cap * sizeof(*n));
		if (n == NULL)
			return ENOMEM;
		f->runs = n;
		f->caprun = cap;
	}
	f->runs[f->nruns++] = (struct run){ blk, len, owner };
	return 0;
}

static int
cmp_run(const void *a, const void *b)
{
	const struct run *x = a, *y = b;

	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->owner < y->owner ? -1 : x->owner > y->owner;
}

/* ---- Pass 5: allocation ------------------------------------------------- */

/* Names of the fixed regions, as owners OWNER_FS - n. */
enum { REG_SB, REG_BACKUP, REG_GDT, REG_BITMAPS, REG_JOURNAL, REG_N };
static const char *const region_name[REG_N] = {
	"the superblock", "the backup superblock",
	"the group descriptor table", "the block bitmaps", "the journal",
};

int
fsck_add_fixed_runs(struct fsck *f)
{
	int rc;

	if ((rc = fsck_add_run(f, 0, 1, OWNER_FS - REG_SB)) != 0 ||
	    (rc = fsck_add_run(f, f->sb.backup_block, 1,
	    OWNER_FS - REG_BACKUP)) != 0 ||
	    (rc = fsck_add_run(f, f->sb.gdt_start, f->sb.gdt_blocks,
	    OWNER_FS - REG_GDT)) != 0 ||
	    (rc = fsck_add_run(f, f->sb.bitmap_start, f->sb.group_count,
	    OWNER_FS - REG_BITMAPS)) != 0 ||
	    (rc = fsck_add_run(f, f->sb.journal_start, f->sb.journal_blocks,
	    OWNER_FS - REG_JOURNAL)) != 0)
		return rc;
	return 0;
}

static void
owner_name(uint64_t owner, char *buf, size_t len)
{
	if (owner > OWNER_FS - REG_N)
		snprintf(buf, len, "%s", region_name[OWNER_FS - owner]);
	else
		snprintf(buf, len, "inode %" PRIu64, owner);
}

/* Split runs at group boundaries (so each lies in one group), sort. */
static int
runs_prepare(struct fsck *f)
{
	size_t n = f->nruns;

	for (size_t i = 0; i < n; i++) {
		struct run *r = &f->runs[i];
		uint64_t gend = flyfs_group_first(flyfs_group_of(r->blk)) +
		    FLYFS_GROUP_BLOCKS;

		while (r->blk + r->len > gend) {
			struct run tail = { gend, r->blk + r->len - gend,
			    r->owner };
			int rc;

			r->len = gend - r->blk;
			if ((rc = fsck_add_run(f, tail.blk, tail.len,
			    tail.owner)) != 0)
				return rc;
			r = &f->runs[f->nruns - 1];
			gend += FLYFS_GROUP_BLOCKS;
		}
	}
	qsort(f->runs, f->nruns, sizeof(*f->runs), cmp_run);
	return 0;
}

/* Report blocks used twice: overlapping runs (sorted by start). */
static void
find_overlaps(struct fsck *f)
{
	uint64_t end = 0, owner = 0, oa = 0, ob = 0, from = 0, to = 0;
	bool open = false;
	char a[64], b[64];

	for (size_t i = 0; i <= f->nruns; i++) {
		const struct run *r = i < f->nruns ? &f->runs[i] : NULL;
		bool ov = r != NULL && r->blk < end;
		uint64_t os = 0, oe = 0;

		if (ov) {
			os = r->blk;
			oe = r->blk + r->len < end ? r->blk + r->len : end;
		}
		/* Merge reports of the same two owners in adjacent blocks. */
		if (open && ov && owner == oa && r->owner == ob && os <= to) {
			if (oe > to)
				to = oe;
		} else {
			if (open) {
				owner_name(oa, a, sizeof(a));
				owner_name(ob, b, sizeof(b));
				if (to - from == 1)
					fsck_problem(f, FIX_NEVER, "block %"
					    PRIu64 " is used by both %s and %s",
					    from, a, b);
				else
					fsck_problem(f, FIX_NEVER, "blocks %"
					    PRIu64 "..%" PRIu64
					    " are used by both %s and %s", from,
					    to - 1, a, b);
			}
			open = ov;
			oa = owner;
			ob = ov ? r->owner : 0;
			from = os;
			to = oe;
		}
		if (r != NULL && r->blk + r->len > end) {
			end = r->blk + r->len;
			owner = r->owner;
		}
	}
}

static void
bits_set_range(uint8_t *map, uint64_t from, uint64_t n)
{
	while (n > 0 && (from & 7) != 0) {
		flyfs_bit_set(map, from++);
		n--;
	}
	if (n >= 8) {
		memset(map + from / 8, 0xff, n / 8);
		from += n / 8 * 8;
		n %= 8;
	}
	while (n-- > 0)
		flyfs_bit_set(map, from++);
}

static uint64_t
popcount_bits(const uint8_t *map, uint64_t nbits)
{
	uint64_t c = 0, w;

	for (uint64_t i = 0; i < nbits / 64; i++) {
		memcpy(&w, map + i * 8, 8);
		c += (uint64_t)__builtin_popcountll(w);
	}
	for (uint64_t i = nbits / 64 * 64; i < nbits; i++)
		c += flyfs_bit_test(map, i);
	return c;
}

/*
 * Describe up to a few ranges of bits that are set in A and clear in B
 * (of N bits, numbered from BASE) into BUF; returns how many bits.
 */
static uint64_t
diff_ranges(const uint8_t *a, const uint8_t *b, uint64_t n, uint64_t base,
    char *buf, size_t len)
{
	uint64_t count = 0, shown = 0;
	size_t used = 0;

	buf[0] = '\0';
	for (uint64_t i = 0; i < n; ) {
		uint64_t j = i;

		if (!(flyfs_bit_test(a, i) && !flyfs_bit_test(b, i))) {
			i++;
			continue;
		}
		while (j < n && flyfs_bit_test(a, j) && !flyfs_bit_test(b, j))
			j++;
		count += j - i;
		if (shown++ < 4 && used < len) {
			int w = j - i == 1 ?
			    snprintf(buf + used, len - used, "%s%" PRIu64,
			    used ? ", " : "", base + i) :
			    snprintf(buf + used, len - used, "%s%" PRIu64 "..%"
			    PRIu64, used ? ", " : "", base + i, base + j - 1);
			used += w > 0 ? (size_t)w : 0;
		} else if (shown == 5 && used < len) {
			int w = snprintf(buf + used, len - used, ", ...");
			used += w > 0 ? (size_t)w : 0;
		}
		i = j;
	}
	return count;
}

/* One group: expected bitmap from the runs, against the disk. */
static void
check_group(struct fsck *f, uint32_t g, struct flyfs_group_desc *gd,
    bool gdt_bad, size_t *ri, uint8_t *want, bool *gdt_dirty,
    uint64_t *total_free)
{
	uint64_t first = flyfs_group_first(g);
	uint32_t size = flyfs_group_size(f->sb.block_count, g);
	uint32_t flags = le32_get(gd->gd_flags);
	uint64_t bblk = f->sb.bitmap_start + g, nfree, nused, pfree;
	bool any = false, write = false, have_disk = false, reclaimed;
	uint8_t *disk = f->buf, pre[FLYFS_MB_PAYLOAD];
	char err[256], list[160];

	/* Fast path: a never-used group with nothing in it (most of a big,
	 * fresh image) needs no bitmap at all. */
	if (!gdt_bad && (flags & FLYFS_GD_BITMAP_UNINIT) &&
	    (*ri >= f->nruns || f->runs[*ri].blk >= first + size)) {
		if (le32_get(gd->gd_free_blocks) != size &&
		    fsck_problem(f, FIX_PREEN, "group %" PRIu32
		    ": the descriptor says %" PRIu32 " free blocks, there are %"
		    PRIu32, g, le32_get(gd->gd_free_blocks), size)) {
			le32_set(&gd->gd_free_blocks, size);
			*gdt_dirty = true;
		}
		*total_free += size;
		return;
	}
	/*
	 * WANT is what the bitmap must say; PRE is the same with the blocks
	 * of orphans reclaimed by this run still counted, so that freeing
	 * them is not reported again as a separate problem.
	 */
	memset(want, 0, FLYFS_MB_PAYLOAD);
	memset(pre, 0, FLYFS_MB_PAYLOAD);
	while (*ri < f->nruns && f->runs[*ri].blk < first + size) {
		const struct run *r = &f->runs[(*ri)++];
		bits_set_range(pre, r->blk - first, r->len);
		any = true;
		if (r->owner < f->ninodes &&
		    (f->ii[r->owner].flags & IF_RECLAIM))
			continue;
		bits_set_range(want, r->blk - first, r->len);
	}
	if (size < FLYFS_GROUP_BLOCKS) {
		bits_set_range(want, size, FLYFS_GROUP_BLOCKS - size);
		bits_set_range(pre, size, FLYFS_GROUP_BLOCKS - size);
	}
	reclaimed = memcmp(want, pre, FLYFS_MB_PAYLOAD) != 0;
	nused = popcount_bits(want, size);
	f->used_blocks += nused;

	if (!gdt_bad && (flags & FLYFS_GD_BITMAP_UNINIT)) {
		if (any) {
			if (fsck_problem(f, FIX_PREEN, "group %" PRIu32
			    " is marked as never used, but %" PRIu64
			    " of its blocks are in use", g, nused)) {
				flags &= ~FLYFS_GD_BITMAP_UNINIT;
				write = true;
			}
		}
	} else if (!gdt_bad) {
		int error = fsck_read_mblock(f, bblk, FLYFS_MB_BBITMAP, 0,
		    f->buf, err, sizeof(err));
		if (error == 0) {
			have_disk = true;
		} else if (fsck_problem(f, f->blocks_unknown ? FIX_NEVER :
		    FIX_PREEN, "group %" PRIu32 ": the block bitmap is "
		    "damaged (%s); it is rebuilt", g, err)) {
			write = true;
		}
	} else {
		/* Descriptor lost: rebuild as if the group were fresh. */
		flags = any ? 0 : FLYFS_GD_BITMAP_UNINIT;
		write = any;
	}
	if (have_disk) {
		uint8_t *bits = disk + sizeof(struct flyfs_mblock_hdr);
		uint64_t n;

		n = diff_ranges(bits, pre, FLYFS_GROUP_BLOCKS, first, list,
		    sizeof(list));
		if (n > 0) {
			if (f->blocks_unknown) {
				fsck_problem(f, FIX_NEVER, "group %" PRIu32
				    ": %" PRIu64
				    " block%s marked in use but not used by "
				    "anything (%s); not freed: some trees "
				    "could not be read", g, n, n == 1 ? " is" :
				    "s are", list);
				for (uint32_t i = 0; i < FLYFS_GROUP_BLOCKS;
				    i++)
					if (flyfs_bit_test(bits, i)) {
						flyfs_bit_set(want, i);
						flyfs_bit_set(pre, i);
					}
			} else if (fsck_problem(f, FIX_PREEN, "group %" PRIu32
			    ": %" PRIu64
			    " block%s marked in use but not used by anything "
			    "(%s)", g, n, n == 1 ? " is" : "s are", list)) {
				write = true;
			} else {
				for (uint32_t i = 0; i < FLYFS_GROUP_BLOCKS;
				    i++)
					if (flyfs_bit_test(bits, i)) {
						flyfs_bit_set(want, i);
						flyfs_bit_set(pre, i);
					}
			}
		}
		n = diff_ranges(want, bits, FLYFS_GROUP_BLOCKS, first, list,
		    sizeof(list));
		if (n > 0 && fsck_problem(f, FIX_PREEN, "group %" PRIu32 ": %"
		    PRIu64 " block%s in use but marked free (%s)", g, n,
		    n == 1 ? " is" : "s are", list))
			write = true;
		if (reclaimed)
			write = true;
	}
	nfree = size - popcount_bits(want, size);
	pfree = size - popcount_bits(pre, size);
	if (!gdt_bad && le32_get(gd->gd_free_blocks) != pfree &&
	    fsck_problem(f, FIX_PREEN, "group %" PRIu32
	    ": the descriptor says %" PRIu32 " free blocks, there are %" PRIu64,
	    g, le32_get(gd->gd_free_blocks), pfree))
		*gdt_dirty = true;
	if (nfree != pfree && f->mode != FLYFS_FSCK_NO)
		*gdt_dirty = true;
	if (gdt_bad || *gdt_dirty || flags != le32_get(gd->gd_flags)) {
		le32_set(&gd->gd_free_blocks, (uint32_t)nfree);
		le32_set(&gd->gd_flags, flags);
		*gdt_dirty = true;
	}
	*total_free += nfree;
	if (write && f->mode != FLYFS_FSCK_NO) {
		memset(f->buf, 0, BS);
		memcpy(f->buf + sizeof(struct flyfs_mblock_hdr), want,
		    FLYFS_MB_PAYLOAD);
		flyfs_mblock_seal(f->buf, FLYFS_MB_BBITMAP, bblk,
		    f->sb.last_txid, 0, f->sb.csum_seed);
		if (fsck_write_block(f, bblk, f->buf) != 0)
			fsck_unfixed(f, "bitmap not written");
	}
}

int
fsck_pass5_blocks(struct fsck *f, uint64_t *total_free)
{
	uint8_t *gdt = blockdev_alloc_buf(f->bd, BS);
	uint8_t *want = malloc(FLYFS_MB_PAYLOAD);
	size_t ri = 0;
	int rc;

	if (gdt == NULL || want == NULL) {
		blockdev_free_buf(gdt);
		free(want);
		return ENOMEM;
	}
	if ((rc = runs_prepare(f)) != 0)
		goto out;
	find_overlaps(f);
	*total_free = 0;
	for (uint32_t b = 0; b < f->sb.gdt_blocks; b++) {
		struct flyfs_gdt_block *gb = (void *)gdt;
		uint64_t blk = f->sb.gdt_start + b;
		bool bad = false, dirty = false;
		char err[256];
		int error = fsck_read_mblock(f, blk, FLYFS_MB_GDT, 0, gdt, err,
		    sizeof(err));

		if (error != 0) {
			if (fsck_problem(f, f->blocks_unknown ? FIX_NEVER :
			    FIX_PREEN, "group descriptor block %" PRIu64
			    " is damaged (%s); it is rebuilt", blk, err)) {
				memset(gdt, 0, BS);
				bad = true;
			} else {
				/* Compare with what it would say. */
				memset(gdt, 0, BS);
				bad = true;
			}
		}
		for (uint32_t i = 0; i < FLYFS_GD_PER_BLOCK; i++) {
			uint64_t g = (uint64_t)b * FLYFS_GD_PER_BLOCK + i;

			if (g >= f->sb.group_count) {
				if (!bad && !fsck_iszero(&gb->gb_desc[i],
				    sizeof(gb->gb_desc[i])) &&
				    fsck_problem(f, FIX_PREEN,
				    "group descriptor %" PRIu64
				    " past the last group is not zero", g)) {
					memset(&gb->gb_desc[i], 0,
					    sizeof(gb->gb_desc[i]));
					dirty = true;
				}
				continue;
			}
			check_group(f, (uint32_t)g, &gb->gb_desc[i], bad, &ri,
			    want, &dirty, total_free);
		}
		if ((dirty || bad) && f->mode != FLYFS_FSCK_NO) {
			flyfs_mblock_seal(gdt, FLYFS_MB_GDT, blk,
			    f->sb.last_txid, 0, f->sb.csum_seed);
			if (fsck_write_block(f, blk, gdt) != 0)
				fsck_unfixed(f, "descriptor block not written");
		}
	}
out:
	blockdev_free_buf(gdt);
	free(want);
	return rc;
}

/* The inode bitmap against the slots in use; returns inodes in use. */
uint64_t
fsck_pass5_inodes(struct fsck *f)
{
	uint64_t used = 0;

	for (size_t b = 0; b < f->nibm; b++) {
		uint8_t want[FLYFS_MB_PAYLOAD], pre[FLYFS_MB_PAYLOAD];
		uint8_t *disk = f->ibitmap + b * FLYFS_MB_PAYLOAD;
		uint64_t base = (uint64_t)b * FLYFS_INODES_PER_IBITMAP, n;
		bool rewrite = (f->ibm_blk[b] >> 63) != 0, write = rewrite;
		uint64_t blk = f->ibm_blk[b] & ~(1ULL << 63);
		char list[160];

		memset(want, 0, sizeof(want));
		memset(pre, 0, sizeof(pre));
		for (uint64_t i = 0; i < FLYFS_INODES_PER_IBITMAP &&
		    base + i < f->ninodes; i++) {
			const struct iinfo *ii = &f->ii[base + i];
			if (base + i < FLYFS_FIRST_INO || ii->type != 0 ||
			    (ii->flags & IF_BAD)) {
				flyfs_bit_set(want, i);
				flyfs_bit_set(pre, i);
				used++;
			} else if (ii->flags & IF_RECLAIM) {
				flyfs_bit_set(pre, i);
				write = true;
			}
		}
		if (!rewrite) {
			n = diff_ranges(disk, pre, FLYFS_INODES_PER_IBITMAP,
			    base, list, sizeof(list));
			if (n > 0 && fsck_problem(f, FIX_PREEN, "%" PRIu64
			    " inode%s marked in use but free (%s)", n, n == 1 ?
			    " is" : "s are", list))
				write = true;
			n = diff_ranges(pre, disk, FLYFS_INODES_PER_IBITMAP,
			    base, list, sizeof(list));
			if (n > 0 && fsck_problem(f, FIX_PREEN, "%" PRIu64
			    " inode%s in use but marked free (%s)", n, n == 1 ?
			    " is" : "s are", list))
				write = true;
		}
		if (write && f->mode != FLYFS_FSCK_NO) {
			memset(f->buf, 0, BS);
			memcpy(f->buf + sizeof(struct flyfs_mblock_hdr), want,
			    sizeof(want));
			flyfs_mblock_seal(f->buf, FLYFS_MB_IBITMAP, blk,
			    f->sb.last_txid, FLYFS_INO_IBITMAP,
			    f->sb.csum_seed);
			if (fsck_write_block(f, blk, f->buf) != 0)
				fsck_unfixed(f, "inode bitmap not written");
		}
	}
	return used;
}

/* The orphan file: slots name orphans, once each; counts right. */
void
fsck_pass5_orphans(struct fsck *f)
{
	for (size_t b = 0; b < f->norph; b++) {
		struct flyfs_orphan_block *ob = (void *)f->buf;
		uint64_t blk = f->orph_blk[b];
		uint32_t count = 0;
		bool write = false;
		char err[256];
		int error = fsck_read_mblock(f, blk, FLYFS_MB_ORPHAN,
		    FLYFS_INO_ORPHAN, f->buf, err, sizeof(err));

		if (error == EUCLEAN || error == ENXIO || error == EIO) {
			if (fsck_problem(f, FIX_YES, "orphan file block %"
			    PRIu64 " is damaged (%s); it is emptied", blk, err))
			    {
				memset(f->buf, 0, BS);
				write = true;
			}
		} else if (error == EBADMSG) {
			if (fsck_problem(f, FIX_PREEN, "orphan file: %s", err))
				write = true;
		}
		for (size_t i = 0; error != EUCLEAN && i <
		    FLYFS_ORPHANS_PER_BLOCK; i++) {
			uint64_t ino = le64_get(ob->ob_ino[i]);
			struct iinfo *ii;

			if (ino == 0)
				continue;
			ii = ino >= FLYFS_FIRST_INO && ino < f->ninodes ?
			    &f->ii[ino] : NULL;
			if (ii != NULL && (ii->flags & IF_RECLAIM)) {
				le64_set(&ob->ob_ino[i], 0);
				write = true;
				continue;
			}
			if (ii == NULL || ii->type == 0 || ii->nlink != 0 ||
			    !(ii->flags & IF_LISTED)) {
				if (fsck_problem(f, FIX_PREEN,
				    "the orphan file lists inode %" PRIu64
				    ", which is %s", ino, ii == NULL ?
				    "not a valid inode number" : ii->type == 0 ?
				    "free" : ii->nlink != 0 ? "still linked" :
				    "listed twice")) {
					le64_set(&ob->ob_ino[i], 0);
					write = true;
				}
				continue;
			}
			ii->flags &= ~IF_LISTED;	/* a second is a dup */
			count++;
		}
		if (error != EUCLEAN && le32_get(ob->ob_count) != count &&
		    !write && fsck_problem(f, FIX_PREEN, "orphan file block %"
		    PRIu64 " says %" PRIu32 " slots are in use, %" PRIu32
		    " are", blk, le32_get(ob->ob_count), count))
			write = true;
		if (write && f->mode != FLYFS_FSCK_NO) {
			le32_set(&ob->ob_count, count);
			flyfs_mblock_seal(f->buf, FLYFS_MB_ORPHAN, blk,
			    f->sb.last_txid, FLYFS_INO_ORPHAN,
			    f->sb.csum_seed);
			if (fsck_write_block(f, blk, f->buf) != 0)
				fsck_unfixed(f, "orphan block not written");
		}
	}
}
