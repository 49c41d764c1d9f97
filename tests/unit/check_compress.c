/*
 * check_compress.c - the compression module (fs/compress.c): codec round
 * trips, the encoding rule, corrupt frames, policy text and resolution,
 * the skip heuristic, the worker pool and the statistics; then end to end
 * through flyfs.h on a RAM image mounted with compress=zstd:3: every byte
 * checked against a model, across remounts, with fsck clean.
 *
 * The end-to-end cases check the data in any build; their assertions on
 * compression itself (blocks compressed, bytes saved) need the strategy
 * integration (fs/file.c -> compress.c) and are skipped, with a note on
 * stderr, when flyfs_stats_foreach does not report compress_* figures.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/falloc.h>

#include "blockdev/blockdev.h"
#include "fs/compress.h"
#include "fs/flyfs.h"
#include "fs/format.h"
#include "fs/fsck_core.h"
#include "fs/mkfs_core.h"
#include "fs/ondisk.h"
#include "fsck_util.h"

#define KB	1024u
#define BS	FLYFS_BLOCK_SIZE

/* ---- Data ---------------------------------------------------------------- */

static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void
fill_random(void *p, size_t len, uint64_t seed)
{
	uint8_t *b = p;
	uint64_t s = seed | 1;

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(rnd(&s) >> 24);
}

/* Words from a small dictionary: compresses 3-5x, like text. */
static void
fill_text(void *p, size_t len, uint64_t seed)
{
	static const char *w[] = { "buffer ", "cache ", "flush ", "dirty ",
	    "extent ", "zstd ", "the ", "of ", "daemon ", "strategy\n" };
	char *b = p;
	uint64_t s = seed | 1;
	size_t i = 0;

	while (i < len) {
		const char *x = w[rnd(&s) % 10];

		while (*x && i < len)
			b[i++] = *x++;
	}
}

/* PCT percent random bytes in each 4 KiB, the rest zero. */
static void
fill_mixed(void *p, size_t len, unsigned pct, uint64_t seed)
{
	memset(p, 0, len);
	for (size_t off = 0; off < len; off += BS)
		fill_random((char *)p + off, BS * pct / 100, seed + off);
}

static void *
xalloc(size_t n)
{
	void *p = NULL;

	ck_assert_int_eq(posix_memalign(&p, 4096, n ? n : 1), 0);
	return p;
}

static struct fs_compress *
new_engine(unsigned nworkers)
{
	struct fs_compress_conf conf;
	struct fs_compress *fc;

	memset(&conf, 0, sizeof(conf));
	conf.mount.mode = FS_COMP_ZSTD;
	conf.image.mode = FS_COMP_OFF;
	conf.nworkers = nworkers;
	ck_assert_int_eq(fs_compress_create(&conf, &fc), 0);
	return fc;
}

/* Encode synchronously and check the result against the rule. */
static void
check_encoded(const struct fs_encoded *e, const void *src, size_t len)
{
	ck_assert_uint_eq(e->e_llen, len / BS);
	switch (e->e_kind) {
	case FS_ENC_HOLE:
		ck_assert(fs_data_is_zero(src, len));
		ck_assert_uint_eq(e->e_plen, 0);
		break;
	case FS_ENC_RAW:
		ck_assert_uint_eq(e->e_plen, e->e_llen);
		ck_assert_uint_eq(e->e_cbytes, 0);
		ck_assert_uint_eq(e->e_comp, FLYFS_COMP_NONE);
		ck_assert_ptr_eq(e->e_data, src);
		ck_assert_uint_eq(e->e_iov.iov_len, len);
		break;
	case FS_ENC_ZSTD: {
		void *out = xalloc(len);
		const uint8_t *d = e->e_data;

		ck_assert_uint_eq(e->e_comp, FLYFS_COMP_ZSTD);
		ck_assert_uint_lt(e->e_plen, e->e_llen);
		ck_assert_uint_eq(e->e_plen, (e->e_cbytes + BS - 1) / BS);
		ck_assert_uint_eq(((uintptr_t)d) % 4096, 0);
		ck_assert_uint_eq(e->e_iov.iov_len, (size_t)e->e_plen * BS);
		for (size_t i = e->e_cbytes; i < (size_t)e->e_plen * BS; i++)
			ck_assert_uint_eq(d[i], 0);
		ck_assert_int_eq(fs_zstd_decompress(d, e->e_cbytes, out, len),
		    0);
		ck_assert_int_eq(memcmp(out, src, len), 0);
		free(out);
		break;
	}
	}
}

/* ---- Codec ------------------------------------------------------------------ */

static const size_t sizes[] = { 8 * KB, 16 * KB, 64 * KB, 128 * KB };

START_TEST(test_roundtrip_compressible)
{
	size_t len = sizes[_i];
	char *src = xalloc(len), *dst = xalloc(len), *out = xalloc(len);
	size_t cb;

	fill_text(src, len, 42 + _i);
	ck_assert_int_eq(fs_zstd_compress(src, len, 3, dst, len, &cb), 0);
	ck_assert_uint_lt(cb, len / 2);
	ck_assert_int_eq(fs_zstd_decompress(dst, cb, out, len), 0);
	ck_assert_int_eq(memcmp(src, out, len), 0);
	free(src);
	free(dst);
	free(out);
}
END_TEST

START_TEST(test_incompressible)
{
	size_t len = sizes[_i];
	char *src = xalloc(len), *dst = xalloc(len + 4096), *out = xalloc(len);
	size_t cb;

	fill_random(src, len, 7 + _i);
	/* Must save a block: capacity llen - 1 blocks is too small. */
	ck_assert_int_eq(fs_zstd_compress(src, len, 3, dst, len - BS, &cb),
	    E2BIG);
	/* With room the frame is made (bigger than the input) and is exact. */
	ck_assert_int_eq(fs_zstd_compress(src, len, 3, dst, len + 4096, &cb),
	    0);
	ck_assert_uint_gt(cb, len - BS);
	ck_assert_int_eq(fs_zstd_decompress(dst, cb, out, len), 0);
	ck_assert_int_eq(memcmp(src, out, len), 0);
	free(src);
	free(dst);
	free(out);
}
END_TEST

/* Encoding rule over a sweep of compressibility (loop: percent random). */
START_TEST(test_encode_mixed_sweep)
{
	struct fs_compress *fc = new_engine(1);
	unsigned pct = (unsigned)_i * 10;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t len = sizes[k];
		char *src = xalloc(len);
		struct fs_encoded e;

		fill_mixed(src, len, pct, 1000 + pct);
		if (pct == 0)
			src[len - 1] = 1;	/* not a hole */
		fs_compress_encode(fc, NULL, FLYFS_COMP_ZSTD, 3, src, len, &e);
		check_encoded(&e, src, len);
		/* Half random is 2 KiB per 4 KiB plus framing: a saving
		 * of a whole block needs at least 16 KiB. */
		if (pct <= 40 || (pct <= 50 && len >= 16 * KB))
			ck_assert_int_eq(e.e_kind, FS_ENC_ZSTD);
		/* Random data is judged by its entropy, untried. */
		if (pct == 100)
			ck_assert_int_eq(e.e_why, FS_WHY_ENTROPY);
		fs_encoded_fini(&e);
		free(src);
	}
	fs_compress_destroy(fc);
}
END_TEST

