/*
 * bad_images.c - the generator of the golden fsck images.
 *
 * Each case starts from the same small, populated, consistent image (16
 * MiB, fixed UUID, hash key and times, so every run makes the same bytes)
 * and then damages it in one way, writing raw structures through
 * fs/ondisk.h.  Binary images are not stored in the repository: this file
 * makes them, and tests/images/<case>.expected holds the fsck output and
 * exit codes each must give.  tests/unit/check_fsck.c includes this file
 * (one translation unit per test program) and compares; `check_fsck
 * --make-image CASE FILE` writes an image for a human to look at.
 *
 * The populated image ("base"):
 *   /lost+found            inode 16 (mkfs)
 *   /a                     inode 17, directory
 *   /a/f, /h               inode 18, regular, 10000 bytes, 3 blocks, 2 links
 *   /a/b                   inode 19, directory
 *   /g                     inode 20, regular, 20000 bytes, extents 4 + 1
 *   /s -> a/f              inode 21, inline symlink
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blockdev/blockdev.h"
#include "fs/format.h"
#include "fs/mkfs_core.h"
#include "fs/ondisk.h"

#define IMG_BYTES	(16u << 20)
#define IMG_TIME	1700000000

struct img {
	struct blockdev *bd;
	struct flyfs_sb_info sb;
	uint64_t next_blk;		/* bump allocator */
	uint64_t next_ino;
	uint8_t *b;			/* scratch block */
};

static void
img_rd(struct img *m, uint64_t blk, void *buf)
{
	if (blockdev_pread(m->bd, buf, 4096, (off_t)(blk * 4096)) != 0)
		abort();
}

static void
img_wr(struct img *m, uint64_t blk, const void *buf)
{
	if (blockdev_pwrite(m->bd, buf, 4096, (off_t)(blk * 4096)) != 0)
		abort();
}

static void
img_seal_wr(struct img *m, uint64_t blk, void *buf)
{
	const struct flyfs_mblock_hdr *h = buf;

	flyfs_mblock_seal(buf, le32_get(h->mb_magic), blk, 0,
	    le64_get(h->mb_owner), m->sb.csum_seed);
	img_wr(m, blk, buf);
}

/* Rewrite the primary superblock from m->sb (and the backup if BOTH). */
static void
img_sb_write(struct img *m, bool both)
{
	flyfs_sb_encode(&m->sb, m->b);
	img_wr(m, 0, m->b);
	if (both)
		img_wr(m, m->sb.backup_block, m->b);
}

static void
img_inode_get(struct img *m, uint64_t ino, struct flyfs_inode *in)
{
	img_rd(m, m->sb.ifile_start + ino / 16, m->b);
	memcpy(in, m->b + (ino % 16) * 256, sizeof(*in));
}

/* Store IN as inode INO; sealed unless RAW. */
static void
img_inode_put(struct img *m, uint64_t ino, struct flyfs_inode *in, bool raw)
{
	if (!raw)
		flyfs_inode_seal(in, m->sb.csum_seed);
	img_rd(m, m->sb.ifile_start + ino / 16, m->b);
	memcpy(m->b + (ino % 16) * 256, in, sizeof(*in));
	img_wr(m, m->sb.ifile_start + ino / 16, m->b);
}

/* Mark N blocks from BLK used (or free) in bitmap, descriptor, sb. */
static void
img_mark_blocks(struct img *m, uint64_t blk, uint64_t n, bool used)
{
	struct flyfs_gdt_block *gb;
	uint32_t fr;

	img_rd(m, m->sb.bitmap_start, m->b);
	for (uint64_t i = 0; i < n; i++) {
		uint8_t *bits = m->b + 32;
		if (used)
			flyfs_bit_set(bits, blk + i);
		else
			bits[(blk + i) / 8] &= (uint8_t)~(1u << ((blk + i) % 8));
	}
	img_seal_wr(m, m->sb.bitmap_start, m->b);
	img_rd(m, m->sb.gdt_start, m->b);
	gb = (void *)m->b;
	fr = le32_get(gb->gb_desc[0].gd_free_blocks);
	le32_set(&gb->gb_desc[0].gd_free_blocks,
	    used ? fr - (uint32_t)n : fr + (uint32_t)n);
	img_seal_wr(m, m->sb.gdt_start, m->b);
	m->sb.free_blocks = used ? m->sb.free_blocks - n :
	    m->sb.free_blocks + n;
	img_sb_write(m, false);
}