START_TEST(test_zero_blocks)
{
	struct fs_compress *fc = new_engine(1);
	size_t lens[] = { 1, 7, 63, 64, 65, 4096, 16 * KB, 128 * KB };

	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		char *b = calloc(1, lens[k]);

		ck_assert(fs_data_is_zero(b, lens[k]));
		b[lens[k] - 1] = 1;
		ck_assert(!fs_data_is_zero(b, lens[k]));
		b[lens[k] - 1] = 0;
		b[0] = (char)0x80;
		ck_assert(!fs_data_is_zero(b, lens[k]));
		free(b);
	}
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		char *b = xalloc(sizes[k]);
		struct fs_encoded e;

		memset(b, 0, sizes[k]);
		fs_compress_encode(fc, NULL, FLYFS_COMP_ZSTD, 3, b, sizes[k],
		    &e);
		ck_assert_int_eq(e.e_kind, FS_ENC_HOLE);
		check_encoded(&e, b, sizes[k]);
		fs_encoded_fini(&e);
		/* Compression off: zeros are still recognised. */
		fs_compress_encode(fc, NULL, FLYFS_COMP_NONE, 0, b, sizes[k],
		    &e);
		ck_assert_int_eq(e.e_kind, FS_ENC_HOLE);
		fs_encoded_fini(&e);
		b[5] = 1;
		fs_compress_encode(fc, NULL, FLYFS_COMP_NONE, 0, b, sizes[k],
		    &e);
		ck_assert_int_eq(e.e_kind, FS_ENC_RAW);
		ck_assert_int_eq(e.e_why, FS_WHY_POLICY);
		check_encoded(&e, b, sizes[k]);
		fs_encoded_fini(&e);
		free(b);
	}
	fs_compress_destroy(fc);
}
END_TEST

/* The file's last data block, cut at roundup(i_size, 4 KiB). */
START_TEST(test_partial_last_block)
{
	struct fs_compress *fc = new_engine(1);
	char *b = xalloc(16 * KB);
	struct fs_encoded e;

	for (size_t len = BS; len < 16 * KB; len += BS) {
		fill_text(b, len, len);
		fs_compress_encode(fc, NULL, FLYFS_COMP_ZSTD, 3, b, len, &e);
		check_encoded(&e, b, len);
		if (len == BS) {
			ck_assert_int_eq(e.e_kind, FS_ENC_RAW);
			ck_assert_int_eq(e.e_why, FS_WHY_SMALL);
		} else {
			ck_assert_int_eq(e.e_kind, FS_ENC_ZSTD);
		}
		fs_encoded_fini(&e);
	}
	/* A tail of text followed by zeros (bytes past i_size). */
	memset(b, 0, 16 * KB);
	fill_text(b, 5000, 9);
	fs_compress_encode(fc, NULL, FLYFS_COMP_ZSTD, 3, b, 8 * KB, &e);
	ck_assert_int_eq(e.e_kind, FS_ENC_ZSTD);
	check_encoded(&e, b, 8 * KB);
	fs_encoded_fini(&e);
	free(b);
	fs_compress_destroy(fc);
}
END_TEST

START_TEST(test_corrupt_frame)
{
	size_t len = 16 * KB;
	uint8_t *src = xalloc(len), *frame = xalloc(len + 64),
	    *out = xalloc(2 * len);
	size_t cb;

	fill_text(src, len, 3);
	ck_assert_int_eq(fs_zstd_compress(src, len, 3, frame, len, &cb), 0);
	ck_assert_int_eq(fs_zstd_decompress(frame, cb, out, len), 0);
	/* Wrong lengths: shorter or longer frame, other content size. */
	ck_assert_int_eq(fs_zstd_decompress(frame, cb - 1, out, len), EUCLEAN);
	memset(frame + cb, 0, 64);
	ck_assert_int_eq(fs_zstd_decompress(frame, cb + 1, out, len), EUCLEAN);
	ck_assert_int_eq(fs_zstd_decompress(frame, cb + 64, out, len),
	    EUCLEAN);
	ck_assert_int_eq(fs_zstd_decompress(frame, cb, out, len - BS),
	    EUCLEAN);
	ck_assert_int_eq(fs_zstd_decompress(frame, cb, out, len + BS),
	    EUCLEAN);
	/* Every byte flipped in turn: never accepted with other content. */
	for (size_t i = 0; i < cb; i++) {
		int r;

		frame[i] ^= 0x5a;
		r = fs_zstd_decompress(frame, cb, out, len);
		ck_assert_msg(r == EUCLEAN || (r == 0 &&
		    memcmp(out, src, len) == 0), "byte %zu: %d", i, r);
		frame[i] ^= 0x5a;
	}
	/* Garbage and zeros. */
	fill_random(frame, 512, 5);
	ck_assert_int_eq(fs_zstd_decompress(frame, 512, out, len), EUCLEAN);
	memset(frame, 0, 512);
	ck_assert_int_eq(fs_zstd_decompress(frame, 512, out, len), EUCLEAN);
	free(src);
	free(frame);
	free(out);
}
END_TEST

/* ---- Policy ------------------------------------------------------------------ */

START_TEST(test_policy_text)
{
	static const struct {
		const char *s;
		int error;
		enum fs_comp_mode mode;
		unsigned level;
		const char *canon;
	} t[] = {
		{ "none", 0, FS_COMP_OFF, 0, "none" },
		{ "zstd", 0, FS_COMP_ZSTD, 0, "zstd" },
		{ "zstd:3", 0, FS_COMP_ZSTD, 3, "zstd:3" },
		{ "zstd:1", 0, FS_COMP_ZSTD, 1, "zstd:1" },
		{ "zstd:19", 0, FS_COMP_ZSTD, 19, "zstd:19" },
		{ "zstd:7\n", 0, FS_COMP_ZSTD, 7, "zstd:7" },
		{ "default", 0, FS_COMP_DEFAULT, 0, "default" },
		{ "zstd:0", EINVAL, 0, 0, NULL },
		{ "zstd:20", EINVAL, 0, 0, NULL },
		{ "zstd:", EINVAL, 0, 0, NULL },
		{ "zstd:-1", EINVAL, 0, 0, NULL },
		{ "zstd:3x", EINVAL, 0, 0, NULL },
		{ "zstd3", EINVAL, 0, 0, NULL },
		{ "lz4", EINVAL, 0, 0, NULL },
		{ "", EINVAL, 0, 0, NULL },
		{ "nonesuch", EINVAL, 0, 0, NULL },
		{ "zstd:99999999999999999999", EINVAL, 0, 0, NULL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct fs_comp_setting s;
		char buf[16];

		ck_assert_msg(fs_comp_parse(t[i].s, strlen(t[i].s), &s) ==
		    t[i].error, "%s", t[i].s);
		if (t[i].error)
			continue;
		ck_assert_int_eq(s.mode, t[i].mode);
		ck_assert_uint_eq(s.level, t[i].level);
		ck_assert_int_eq(fs_comp_format(&s, buf, sizeof(buf)),
		    (int)strlen(t[i].canon));
		ck_assert_str_eq(buf, t[i].canon);
		ck_assert_int_eq(fs_comp_format(&s, buf, 3), -1);
	}
}
END_TEST

START_TEST(test_policy_inode_inherit)
{
	struct flyfs_inode dir, child;
	struct fs_comp_setting s, g;

	memset(&dir, 0, sizeof(dir));
	memset(&child, 0, sizeof(child));
	le32_set(&dir.i_flags, FLYFS_IFL_SYSTEM);
	fs_comp_inode_get(&dir, &g);
	ck_assert_int_eq(g.mode, FS_COMP_DEFAULT);

	s.mode = FS_COMP_OFF;
	s.level = 0;
	ck_assert_int_eq(fs_comp_inode_set(&dir, &s), 0);
	ck_assert(le32_get(dir.i_flags) & FLYFS_IFL_NOCOMP);
	ck_assert(le32_get(dir.i_flags) & FLYFS_IFL_SYSTEM);
	fs_comp_inherit(&dir, &child);
	fs_comp_inode_get(&child, &g);
	ck_assert_int_eq(g.mode, FS_COMP_OFF);

	s.mode = FS_COMP_ZSTD;
	s.level = 9;
	ck_assert_int_eq(fs_comp_inode_set(&dir, &s), 0);
	ck_assert(!(le32_get(dir.i_flags) & FLYFS_IFL_NOCOMP));
	ck_assert_uint_eq(dir.i_comp, FLYFS_COMP_ZSTD);
	ck_assert_uint_eq(dir.i_comp_level, 9);
	fs_comp_inherit(&dir, &child);
	fs_comp_inode_get(&child, &g);
	ck_assert_int_eq(g.mode, FS_COMP_ZSTD);
	ck_assert_uint_eq(g.level, 9);

	s.mode = FS_COMP_DEFAULT;
	ck_assert_int_eq(fs_comp_inode_set(&child, &s), 0);
	fs_comp_inode_get(&child, &g);
	ck_assert_int_eq(g.mode, FS_COMP_DEFAULT);
	ck_assert_uint_eq(child.i_comp, 0);
	ck_assert(!(le32_get(child.i_flags) & FLYFS_IFL_NOCOMP));

	s.mode = FS_COMP_ZSTD;
	s.level = 20;
	ck_assert_int_eq(fs_comp_inode_set(&child, &s), EINVAL);
}
END_TEST

START_TEST(test_policy_resolve)
{
	struct fs_compress_conf conf;
	struct fs_compress *fc;
	struct flyfs_inode din;
	struct fs_comp_setting s;
	uint8_t comp;
	int level;

	memset(&conf, 0, sizeof(conf));
	memset(&din, 0, sizeof(din));
	conf.mount.mode = FS_COMP_DEFAULT;	/* no -o compress */
	conf.image.mode = FS_COMP_ZSTD;		/* mkfs -C zstd:5 */
	conf.image.level = 5;
	conf.nworkers = 1;
	ck_assert_int_eq(fs_compress_create(&conf, &fc), 0);

	/* Image default. */
	fs_compress_resolve(fc, &din, &comp, &level);
	ck_assert_uint_eq(comp, FLYFS_COMP_ZSTD);
	ck_assert_int_eq(level, 5);
	fs_compress_resolve(fc, NULL, &comp, &level);
	ck_assert_int_eq(level, 5);
	/* Live (or mount) beats the image. */
	s.mode = FS_COMP_OFF;
	s.level = 0;
	fs_compress_set_live(fc, &s);
	fs_compress_resolve(fc, &din, &comp, &level);
	ck_assert_uint_eq(comp, FLYFS_COMP_NONE);
	ck_assert_int_eq(level, 0);
	/* Per-file beats live. */
	s.mode = FS_COMP_ZSTD;
	s.level = 0;
	fs_comp_inode_set(&din, &s);
	fs_compress_resolve(fc, &din, &comp, &level);
	ck_assert_uint_eq(comp, FLYFS_COMP_ZSTD);
	ck_assert_int_eq(level, FLYFS_ZSTD_LEVEL_DEFAULT);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_level", 7), 0);
	fs_compress_resolve(fc, &din, &comp, &level);
	ck_assert_int_eq(level, 7);
	/* Per-file none beats live zstd. */
	s.mode = FS_COMP_ZSTD;
	s.level = 2;
	fs_compress_set_live(fc, &s);
	s.mode = FS_COMP_OFF;
	fs_comp_inode_set(&din, &s);
	fs_compress_resolve(fc, &din, &comp, &level);
	ck_assert_uint_eq(comp, FLYFS_COMP_NONE);
	fs_compress_resolve(fc, NULL, &comp, &level);
	ck_assert_int_eq(level, 2);
	/* Live "default" falls back to the image. */
	s.mode = FS_COMP_DEFAULT;
	fs_compress_set_live(fc, &s);
	fs_compress_get_live(fc, &s);
	ck_assert_int_eq(s.mode, FS_COMP_ZSTD);
	ck_assert_uint_eq(s.level, 5);
	fs_compress_destroy(fc);
}
END_TEST

START_TEST(test_tunables)
{
	struct fs_compress *fc = new_engine(3);
	uint64_t v;

	ck_assert_int_eq(fs_compress_tunable_get(fc, "compress_workers", &v),
	    0);
	ck_assert_uint_eq(v, 3);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_workers", 4),
	    EPERM);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "nonesuch", 4), ENOENT);
	ck_assert_int_eq(fs_compress_tunable_get(fc, "nonesuch", &v), ENOENT);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_level", 0),
	    EINVAL);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_level", 20),
	    EINVAL);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_retry_every",
	    0), EINVAL);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_skip_after",
	    0), 0);
	ck_assert_int_eq(fs_compress_tunable_get(fc, "compress_skip_after",
	    &v), 0);
	ck_assert_uint_eq(v, 0);
	fs_compress_destroy(fc);
}
END_TEST

/* ---- Heuristic ----------------------------------------------------------------- */

static enum fs_enc_why
enc_why(struct fs_compress *fc, struct fs_comp_inode *ci, const void *b,
    size_t len)
{
	struct fs_encoded e;
	enum fs_enc_why w;

	fs_compress_encode(fc, ci, FLYFS_COMP_ZSTD, 1, b, len, &e);
	w = e.e_why;
	fs_encoded_fini(&e);
	return w;
}

/* The entropy estimate: where typical data falls, in millibits/byte. */
START_TEST(test_entropy_estimate)
{
	size_t len = 128 * KB;
	char *b = xalloc(len);

	memset(b, 0, len);
	ck_assert_uint_eq(fs_compress_entropy(b, len), 0);
	fill_random(b, len, 21);
	ck_assert_uint_gt(fs_compress_entropy(b, len), 7900);
	ck_assert_uint_gt(fs_compress_entropy(b, 16 * KB), 7600);
	ck_assert_uint_le(fs_compress_entropy(b, len), 8000);
	fill_text(b, len, 22);
	ck_assert_uint_lt(fs_compress_entropy(b, len), 5500);
	/* A quarter zeros: about 6.8 bits, under the default 7.5. */
	fill_random(b, len, 23);
	for (size_t off = 0; off < len; off += 16)
		memset(b + off, 0, 4);
	ck_assert_uint_gt(fs_compress_entropy(b, len), 6500);
	ck_assert_uint_lt(fs_compress_entropy(b, len), 7100);
	free(b);
}
END_TEST