/* N fresh blocks filled with a pattern. */
static uint64_t
img_alloc(struct img *m, uint64_t n)
{
	uint64_t blk = m->next_blk;

	m->next_blk += n;
	img_mark_blocks(m, blk, n, true);
	for (uint64_t i = 0; i < n; i++) {
		memset(m->b, (int)('A' + (blk + i) % 26), 4096);
		img_wr(m, blk + i, m->b);
	}
	return blk;
}

/* A new inode of MODE: bitmap bit, counters, times; not yet written. */
static uint64_t
img_new_inode(struct img *m, uint32_t mode, uint32_t nlink,
    struct flyfs_inode *in)
{
	uint64_t ino = m->next_ino++;
	uint64_t ibm = flyfs_mkfs_ibitmap_block(&m->sb);

	memset(in, 0, sizeof(*in));
	le32_set(&in->i_mode, mode);
	le64_set(&in->i_ino, ino);
	le32_set(&in->i_uid, 1000);
	le32_set(&in->i_gid, 100);
	le32_set(&in->i_nlink, nlink);
	le64_set(&in->i_atime, IMG_TIME);
	le64_set(&in->i_mtime, IMG_TIME);
	le64_set(&in->i_ctime, IMG_TIME);
	le64_set(&in->i_btime, IMG_TIME);
	le32_set(&in->i_generation, 1);
	le16_set(&in->i_ext_hdr.en_magic, FLYFS_EXTENT_NODE_MAGIC);
	le16_set(&in->i_ext_hdr.en_max, FLYFS_INODE_EXT_ROOT_MAX);
	img_rd(m, ibm, m->b);
	flyfs_bit_set(m->b + 32, ino);
	img_seal_wr(m, ibm, m->b);
	m->sb.free_inodes--;
	img_sb_write(m, false);
	return ino;
}

static void
img_add_extent(struct flyfs_inode *in, uint64_t lblk, uint64_t pblk,
    uint32_t len)
{
	unsigned n = le16_get(in->i_ext_hdr.en_count);

	le64_set(&in->i_ext[n].e_lblk, lblk);
	le64_set(&in->i_ext[n].e_pblk, pblk);
	le32_set(&in->i_ext[n].e_llen, len);
	le32_set(&in->i_ext[n].e_plen, len);
	le16_set(&in->i_ext_hdr.en_count, (uint16_t)(n + 1));
	le64_set(&in->i_blocks, le64_get(in->i_blocks) + len);
}

/* A regular file of SIZE bytes with one extent per LENS entry. */
static uint64_t
img_file(struct img *m, uint64_t size, const uint32_t *lens, int nlens,
    uint32_t nlink)
{
	struct flyfs_inode in;
	uint64_t ino = img_new_inode(m, S_IFREG | 0644, nlink, &in), lb = 0;

	le64_set(&in.i_size, size);
	for (int i = 0; i < nlens; i++) {
		img_add_extent(&in, lb, img_alloc(m, lens[i]), lens[i]);
		lb += lens[i];
	}
	img_inode_put(m, ino, &in, false);
	return ino;
}