/* Judged by entropy: raw untried, counted as raw and as a failed try;
 * compressible data in the same file is still compressed. */
START_TEST(test_entropy_judge)
{
	struct fs_compress *fc = new_engine(1);
	struct fs_comp_inode ci;
	size_t len = 64 * KB;
	char *rb = xalloc(len), *tb = xalloc(len);
	uint64_t v;

	memset(&ci, 0, sizeof(ci));
	fill_random(rb, len, 31);
	fill_text(tb, len, 32);
	ck_assert_int_eq(enc_why(fc, &ci, rb, len), FS_WHY_ENTROPY);
	ck_assert_uint_eq(ci.ci_fails, 1);
	ck_assert_uint_eq(ci.ci_st.raw_blocks, 1);
	ck_assert_uint_eq(ci.ci_st.comp_ns, 0);
	ck_assert_int_eq(enc_why(fc, &ci, tb, len), FS_WHY_NONE);
	ck_assert_uint_eq(ci.ci_fails, 0);
	ck_assert_int_eq(fs_compress_tunable_get(fc, "compress_entropy_max",
	    &v), 0);
	ck_assert_uint_eq(v, 7500);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_entropy_max",
	    8001), EINVAL);
	/* Off: the random block is tried and fails. */
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_entropy_max",
	    0), 0);
	ck_assert_int_eq(enc_why(fc, &ci, rb, len), FS_WHY_NOSAVE);
	free(rb);
	free(tb);
	fs_compress_destroy(fc);
}
END_TEST

/* Loop: (K, N) pairs. */
static const unsigned heur_k[] = { 8, 1, 3, 5 };
static const unsigned heur_n[] = { 16, 1, 4, 2 };

START_TEST(test_heuristic_skip_retry)
{
	struct fs_compress *fc = new_engine(1);
	struct fs_comp_inode ci;
	unsigned k = heur_k[_i], n = heur_n[_i];
	size_t len = 16 * KB;
	char *rb = xalloc(len);

	memset(&ci, 0, sizeof(ci));
	/* The K/N logic alone: random data must be tried to fail. */
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_entropy_max",
	    0), 0);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_skip_after",
	    k), 0);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_retry_every",
	    n), 0);
	fill_random(rb, len, 11);
	/* K failures: each one tried. */
	for (unsigned i = 0; i < k; i++)
		ck_assert_int_eq(enc_why(fc, &ci, rb, len), FS_WHY_NOSAVE);
	ck_assert_uint_eq(ci.ci_fails, k);
	/* Then, three rounds of: N - 1 skipped, the Nth tried. */
	for (int round = 0; round < 3; round++) {
		for (unsigned i = 0; i + 1 < n; i++)
			ck_assert_int_eq(enc_why(fc, &ci, rb, len),
			    FS_WHY_SKIPPED);
		ck_assert_int_eq(enc_why(fc, &ci, rb, len), FS_WHY_NOSAVE);
	}
	ck_assert_uint_eq(ci.ci_st.raw_blocks, k + 3);
	ck_assert_uint_eq(ci.ci_st.skipped_blocks, 3 * (n - 1));
	/* Zeros and small blocks neither count nor reset. */
	{
		char *z = calloc(1, len);

		ck_assert_int_eq(enc_why(fc, &ci, z, len), FS_WHY_NONE);
		ck_assert_int_eq(enc_why(fc, &ci, rb, BS), FS_WHY_SMALL);
		free(z);
	}
	ck_assert_uint_ge(ci.ci_fails, k);
	free(rb);
	fs_compress_destroy(fc);
}
END_TEST

START_TEST(test_heuristic_reset_on_success)
{
	struct fs_compress *fc = new_engine(1);
	struct fs_comp_inode ci;
	size_t len = 16 * KB;
	char *rb = xalloc(len), *tb = xalloc(len);
	int tried_at = -1;

	memset(&ci, 0, sizeof(ci));
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_entropy_max",
	    0), 0);
	fill_random(rb, len, 12);
	fill_text(tb, len, 13);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(enc_why(fc, &ci, rb, len), FS_WHY_NOSAVE);
	/* In skip mode the text blocks are skipped until the retry... */
	for (int i = 0; i < 16 && tried_at < 0; i++) {
		struct fs_encoded e;

		fs_compress_encode(fc, &ci, FLYFS_COMP_ZSTD, 3, tb, len, &e);
		if (e.e_kind == FS_ENC_ZSTD)
			tried_at = i;
		else
			ck_assert_int_eq(e.e_why, FS_WHY_SKIPPED);
		fs_encoded_fini(&e);
	}
	ck_assert_int_eq(tried_at, 15);
	/* ...whose success puts the file back to trying every block. */
	ck_assert_uint_eq(ci.ci_fails, 0);
	for (int i = 0; i < 7; i++)
		ck_assert_int_eq(enc_why(fc, &ci, rb, len), FS_WHY_NOSAVE);
	ck_assert_int_eq(enc_why(fc, &ci, tb, len), FS_WHY_NONE);
	/* compress_skip_after 0: heuristic off, always tried. */
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_skip_after", 0),
	    0);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(enc_why(fc, &ci, rb, len), FS_WHY_NOSAVE);
	free(rb);
	free(tb);
	fs_compress_destroy(fc);
}
END_TEST

/* ---- Pool ------------------------------------------------------------------------ */

#define MAXTHR 64

struct pool_test {
	pthread_mutex_t	mtx;
	pthread_t	thr[MAXTHR];
	int		nthr;
	pthread_t	submitter;
	int		inline_calls;
	int		done;			/* (a) */
	int		*count;			/* per job (a) */
	char		**src;
	size_t		len;
	int		bad;			/* (a) */
};

struct pool_job {
	struct pool_test *pt;
	int		idx;
};

static void
pool_done(void *arg, struct fs_encoded *enc)
{
	struct pool_job *pj = arg;
	struct pool_test *pt = pj->pt;
	pthread_t me = pthread_self();
	void *out = malloc(pt->len);
	int found = 0;

	__atomic_add_fetch(&pt->count[pj->idx], 1, __ATOMIC_RELAXED);
	if (enc->e_kind != FS_ENC_ZSTD ||
	    fs_zstd_decompress(enc->e_data, enc->e_cbytes, out, pt->len) ||
	    memcmp(out, pt->src[pj->idx], pt->len) != 0)
		__atomic_add_fetch(&pt->bad, 1, __ATOMIC_RELAXED);
	free(out);
	pthread_mutex_lock(&pt->mtx);
	if (pthread_equal(me, pt->submitter)) {
		pt->inline_calls++;
	} else {
		for (int i = 0; i < pt->nthr; i++)
			found |= pthread_equal(pt->thr[i], me);
		if (!found && pt->nthr < MAXTHR)
			pt->thr[pt->nthr++] = me;
	}
	pthread_mutex_unlock(&pt->mtx);
	/* Long enough that one worker cannot take every job. */
	usleep(100);
	fs_encoded_release(enc);
	__atomic_add_fetch(&pt->done, 1, __ATOMIC_RELEASE);
}

static atomic_int thread_inits;

static void
count_thread_init(void)
{
	atomic_fetch_add(&thread_inits, 1);
}

static void
pool_run(unsigned nworkers, int njobs, uint64_t queue_max, bool destroy_now)
{
	struct fs_compress_conf conf;
	struct fs_compress *fc;
	struct pool_test pt;
	struct pool_job *jobs = calloc((size_t)njobs, sizeof(*jobs));
	struct fs_comp_inode ci;

	memset(&pt, 0, sizeof(pt));
	memset(&ci, 0, sizeof(ci));
	pthread_mutex_init(&pt.mtx, NULL);
	pt.submitter = pthread_self();
	pt.len = 16 * KB;
	pt.count = calloc((size_t)njobs, sizeof(int));
	pt.src = calloc((size_t)njobs, sizeof(char *));
	memset(&conf, 0, sizeof(conf));
	conf.mount.mode = FS_COMP_ZSTD;
	conf.nworkers = nworkers;
	conf.thread_init = count_thread_init;
	atomic_store(&thread_inits, 0);
	ck_assert_int_eq(fs_compress_create(&conf, &fc), 0);
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_queue_max",
	    queue_max), 0);
	for (int i = 0; i < njobs; i++) {
		pt.src[i] = xalloc(pt.len);
		fill_text(pt.src[i], pt.len, (uint64_t)i + 100);
		jobs[i].pt = &pt;
		jobs[i].idx = i;
	}
	for (int i = 0; i < njobs; i++)
		fs_compress_submit(fc, &ci, FLYFS_COMP_ZSTD, 3, NULL,
		    pt.src[i], pt.len, pool_done, &jobs[i]);
	if (!destroy_now)
		fs_compress_drain(fc);
	fs_compress_destroy(fc);
	/* Every job completed exactly once, with the right data. */
	ck_assert_int_eq(__atomic_load_n(&pt.done, __ATOMIC_ACQUIRE), njobs);
	for (int i = 0; i < njobs; i++)
		ck_assert_int_eq(pt.count[i], 1);
	ck_assert_int_eq(pt.bad, 0);
	ck_assert_int_eq(atomic_load(&thread_inits), (int)nworkers);
	ck_assert_uint_eq(ci.ci_st.compressed_blocks, (uint64_t)njobs);
	if (queue_max >= (uint64_t)njobs) {
		ck_assert_int_eq(pt.inline_calls, 0);
		ck_assert_msg(pt.nthr >= 2, "only %d worker(s) compressed",
		    pt.nthr);
	}
	for (int i = 0; i < njobs; i++)
		free(pt.src[i]);
	free(pt.src);
	free(pt.count);
	free(jobs);
	pthread_mutex_destroy(&pt.mtx);
}

START_TEST(test_pool_concurrent_workers)
{
	pool_run(4, 1000, 4096, false);
}
END_TEST

START_TEST(test_pool_backpressure_inline)
{
	/* A short queue: the submitter compresses what does not fit. */
	pool_run(2, 500, 2, false);
}
END_TEST

START_TEST(test_pool_destroy_drains)
{
	pool_run(3, 300, 4096, true);
}
END_TEST

START_TEST(test_pool_batch)
{
	struct fs_compress *fc = new_engine(2);
	struct fs_comp_inode ci;
	enum { NB = 64 };
	struct iovec iov[NB];
	struct fs_encoded enc[NB];
	size_t len = 16 * KB;
	uint64_t v;

	memset(&ci, 0, sizeof(ci));
	for (int i = 0; i < NB; i++) {
		iov[i].iov_base = xalloc(len);
		iov[i].iov_len = i == NB - 1 ? 3 * BS : len;
		switch (i % 4) {
		case 0:
			fill_text(iov[i].iov_base, len, (uint64_t)i);
			break;
		case 1:
			memset(iov[i].iov_base, 0, len);
			break;
		case 2:
			fill_mixed(iov[i].iov_base, len, 50, (uint64_t)i);
			break;
		default:
			fill_random(iov[i].iov_base, len, (uint64_t)i);
			break;
		}
	}
	ck_assert_int_eq(fs_compress_tunable_set(fc, "compress_skip_after", 0),
	    0);
	fs_compress_encode_batch(fc, &ci, FLYFS_COMP_ZSTD, 3, iov, NB, enc);
	for (int i = 0; i < NB; i++) {
		check_encoded(&enc[i], iov[i].iov_base, iov[i].iov_len);
		fs_encoded_fini(&enc[i]);
		free(iov[i].iov_base);
	}
	ck_assert_uint_eq(ci.ci_st.zero_blocks, NB / 4);
	ck_assert_uint_eq(ci.ci_st.raw_blocks, NB / 4);
	ck_assert_uint_eq(ci.ci_st.compressed_blocks, NB / 2);
	ck_assert_int_eq(fs_compress_tunable_get(fc, "compress_workers", &v),
	    0);
	fs_compress_destroy(fc);
}
END_TEST

/* ---- Statistics ------------------------------------------------------------------ */

struct kv {
	const char *name;
	uint64_t value;
	int seen;
};

static void
kv_fn(void *arg, const char *name, uint64_t value)
{
	struct kv *t = arg;

	for (; t->name; t++)
		if (strcmp(t->name, name) == 0) {
			t->value = value;
			t->seen++;
		}
}

static uint64_t
kv_get(struct kv *t, const char *name)
{
	for (; t->name; t++)
		if (strcmp(t->name, name) == 0) {
			ck_assert_msg(t->seen == 1, "%s seen %d", name,
			    t->seen);
			return t->value;
		}
	ck_abort_msg("no %s", name);
	return 0;
}