/* Add NAME -> INO to single-leaf directory DIR; a subdirectory adds a link. */
static void
img_link(struct img *m, uint64_t dir, const char *name, uint64_t ino,
    unsigned type)
{
	struct flyfs_inode d;
	struct flyfs_dir_node *dn;
	struct flyfs_dirent *de;
	uint8_t *recs;
	size_t len = strlen(name), sz = FLYFS_DIRENT_SIZE(len);
	unsigned used, off = 0;
	uint64_t key = FLYFS_DIR_KEY(flyfs_dir_hash(m->sb.hash_key, name, len),
	    0), leaf;

	img_inode_get(m, dir, &d);
	leaf = le64_get(d.i_dir.dr_root);
	img_rd(m, leaf, m->b);
	dn = (void *)(m->b + 32);
	recs = (uint8_t *)(dn + 1);
	used = le16_get(dn->dn_used);
	while (off < used) {
		de = (void *)(recs + off);
		if (le64_get(de->de_key) > key)
			break;
		off += (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
	}
	memmove(recs + off + sz, recs + off, used - off);
	memset(recs + off, 0, sz);
	de = (void *)(recs + off);
	le64_set(&de->de_key, key);
	le64_set(&de->de_ino, ino);
	de->de_name_len = (uint8_t)len;
	de->de_type = (uint8_t)type;
	memcpy(de->de_name, name, len);
	le16_set(&dn->dn_used, (uint16_t)(used + sz));
	le16_set(&dn->dn_count, (uint16_t)(le16_get(dn->dn_count) + 1));
	img_seal_wr(m, leaf, m->b);
	img_inode_get(m, dir, &d);
	le64_set(&d.i_dir.dr_entries, le64_get(d.i_dir.dr_entries) + 1);
	if (type == DT_DIR)
		le32_set(&d.i_nlink, le32_get(d.i_nlink) + 1);
	img_inode_put(m, dir, &d, false);
}

/* A new directory with one empty leaf, linked as NAME in PARENT. */
static uint64_t
img_mkdir(struct img *m, uint64_t parent, const char *name)
{
	struct flyfs_inode in;
	uint64_t ino = img_new_inode(m, S_IFDIR | 0755, 2, &in);
	uint64_t leaf = img_alloc(m, 1);

	memset(in.i_root_raw, 0, sizeof(in.i_root_raw));
	le64_set(&in.i_size, 4096);
	le64_set(&in.i_blocks, 1);
	le64_set(&in.i_dir.dr_root, leaf);
	le64_set(&in.i_dir.dr_parent, parent);
	le16_set(&in.i_dir.dr_levels, 1);
	img_inode_put(m, ino, &in, false);
	memset(m->b, 0, 4096);
	flyfs_mblock_seal(m->b, FLYFS_MB_DIR, leaf, 0, ino, m->sb.csum_seed);
	img_wr(m, leaf, m->b);
	if (name != NULL)
		img_link(m, parent, name, ino, DT_DIR);
	return ino;
}

static uint64_t
img_symlink(struct img *m, const char *target)
{
	struct flyfs_inode in;
	uint64_t ino = img_new_inode(m, S_IFLNK | 0777, 1, &in);

	memset(in.i_root_raw, 0, sizeof(in.i_root_raw));
	memcpy(in.i_symlink, target, strlen(target));
	le32_set(&in.i_flags, FLYFS_IFL_INLINE);
	le64_set(&in.i_size, strlen(target));
	img_inode_put(m, ino, &in, false);
	return ino;
}

/* mkfs and populate; leaves M open on a fresh RAM device. */
static int
img_base(struct img *m)
{
	struct flyfs_mkfs_params p;
	char err[256];
	static const uint32_t f3[] = { 3 }, g41[] = { 4, 1 };
	uint64_t a, f, g, s;

	memset(m, 0, sizeof(*m));
	if (blockdev_open_ram(IMG_BYTES, 4096, 0, 0, &m->bd) != 0)
		return ENOMEM;
	m->b = blockdev_alloc_buf(m->bd, 4096);
	flyfs_mkfs_params_init(&p);
	p.have_uuid = p.have_hash_key = p.have_time = true;
	for (int i = 0; i < 16; i++) {
		p.uuid[i] = (uint8_t)(0x10 + i);
		p.hash_key[i] = (uint8_t)(7 * i + 1);
	}
	p.time_sec = IMG_TIME;
	p.root_uid = 1000;
	p.root_gid = 100;
	snprintf(p.label, sizeof(p.label), "golden");
	if (flyfs_mkfs(m->bd, &p, &m->sb, err, sizeof(err)) != 0) {
		fprintf(stderr, "mkfs: %s\n", err);
		return EIO;
	}
	m->next_blk = flyfs_mkfs_meta_end(&m->sb);
	m->next_ino = FLYFS_FIRST_INO + 1;
	a = img_mkdir(m, FLYFS_INO_ROOT, "a");
	f = img_file(m, 10000, f3, 1, 2);
	img_link(m, a, "f", f, DT_REG);
	img_link(m, FLYFS_INO_ROOT, "h", f, DT_REG);
	img_mkdir(m, a, "b");
	g = img_file(m, 20000, g41, 2, 1);
	img_link(m, FLYFS_INO_ROOT, "g", g, DT_REG);
	s = img_symlink(m, "a/f");
	img_link(m, FLYFS_INO_ROOT, "s", s, DT_LNK);
	return 0;
}

/* ---- The damage, one function per case ------------------------------- */

#define INO_A	17
#define INO_F	18
#define INO_B	19
#define INO_G	20

static void
dmg_none(struct img *m)
{
	(void)m;
}

static void
dmg_bad_magic(struct img *m)
{
	img_rd(m, 0, m->b);
	memcpy(m->b, "EXT4FSXX", 8);
	img_wr(m, 0, m->b);
}

static void
dmg_not_flyfs(struct img *m)
{
	memset(m->b, 0x5a, 4096);
	img_wr(m, 0, m->b);
	img_wr(m, m->sb.backup_block, m->b);
}

static void
dmg_bad_sb_csum(struct img *m)
{
	img_rd(m, 0, m->b);
	m->b[64] ^= 0x20;		/* "golden" -> "Golden" */
	img_wr(m, 0, m->b);
}

static void
dmg_impossible_sizes(struct img *m)
{
	m->sb.data_block_size = 3000;
	img_sb_write(m, true);
}

static void
dmg_truncated(struct img *m)
{
	(void)m;	/* the file is cut by the writer: see img_cases */
}

static void
dmg_dir_loop(struct img *m)
{
	img_link(m, INO_B, "up", INO_A, DT_DIR);
	/* As if made by a link(2) that does not count: b keeps nlink 2. */
	{
		struct flyfs_inode in;
		img_inode_get(m, INO_B, &in);
		le32_set(&in.i_nlink, 2);
		img_inode_put(m, INO_B, &in, false);
	}
}

/* Two directories containing each other, neither reachable. */
static void
dmg_dir_cycle(struct img *m)
{
	uint64_t c = img_mkdir(m, FLYFS_INO_ROOT, NULL);
	uint64_t d = img_mkdir(m, c, NULL);
	struct flyfs_inode in;

	img_link(m, c, "d", d, DT_DIR);
	img_link(m, d, "c", c, DT_DIR);
	img_inode_get(m, c, &in);
	le64_set(&in.i_dir.dr_parent, d);
	img_inode_put(m, c, &in, false);
}

static void
dmg_extent_outside(struct img *m)
{
	struct flyfs_inode in;

	img_inode_get(m, INO_G, &in);
	le64_set(&in.i_ext[1].e_pblk, 5000);
	img_inode_put(m, INO_G, &in, false);
}

static void
dmg_shared_block(struct img *m)
{
	struct flyfs_inode f, g;

	img_inode_get(m, INO_F, &f);
	img_inode_get(m, INO_G, &g);
	g.i_ext[1].e_pblk = f.i_ext[0].e_pblk;
	img_inode_put(m, INO_G, &g, false);
}

static void
dmg_bad_inode_csum(struct img *m)
{
	struct flyfs_inode in;

	img_inode_get(m, INO_F, &in);
	le32_set(&in.i_uid, 4242);
	img_inode_put(m, INO_F, &in, true);
}

static void
dmg_wrong_nlink(struct img *m)
{
	struct flyfs_inode in;

	img_inode_get(m, INO_G, &in);
	le32_set(&in.i_nlink, 3);
	img_inode_put(m, INO_G, &in, false);
}

static void
dmg_leaked_blocks(struct img *m)
{
	img_mark_blocks(m, 3000, 10, true);
}

/* Inode 22: two blocks, unlinked while open, listed in the orphan file. */
static void
dmg_orphan(struct img *m)
{
	static const uint32_t two[] = { 2 };
	uint64_t ino = img_file(m, 8192, two, 1, 0);
	struct flyfs_orphan_block *ob = (void *)m->b;
	struct flyfs_inode in;
	uint64_t blk = flyfs_mkfs_orphan_block(&m->sb);

	img_inode_get(m, ino, &in);
	le32_set(&in.i_flags, FLYFS_IFL_ORPHAN);
	img_inode_put(m, ino, &in, false);
	img_rd(m, blk, m->b);
	le64_set(&ob->ob_ino[0], ino);
	le32_set(&ob->ob_count, 1);
	img_seal_wr(m, blk, m->b);
	/* After a crash the superblock is not marked clean. */
	m->sb.state &= ~FLYFS_STATE_CLEAN;
	img_sb_write(m, false);
}

/* Inode 22: a file with one link that no directory names. */
static void
dmg_unattached(struct img *m)
{
	static const uint32_t one[] = { 1 };

	img_file(m, 100, one, 1, 1);
}

/*
 * A crash with one committed transaction in the journal: it holds the
 * inode block that fixes /g's link count (wrong at home), and a second
 * transaction without its commit block, which must not be replayed.
 */
static void
dmg_journal(struct img *m)
{
	struct flyfs_journal_super *js = (void *)m->b;
	struct flyfs_journal_desc *d = (void *)m->b;
	struct flyfs_journal_commit *c = (void *)m->b;
	uint64_t j = m->sb.journal_start, home;
	uint8_t *good = blockdev_alloc_buf(m->bd, 4096);
	struct flyfs_inode in;

	home = m->sb.ifile_start + INO_G / 16;
	img_rd(m, home, good);
	/* The home copy: /g with a wrong link count. */
	img_inode_get(m, INO_G, &in);
	le32_set(&in.i_nlink, 5);
	img_inode_put(m, INO_G, &in, false);

	/* Transaction 7 at log block 1: descriptor, data, commit. */
	memset(m->b, 0, 4096);
	le32_set(&d->jd_count, 1);
	le64_set(&d->jd_tag[0].jt_blocknr, home);
	le32_set(&d->jd_tag[0].jt_flags, FLYFS_JTAG_LAST);
	le32_set(&d->jd_tag[0].jt_crc, flyfs_crc32c(m->sb.csum_seed, good,
	    4096));
	flyfs_mblock_seal(m->b, FLYFS_MB_JDESC, j + 1, 7, 0, m->sb.csum_seed);
	img_wr(m, j + 1, m->b);
	img_wr(m, j + 2, good);
	memset(m->b, 0, 4096);
	le64_set(&c->jc_sec, IMG_TIME);
	le32_set(&c->jc_blocks, 3);
	flyfs_mblock_seal(m->b, FLYFS_MB_JCOMMIT, j + 3, 7, 0,
	    m->sb.csum_seed);
	img_wr(m, j + 3, m->b);

	/* Transaction 8: a descriptor and data, no commit. */
	memset(m->b, 0, 4096);
	le32_set(&d->jd_count, 1);
	le64_set(&d->jd_tag[0].jt_blocknr, m->sb.gdt_start);
	le32_set(&d->jd_tag[0].jt_flags, FLYFS_JTAG_LAST);
	flyfs_mblock_seal(m->b, FLYFS_MB_JDESC, j + 4, 8, 0, m->sb.csum_seed);
	img_wr(m, j + 4, m->b);
	memset(m->b, 0xee, 4096);
	img_wr(m, j + 5, m->b);

	/* The journal superblock points at transaction 7. */
	img_rd(m, j, m->b);
	le64_set(&js->js_sequence, 7);
	le64_set(&js->js_start, 1);
	img_seal_wr(m, j, m->b);
	blockdev_free_buf(good);
	m->sb.state &= ~FLYFS_STATE_CLEAN;
	m->sb.last_txid = 6;
	img_sb_write(m, false);
}

/*
 * Each case: name, damage, and the fsck runs to make on it, in order
 * ("-n", "-p", "-y"; each with -f).  The last -n shows the result.
 */
struct img_case {
	const char *name;
	void (*damage)(struct img *m);
	const char *runs;		/* letters: n, p, y */
	uint64_t truncate_to;		/* bytes, 0 = keep */
};

static const struct img_case img_cases[] = {
	{ "clean", dmg_none, "n", 0 },
	{ "bad_magic", dmg_bad_magic, "npyn", 0 },
	{ "not_flyfs", dmg_not_flyfs, "n", 0 },
	{ "bad_sb_csum", dmg_bad_sb_csum, "npn", 0 },
	{ "impossible_sizes", dmg_impossible_sizes, "n", 0 },
	{ "truncated", dmg_truncated, "np", 12u << 20 },
	{ "dir_loop", dmg_dir_loop, "npn", 0 },
	{ "dir_cycle", dmg_dir_cycle, "npn", 0 },
	{ "extent_outside", dmg_extent_outside, "npyn", 0 },
	{ "shared_block", dmg_shared_block, "nyn", 0 },
	{ "bad_inode_csum", dmg_bad_inode_csum, "npn", 0 },
	{ "wrong_nlink", dmg_wrong_nlink, "npn", 0 },
	{ "leaked_blocks", dmg_leaked_blocks, "npn", 0 },
	{ "orphan", dmg_orphan, "npn", 0 },
	{ "unattached", dmg_unattached, "npn", 0 },
	{ "journal_replay", dmg_journal, "npn", 0 },
};
#define N_IMG_CASES	(int)(sizeof(img_cases) / sizeof(img_cases[0]))

static const struct img_case *
img_case_find(const char *name)
{
	for (int i = 0; i < N_IMG_CASES; i++)
		if (strcmp(img_cases[i].name, name) == 0)
			return &img_cases[i];
	return NULL;
}

/* Make case C on a fresh RAM device; *BDP receives it (caller closes). */
static int
img_make(const struct img_case *c, struct blockdev **bdp)
{
	struct img m;
	int error;

	if ((error = img_base(&m)) != 0)
		return error;
	c->damage(&m);
	blockdev_free_buf(m.b);
	*bdp = m.bd;
	return 0;
}

/* Write the first LEN bytes of BD to the file PATH. */
static int
img_save(struct blockdev *bd, const char *path, uint64_t len)
{
	uint8_t *buf = blockdev_alloc_buf(bd, 1u << 20);
	FILE *fp = fopen(path, "w");
	int error = 0;

	if (buf == NULL || fp == NULL) {
		error = errno ? errno : ENOMEM;
		goto out;
	}
	for (uint64_t off = 0; off < len && error == 0; off += 1u << 20) {
		size_t n = len - off < (1u << 20) ? (size_t)(len - off) :
		    (1u << 20);
		if ((error = blockdev_pread(bd, buf, n, (off_t)off)) == 0 &&
		    fwrite(buf, 1, n, fp) != n)
			error = EIO;
	}
out:
	if (fp != NULL && fclose(fp) != 0 && error == 0)
		error = errno;
	blockdev_free_buf(buf);
	return error;
}