START_TEST(test_stats)
{
	struct fs_compress *fc = new_engine(2);
	struct fs_comp_inode ci;
	size_t len = 16 * KB;
	char *tb = xalloc(len), *rb = xalloc(len), *zb = xalloc(len);
	char *out = xalloc(len);
	struct fs_encoded e;
	uint64_t written = 0;
	struct kv fsv[] = {
		{ "compress_logical_bytes", 0, 0 },
		{ "compress_written_bytes", 0, 0 },
		{ "compress_frame_bytes", 0, 0 },
		{ "compress_compressed_blocks", 0, 0 },
		{ "compress_raw_blocks", 0, 0 },
		{ "compress_skipped_blocks", 0, 0 },
		{ "compress_uncompressed_blocks", 0, 0 },
		{ "compress_zero_blocks", 0, 0 },
		{ "compress_errors", 0, 0 },
		{ "compress_cpu_ns", 0, 0 },
		{ "decompress_blocks", 0, 0 },
		{ "decompress_bytes", 0, 0 },
		{ "decompress_errors", 0, 0 },
		{ "decompress_cpu_ns", 0, 0 },
		{ "compress_queue_depth", 0, 0 },
		{ NULL, 0, 0 },
	};
	struct kv iv[] = {
		{ "compress_logical_bytes", 0, 0 },
		{ "compress_written_bytes", 0, 0 },
		{ "compress_compressed_blocks", 0, 0 },
		{ "compress_raw_blocks", 0, 0 },
		{ "compress_skipped_blocks", 0, 0 },
		{ "compress_zero_blocks", 0, 0 },
		{ "compress_cpu_ns", 0, 0 },
		{ "decompress_cpu_ns", 0, 0 },
		{ NULL, 0, 0 },
	};
	uint32_t cbytes = 0;
	void *frame = NULL;

	memset(&ci, 0, sizeof(ci));
	fill_text(tb, len, 1);
	fill_random(rb, len, 2);
	memset(zb, 0, len);
	/* 10 text, 8 random tried, 15 random skipped, 1 retried, 3 zero. */
	for (int i = 0; i < 10; i++) {
		fs_compress_encode(fc, &ci, FLYFS_COMP_ZSTD, 3, tb, len, &e);
		written += (uint64_t)e.e_plen * BS;
		if (frame == NULL) {
			frame = malloc(e.e_cbytes);
			memcpy(frame, e.e_data, e.e_cbytes);
			cbytes = e.e_cbytes;
		}
		fs_encoded_fini(&e);
	}
	for (int i = 0; i < 24; i++) {
		fs_compress_encode(fc, &ci, FLYFS_COMP_ZSTD, 3, rb, len, &e);
		fs_encoded_fini(&e);
	}
	for (int i = 0; i < 3; i++) {
		fs_compress_encode(fc, &ci, FLYFS_COMP_ZSTD, 3, zb, len, &e);
		fs_encoded_fini(&e);
	}
	fs_compress_encode(fc, &ci, FLYFS_COMP_NONE, 0, rb, len, &e);
	fs_encoded_fini(&e);
	written += 24 * len + len;
	ck_assert_int_eq(fs_compress_decode(fc, &ci, frame, cbytes, out, len),
	    0);
	ck_assert_int_eq(memcmp(out, tb, len), 0);
	ck_assert_int_eq(fs_compress_decode(fc, &ci, frame, cbytes - 1, out,
	    len), EUCLEAN);

	fs_compress_stats_foreach(fc, kv_fn, fsv);
	ck_assert_uint_eq(kv_get(fsv, "compress_logical_bytes"), 38 * len);
	ck_assert_uint_eq(kv_get(fsv, "compress_written_bytes"), written);
	ck_assert_uint_eq(kv_get(fsv, "compress_compressed_blocks"), 10);
	ck_assert_uint_eq(kv_get(fsv, "compress_frame_bytes"), 10 * cbytes);
	ck_assert_uint_eq(kv_get(fsv, "compress_raw_blocks"), 9);
	ck_assert_uint_eq(kv_get(fsv, "compress_skipped_blocks"), 15);
	ck_assert_uint_eq(kv_get(fsv, "compress_uncompressed_blocks"), 1);
	ck_assert_uint_eq(kv_get(fsv, "compress_zero_blocks"), 3);
	ck_assert_uint_eq(kv_get(fsv, "compress_errors"), 0);
	ck_assert_uint_gt(kv_get(fsv, "compress_cpu_ns"), 0);
	ck_assert_uint_eq(kv_get(fsv, "decompress_blocks"), 1);
	ck_assert_uint_eq(kv_get(fsv, "decompress_bytes"), len);
	ck_assert_uint_eq(kv_get(fsv, "decompress_errors"), 1);
	ck_assert_uint_gt(kv_get(fsv, "decompress_cpu_ns"), 0);
	ck_assert_uint_eq(kv_get(fsv, "compress_queue_depth"), 0);

	fs_compress_inode_stats_foreach(&ci, kv_fn, iv);
	ck_assert_uint_eq(kv_get(iv, "compress_logical_bytes"), 38 * len);
	ck_assert_uint_eq(kv_get(iv, "compress_written_bytes"), written);
	ck_assert_uint_eq(kv_get(iv, "compress_compressed_blocks"), 10);
	ck_assert_uint_eq(kv_get(iv, "compress_raw_blocks"), 9);
	ck_assert_uint_eq(kv_get(iv, "compress_skipped_blocks"), 15);
	ck_assert_uint_eq(kv_get(iv, "compress_zero_blocks"), 3);
	ck_assert_uint_gt(kv_get(iv, "compress_cpu_ns"), 0);
	ck_assert_uint_gt(kv_get(iv, "decompress_cpu_ns"), 0);
	free(frame);
	free(tb);
	free(rb);
	free(zb);
	free(out);
	fs_compress_destroy(fc);
}
END_TEST


/* ---- End to end through flyfs.h ------------------------------------------- */

#define MODEL_MAX	(4u << 20)

static const uint32_t e2e_dbs[] = { 16384, 65536 };
static const struct flyfs_cred root = { .uid = 0, .gid = 0 };

static struct blockdev *bd;
static struct flyfs *fs;
static char err[512];
static uint8_t *model;		/* the file's expected content */
static uint64_t msize;		/* and size */
static uint64_t fino;

static void
e2e_mount(void)
{
	struct flyfs_mount_opts o;

	memset(&o, 0, sizeof(o));
	o.compress = FLYFS_COMP_ZSTD;
	o.compress_level = 3;
	o.cache_size = 32L << 20;
	ck_assert_msg(flyfs_mount_bdev(bd, &o, &fs, err, sizeof(err)) == 0,
	    "mount: %s", err);
}

static void
e2e_setup(uint32_t dbsize)
{
	struct flyfs_mkfs_params p;
	struct flyfs_attr a;

	ck_assert_int_eq(blockdev_open_ram(128ULL << 20, 4096, 0, 0, &bd), 0);
	flyfs_mkfs_params_init(&p);
	p.data_block_size = dbsize;
	p.journal_bytes = 4ULL << 20;
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0,
	    "mkfs: %s", err);
	e2e_mount();
	ck_assert_int_eq(flyfs_mknod(fs, FLYFS_ROOT_INO, "f", S_IFREG | 0644,
	    0, &root, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	fino = a.ino;
	model = calloc(1, MODEL_MAX);
	msize = 0;
}

static void
e2e_teardown(void)
{
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	fs = NULL;
	util_fsck_clean(bd);
	blockdev_close(bd);
	bd = NULL;
	free(model);
}

static void
e2e_remount(void)
{
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	util_fsck_clean(bd);
	e2e_mount();
}

static void
e2e_verify(void)
{
	struct flyfs_attr a;
	uint8_t *buf = malloc(MODEL_MAX + 4096);
	size_t done = 0;

	ck_assert_int_eq(flyfs_getattr(fs, fino, &a), 0);
	ck_assert_uint_eq(a.size, msize);
	ck_assert_int_eq(flyfs_read(fs, fino, buf, MODEL_MAX + 4096, 0, 0,
	    &done), 0);
	ck_assert_uint_eq(done, msize);
	for (size_t i = 0; i < msize; i++)
		if (buf[i] != model[i])
			ck_abort_msg("byte %zu: %02x, expected %02x", i,
			    buf[i], model[i]);
	free(buf);
}

enum { K_TEXT, K_RANDOM, K_MIXED, K_ZERO, K_KINDS };

static void
e2e_write(uint64_t off, size_t len, int kind, uint64_t seed)
{
	uint8_t *p = model + off;
	size_t done = 0;

	ck_assert_uint_le(off + len, MODEL_MAX);
	switch (kind) {
	case K_TEXT:
		fill_text(p, len, seed);
		break;
	case K_RANDOM:
		fill_random(p, len, seed);
		break;
	case K_MIXED:
		for (size_t i = 0; i < len; i += BS) {
			size_t n = len - i < BS ? len - i : BS;

			memset(p + i, 0, n);
			fill_random(p + i, n / 2, seed + i);
		}
		break;
	default:
		memset(p, 0, len);
		break;
	}
	ck_assert_int_eq(flyfs_write(fs, fino, p, len, (off_t)off, 0, &root,
	    &done), 0);
	ck_assert_uint_eq(done, len);
	if (off + len > msize)
		msize = off + len;
}

static void
e2e_truncate(uint64_t size)
{
	struct flyfs_attr a;

	memset(&a, 0, sizeof(a));
	a.size = size;
	ck_assert_int_eq(flyfs_setattr(fs, fino, &a, FLYFS_SET_SIZE, &root,
	    NULL), 0);
	if (size < msize)
		memset(model + size, 0, msize - size);
	msize = size;
}

static void
e2e_punch(uint64_t off, uint64_t len)
{
	ck_assert_int_eq(flyfs_fallocate(fs, fino,
	    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
	    (off_t)len, NULL), 0);
	if (off < msize)
		memset(model + off, 0, (off + len > msize ? msize : off + len) -
		    off);
}

struct e2e_stat {
	const char *name;
	uint64_t value;
	bool found;
};

static void
e2e_stat_fn(void *arg, const char *name, uint64_t value)
{
	struct e2e_stat *st = arg;

	if (strcmp(st->name, name) == 0) {
		st->value = value;
		st->found = true;
	}
}

/* A compress_* figure of the mount; false if compression is not wired. */
static bool
e2e_stat(const char *name, uint64_t *value)
{
	struct e2e_stat st = { name, 0, false };

	flyfs_stats_foreach(fs, e2e_stat_fn, &st);
	*value = st.value;
	if (!st.found)
		fprintf(stderr, "check_compress: %s not reported: compression "
		    "not integrated in the flush path; data checks only\n",
		    name);
	return st.found;
}

START_TEST(test_e2e_kinds)
{
	uint64_t off = 0, logical, written, v;

	e2e_setup(e2e_dbs[_i]);
	for (int k = 0; k < K_KINDS; k++) {
		e2e_write(off, 512 * KB, k, (uint64_t)k + 1);
		off += 512 * KB;
	}
	/* A partial last block of text. */
	e2e_write(off, 5000, K_TEXT, 77);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	e2e_verify();
	if (e2e_stat("compress_logical_bytes", &logical)) {
		ck_assert(e2e_stat("compress_written_bytes", &written));
		ck_assert_uint_gt(logical, 0);
		/* text ~ 1/4, random 1, mixed ~ 1/2, zero 0: well below. */
		ck_assert_uint_lt(written, logical * 3 / 5);
		ck_assert(e2e_stat("compress_compressed_blocks", &v));
		ck_assert_uint_gt(v, 0);
		ck_assert(e2e_stat("compress_zero_blocks", &v));
		ck_assert_uint_gt(v, 0);
		ck_assert(e2e_stat("compress_raw_blocks", &v));
		ck_assert_uint_gt(v, 0);
	}
	e2e_remount();
	e2e_verify();
	e2e_teardown();
}
END_TEST

START_TEST(test_e2e_overwrite)
{
	uint32_t dbs = e2e_dbs[_i];

	e2e_setup(dbs);
	e2e_write(0, 8 * dbs, K_TEXT, 1);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	/* Compressed blocks overwritten by incompressible data... */
	e2e_write(2 * dbs, 3 * dbs, K_RANDOM, 2);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	e2e_verify();
	e2e_remount();
	e2e_verify();
	/* ...and back, and zeros over compressed data. */
	e2e_write(2 * dbs, 3 * dbs, K_TEXT, 3);
	e2e_write(6 * dbs, dbs, K_ZERO, 0);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	e2e_verify();
	/* A 4 KiB write inside a compressed block: read, modify, write. */
	e2e_remount();
	e2e_write(3 * dbs + BS, BS, K_RANDOM, 4);
	e2e_write(dbs + 100, 300, K_TEXT, 5);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	e2e_verify();
	e2e_remount();
	e2e_verify();
	e2e_teardown();
}
END_TEST

START_TEST(test_e2e_truncate_punch)
{
	uint32_t dbs = e2e_dbs[_i];

	e2e_setup(dbs);
	e2e_write(0, 16 * dbs, K_TEXT, 9);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	e2e_remount();
	/* Truncate into the middle of a compressed block, then grow. */
	e2e_truncate(10 * dbs + 5000);
	e2e_verify();
	ck_assert_int_eq(flyfs_sync(fs), 0);
	e2e_remount();
	e2e_verify();
	e2e_truncate(12 * dbs + 100);
	e2e_verify();
	e2e_remount();
	e2e_verify();
	/* Punch inside one compressed block, and across several. */
	e2e_punch(2 * dbs + 1000, 6000);
	e2e_verify();
	e2e_punch(4 * dbs + BS, 3 * dbs);
	e2e_verify();
	ck_assert_int_eq(flyfs_sync(fs), 0);
	e2e_remount();
	e2e_verify();
	e2e_teardown();
}
END_TEST

START_TEST(test_e2e_random_ops)
{
	uint32_t dbs = e2e_dbs[_i];
	uint64_t s = 12345 + _i;

	e2e_setup(dbs);
	for (int op = 0; op < 300; op++) {
		uint64_t r = rnd(&s);
		uint64_t off = rnd(&s) % (2u << 20);
		size_t len = 1 + (size_t)(rnd(&s) % (3 * dbs));

		switch (r % 10) {
		case 0:
			e2e_truncate(rnd(&s) % (3u << 20));
			break;
		case 1:
			e2e_punch(off, len);
			break;
		case 2:
			ck_assert_int_eq(flyfs_sync(fs), 0);
			break;
		case 3:
			if (op % 50 == 3)
				e2e_remount();
			break;
		default:
			e2e_write(off, len, (int)(r >> 8) % K_KINDS, r);
			break;
		}
		if (op % 25 == 0)
			e2e_verify();
	}
	e2e_verify();
	e2e_remount();
	e2e_verify();
	e2e_teardown();
}
END_TEST

/* ---- flyfs.compression: per-file setting, inheritance, live ----------- */

static uint64_t
file_stat(uint64_t ino, const char *name)
{
	struct e2e_stat st = { name, 0, false };

	ck_assert_int_eq(flyfs_file_stats_foreach(fs, ino, e2e_stat_fn, &st),
	    0);
	ck_assert_msg(st.found, "flyfs.file.%s not reported", name);
	return st.value;
}

static void
comp_expect(uint64_t ino, const char *want)
{
	char buf[32];
	size_t len = 0;

	ck_assert_int_eq(flyfs_compression_get(fs, ino, buf, sizeof(buf),
	    &len), 0);
	ck_assert_msg(len == strlen(want) && memcmp(buf, want, len) == 0,
	    "flyfs.compression of %llu: '%.*s', expected '%s'",
	    (unsigned long long)ino, (int)len, buf, want);
}

static void
comp_set(uint64_t ino, const char *v, uint32_t uid, int want)
{
	ck_assert_int_eq(flyfs_compression_set(fs, ino, v, strlen(v), uid),
	    want);
}

/* Write LEN bytes of text to a new file NAME in DIR; returns its inode. */
static uint64_t
text_file(uint64_t dir, const char *name, size_t len)
{
	struct flyfs_attr a;
	uint8_t *p = xalloc(len);
	size_t done = 0;

	ck_assert_int_eq(flyfs_mknod(fs, dir, name, S_IFREG | 0644, 0, &root,
	    &a), 0);
	flyfs_forget(fs, a.ino, 1);
	fill_text(p, len, 42);
	ck_assert_int_eq(flyfs_write(fs, a.ino, p, len, 0, 0, &root, &done),
	    0);
	ck_assert_uint_eq(done, len);
	free(p);
	return a.ino;
}

START_TEST(test_e2e_inherit)
{
	uint32_t dbs = e2e_dbs[_i];
	size_t len = 16 * (size_t)dbs;
	struct flyfs_attr a;
	uint64_t d, sub, f_root, f_dir, f_none, f_sub;

	e2e_setup(dbs);
	/* The root's value is the live mount-wide one (zstd:3 mounted). */
	comp_expect(FLYFS_ROOT_INO, "zstd:3");
	comp_set(FLYFS_ROOT_INO, "none", 0, 0);
	comp_expect(FLYFS_ROOT_INO, "none");
	comp_set(FLYFS_ROOT_INO, "lz4", 0, EINVAL);
	comp_set(FLYFS_ROOT_INO, "zstd:20", 0, EINVAL);
	ck_assert_int_eq(flyfs_mkdir(fs, FLYFS_ROOT_INO, "d", 0755, &root,
	    &a), 0);
	flyfs_forget(fs, a.ino, 1);
	d = a.ino;
	/* A directory created in the root does not inherit the root's. */
	comp_expect(d, "default");
	comp_set(d, "zstd:5", 0, 0);
	comp_set(d, "zstd:5", 1000, EPERM);	/* not the owner */
	comp_set(d, "bogus", 0, EINVAL);
	comp_expect(d, "zstd:5");
	ck_assert_int_eq(flyfs_mkdir(fs, d, "sub", 0755, &root, &a), 0);
	flyfs_forget(fs, a.ino, 1);
	sub = a.ino;
	comp_expect(sub, "zstd:5");		/* inherited, and passed on */

	f_root = text_file(FLYFS_ROOT_INO, "plain", len);
	f_dir = text_file(d, "packed", len);
	f_sub = text_file(sub, "packed2", len);
	comp_expect(f_root, "default");
	comp_expect(f_dir, "zstd:5");
	/* "none" on a file created in d stops it. */
	f_none = text_file(d, "stopped", 0);
	comp_set(f_none, "none", 0, 0);
	comp_expect(f_none, "none");
	{
		uint8_t *p = xalloc(len);
		size_t done = 0;

		fill_text(p, len, 42);
		ck_assert_int_eq(flyfs_write(fs, f_none, p, len, 0, 0, &root,
		    &done), 0);
		free(p);
	}
	ck_assert_int_eq(flyfs_sync(fs), 0);

	/* Live "none": the root's file stays raw; d's files compress. */
	ck_assert_uint_eq(file_stat(f_root, "compress_logical_bytes"), len);
	ck_assert_uint_eq(file_stat(f_root, "compress_compressed_blocks"), 0);
	ck_assert_uint_eq(file_stat(f_root, "compress_written_bytes"), len);
	ck_assert_uint_eq(file_stat(f_dir, "compress_logical_bytes"), len);
	ck_assert_uint_eq(file_stat(f_dir, "compress_compressed_blocks"), 16);
	ck_assert_uint_lt(file_stat(f_dir, "compress_written_bytes"), len / 2);
	ck_assert_uint_gt(file_stat(f_dir, "compress_cpu_ns"), 0);
	ck_assert_uint_eq(file_stat(f_sub, "compress_compressed_blocks"), 16);
	ck_assert_uint_eq(file_stat(f_none, "compress_logical_bytes"), len);
	ck_assert_uint_eq(file_stat(f_none, "compress_compressed_blocks"), 0);
	ck_assert_uint_eq(file_stat(f_none, "compress_written_bytes"), len);

	/* "default" clears a file's own setting: it follows the mount. */
	comp_set(f_dir, "default", 0, 0);
	comp_expect(f_dir, "default");
	comp_set(f_dir, "zstd", 0, 0);
	/* The per-inode settings are stored; the live one is not. */
	e2e_remount();
	comp_expect(FLYFS_ROOT_INO, "zstd:3");
	comp_expect(d, "zstd:5");
	comp_expect(sub, "zstd:5");
	comp_expect(f_dir, "zstd");
	comp_expect(f_none, "none");
	comp_expect(f_root, "default");
	e2e_teardown();
}
END_TEST

/* ---- Suite --------------------------------------------------------------------- */

static Suite *
compress_suite(void)
{
	Suite *s = suite_create("compress");
	TCase *tc;

#define TC(name, fn)							\
	tc = tcase_create(name);					\
	tcase_add_test(tc, fn);						\
	suite_add_tcase(s, tc)
#define TCL(name, fn, n)						\
	tc = tcase_create(name);					\
	tcase_add_loop_test(tc, fn, 0, n);				\
	suite_add_tcase(s, tc)

	TCL("roundtrip_compressible", test_roundtrip_compressible, 4);
	TCL("incompressible", test_incompressible, 4);
	TCL("encode_mixed_sweep", test_encode_mixed_sweep, 11);
	TC("zero_blocks", test_zero_blocks);
	TC("partial_last_block", test_partial_last_block);
	TC("corrupt_frame", test_corrupt_frame);
	TC("policy_text", test_policy_text);
	TC("policy_inode_inherit", test_policy_inode_inherit);
	TC("policy_resolve", test_policy_resolve);
	TC("tunables", test_tunables);
	TC("entropy_estimate", test_entropy_estimate);
	TC("entropy_judge", test_entropy_judge);
	TCL("heuristic_skip_retry", test_heuristic_skip_retry, 4);
	TC("heuristic_reset_on_success", test_heuristic_reset_on_success);
	TC("pool_concurrent_workers", test_pool_concurrent_workers);
	TC("pool_backpressure_inline", test_pool_backpressure_inline);
	TC("pool_destroy_drains", test_pool_destroy_drains);
	TC("pool_batch", test_pool_batch);
	TC("stats", test_stats);
	TCL("e2e_kinds", test_e2e_kinds, 2);
	TCL("e2e_overwrite", test_e2e_overwrite, 2);
	TCL("e2e_truncate_punch", test_e2e_truncate_punch, 2);
	TCL("e2e_random_ops", test_e2e_random_ops, 2);
	TCL("e2e_inherit", test_e2e_inherit, 2);
#undef TC
#undef TCL
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(compress_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
