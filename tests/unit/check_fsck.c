/*
 * check_fsck.c - unit tests of fs/fsck_core.c and of the fsck.flyfs tool.
 *
 * - Golden images: every case of tests/images/bad_images.c is generated,
 *   saved to a file under /var/tmp (O_DIRECT needs a real filesystem) and
 *   checked by the fsck.flyfs tool with the runs the case lists; the
 *   transcript (commands, output, exit codes) must equal
 *   tests/images/<case>.expected.  FLYFS_GOLDEN_UPDATE=1 rewrites them.
 * - The library on RAM devices: fresh images of several shapes are clean,
 *   repairs leave a clean image, the clean-summary path, random damage
 *   never crashes (run under ASan), a sparse 16 TiB image checks fast.
 *
 * `check_fsck --make-image CASE FILE` writes one golden image and exits.
 * The tool is found at $FLYFS_FSCK or ../../tools/fsck/fsck.flyfs next to
 * this program.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "fs/format.h"
#include "fs/fsck_core.h"
#include "fs/mkfs_core.h"
#include "fs/ondisk.h"

#include "tests/images/bad_images.c"

static char err[512];

static int
lib_fsck(struct blockdev *bd, enum flyfs_fsck_mode mode, bool force,
    struct flyfs_fsck_result *r)
{
	struct flyfs_fsck_opts o = { .mode = mode, .force = force };

	if (getenv("FLYFS_FSCK_TRACE") != NULL)
		o.out = stderr;
	return flyfs_fsck(bd, &o, r);
}

/* ---- Golden images through the tool ------------------------------------- */

static char tool[PATH_MAX];
static char golden_dir[PATH_MAX];
static char tmpdir[] = "/var/tmp/check_fsck.XXXXXX";
static char img[PATH_MAX + 32];

static void
find_paths(void)
{
	char self[PATH_MAX / 2], src[PATH_MAX / 4];
	const char *env = getenv("FLYFS_FSCK");
	const char *gdir = getenv("FLYFS_GOLDEN_DIR");
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	dirname(self);
	if (env != NULL)
		snprintf(tool, sizeof(tool), "%s", env);
	else
		snprintf(tool, sizeof(tool), "%s/../../tools/fsck/fsck.flyfs",
		    self);
	/* __FILE__ is absolute or relative to the top build directory. */
	snprintf(src, sizeof(src), "%s", __FILE__);
	if (gdir != NULL)
		snprintf(golden_dir, sizeof(golden_dir), "%s", gdir);
	else if (src[0] == '/')
		snprintf(golden_dir, sizeof(golden_dir), "%s/../images",
		    dirname(src));
	else
		snprintf(golden_dir, sizeof(golden_dir), "%s/../../%s/../images",
		    self, dirname(src));
}

static void
tool_setup(void)
{
	find_paths();
	ck_assert_msg(access(tool, X_OK) == 0, "fsck.flyfs not found at %s "
	    "(set FLYFS_FSCK)", tool);
	strcpy(tmpdir, "/var/tmp/check_fsck.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(img, sizeof(img), "%s/img", tmpdir);
}

static void
tool_teardown(void)
{
	char p[PATH_MAX + 32];

	unlink(img);
	snprintf(p, sizeof(p), "%s/out", tmpdir);
	unlink(p);
	rmdir(tmpdir);
}

/* Run the tool with FLAG, -f and the image; append to the transcript. */
static int
run_tool(const char *flag, char *ts, size_t tslen)
{
	const char *argv[] = { tool, flag, "-f", img, NULL };
	char capture[PATH_MAX + 32], out[16384], *p, *q;
	posix_spawn_file_actions_t fa;
	size_t used = strlen(ts);
	pid_t pid;
	int status, fd;
	ssize_t n;

	snprintf(capture, sizeof(capture), "%s/out", tmpdir);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, capture,
	    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	ck_assert_int_eq(posix_spawn(&pid, tool, &fa, NULL,
	    (char *const *)argv, NULL), 0);
	posix_spawn_file_actions_destroy(&fa);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "fsck.flyfs crashed");
	fd = open(capture, O_RDONLY);
	n = read(fd, out, sizeof(out) - 1);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	used += (size_t)snprintf(ts + used, tslen - used,
	    "$ fsck.flyfs %s -f IMAGE\n", flag);
	/* The image path is not part of the expected output. */
	for (p = out; (q = strstr(p, img)) != NULL; p = q + strlen(img)) {
		used += (size_t)snprintf(ts + used, tslen - used, "%.*s",
		    (int)(q - p), p);
		used += (size_t)snprintf(ts + used, tslen - used, "IMAGE");
	}
	used += (size_t)snprintf(ts + used, tslen - used, "%s", p);
	snprintf(ts + used, tslen - used, "exit %d\n", WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

START_TEST(test_golden)
{
	const struct img_case *c = &img_cases[_i];
	static char ts[65536], want[65536];
	char path[PATH_MAX * 2];
	struct blockdev *bd = NULL;
	FILE *fp;
	size_t n;

	ck_assert_int_eq(img_make(c, &bd), 0);
	ck_assert_int_eq(img_save(bd, img, c->truncate_to ? c->truncate_to :
	    IMG_BYTES), 0);
	blockdev_close(bd);
	ts[0] = '\0';
	for (const char *r = c->runs; *r != '\0'; r++) {
		char flag[3] = { '-', *r, '\0' };
		run_tool(flag, ts, sizeof(ts));
	}
	snprintf(path, sizeof(path), "%s/%s.expected", golden_dir, c->name);
	if (getenv("FLYFS_GOLDEN_UPDATE") != NULL) {
		fp = fopen(path, "w");
		ck_assert_ptr_nonnull(fp);
		fputs(ts, fp);
		fclose(fp);
		return;
	}
	fp = fopen(path, "r");
	ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
	n = fread(want, 1, sizeof(want) - 1, fp);
	want[n] = '\0';
	fclose(fp);
	ck_assert_msg(strcmp(ts, want) == 0, "case %s: got\n%s\nexpected\n%s",
	    c->name, ts, want);
}
END_TEST

/* ---- The library on RAM devices ------------------------------------------ */

static struct blockdev *bd;

static void
bd_setup(void)
{
	bd = NULL;
}

static void
bd_teardown(void)
{
	if (bd != NULL)
		blockdev_close(bd);
	bd = NULL;
}

static void
make_fresh(uint64_t bytes, uint32_t dbs, uint64_t journal)
{
	struct flyfs_mkfs_params p;

	ck_assert_int_eq(blockdev_open_ram(bytes, 4096, 0, 0, &bd), 0);
	flyfs_mkfs_params_init(&p);
	p.data_block_size = dbs;
	p.journal_bytes = journal;
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0, "%s",
	    err);
}

static const struct { uint64_t bytes; uint32_t dbs; uint64_t journal; }
    shapes[] = {
	{ 8u << 20, 4096, 0 },			/* the smallest */
	{ 66560ull * 4096, 131072, 0 },		/* 3 groups, one UNINIT */
	{ 200u << 20, 16384, 160u << 20 },	/* journal across groups */
};

START_TEST(test_fresh_clean)
{
	struct flyfs_fsck_result r;

	make_fresh(shapes[_i].bytes, shapes[_i].dbs, shapes[_i].journal);
	ck_assert_int_eq(lib_fsck(bd, FLYFS_FSCK_NO, true, &r), 0);
	ck_assert(r.checked);
	ck_assert_uint_eq(r.found, 0);
	ck_assert_uint_eq(r.dirs, 2);
	ck_assert_uint_eq(r.inodes_used, FLYFS_FIRST_INO + 1);
	ck_assert_int_eq(lib_fsck(bd, FLYFS_FSCK_YES, true, &r), 0);
	ck_assert_uint_eq(r.found, 0);
}
END_TEST

START_TEST(test_clean_summary)
{
	struct flyfs_fsck_result r;

	make_fresh(16u << 20, 0, 0);
	ck_assert_int_eq(lib_fsck(bd, FLYFS_FSCK_PREEN, false, &r), 0);
	ck_assert(!r.checked);
	ck_assert_uint_eq(r.blocks, 4096);
	ck_assert_uint_eq(r.inodes_used, 17);
}
END_TEST

/* What each case ends as after -p then -y (then -n must say so). */
START_TEST(test_repair_cycle)
{
	const struct img_case *c = &img_cases[_i];
	struct flyfs_fsck_result r;
	int first, code;

	if (c->truncate_to != 0)
		return;
	ck_assert_int_eq(img_make(c, &bd), 0);
	first = lib_fsck(bd, FLYFS_FSCK_NO, true, &r);
	ck_assert_uint_eq(r.fixed, 0);
	if (first == 8)
		return;
	lib_fsck(bd, FLYFS_FSCK_PREEN, true, &r);
	lib_fsck(bd, FLYFS_FSCK_YES, true, &r);
	code = lib_fsck(bd, FLYFS_FSCK_NO, true, &r);
	if (strcmp(c->name, "shared_block") == 0)
		ck_assert_int_eq(code, 4);
	else
		ck_assert_msg(code == 0, "%s: %d after repair", c->name, code);
	/* Idempotent: a second repair finds nothing. */
	if (code == 0) {
		ck_assert_int_eq(lib_fsck(bd, FLYFS_FSCK_YES, true, &r), 0);
		ck_assert_uint_eq(r.found, 0);
	}
}
END_TEST

/* -n never writes: the device is byte-identical afterwards. */
START_TEST(test_readonly_never_writes)
{
	const struct img_case *c = &img_cases[_i];
	struct blockdev_stats st0, st1;
	struct flyfs_fsck_result r;

	ck_assert_int_eq(img_make(c, &bd), 0);
	blockdev_get_stats(bd, &st0);
	lib_fsck(bd, FLYFS_FSCK_NO, true, &r);
	blockdev_get_stats(bd, &st1);
	ck_assert_uint_eq(st0.writes, st1.writes);
}
END_TEST

/*
 * Random damage: flip bytes in metadata blocks (superblock, descriptors,
 * bitmaps, inode file, system files, directories, journal superblock) and
 * run every mode.  Nothing may crash or read out of bounds (ASan); -y
 * must not leave more problems than -p found left.
 */
START_TEST(test_random_damage)
{
	const struct img_case *c = img_case_find("clean");
	struct flyfs_fsck_result r;
	uint8_t *b;
	unsigned seed = 1234u + (unsigned)_i;

	ck_assert_int_eq(img_make(c, &bd), 0);
	b = blockdev_alloc_buf(bd, 4096);
	for (int k = 0; k < 1 + _i % 4; k++) {
		uint64_t blk = (uint64_t)(rand_r(&seed) % 30);
		if (blk >= 24 && blk < 30)
			blk = 1047 + (blk - 24);	/* dirs, files */
		ck_assert_int_eq(blockdev_pread(bd, b, 4096,
		    (off_t)(blk * 4096)), 0);
		for (int j = 0; j < 1 + rand_r(&seed) % 8; j++)
			b[rand_r(&seed) % 4096] ^= (uint8_t)(1 +
			    rand_r(&seed) % 255);
		ck_assert_int_eq(blockdev_pwrite(bd, b, 4096,
		    (off_t)(blk * 4096)), 0);
	}
	blockdev_free_buf(b);
	lib_fsck(bd, FLYFS_FSCK_NO, true, &r);
	lib_fsck(bd, FLYFS_FSCK_PREEN, true, &r);
	lib_fsck(bd, FLYFS_FSCK_YES, true, &r);
	lib_fsck(bd, FLYFS_FSCK_YES, true, &r);
	lib_fsck(bd, FLYFS_FSCK_NO, true, &r);
}
END_TEST

/* A fresh 16 TiB image in a sparse file checks in seconds. */
START_TEST(test_sparse_16t)
{
	char dir[] = "/var/tmp/check_fsck16.XXXXXX", path[64];
	struct blockdev_opts bo = { 0 };
	struct flyfs_mkfs_params p;
	struct flyfs_fsck_result r;
	struct timespec t0, t1;
	uint64_t bytes = (16ULL << 40) - (1ULL << 20);
	double secs;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	if (ftruncate(fd, (off_t)bytes) != 0) {
		/* The host filesystem cannot hold such a file: skip. */
		close(fd);
		unlink(path);
		rmdir(dir);
		return;
	}
	close(fd);
	ck_assert_msg(blockdev_open(path, &bo, &bd, err, sizeof(err)) == 0,
	    "%s", err);
	flyfs_mkfs_params_init(&p);
	ck_assert_msg(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)) == 0, "%s",
	    err);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(lib_fsck(bd, FLYFS_FSCK_NO, true, &r), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr, "fsck of a fresh %.1f TiB image: %.2f s\n",
	    (double)bytes / (1ULL << 40), secs);
	ck_assert_msg(secs < 10.0, "took %.1f s", secs);
	blockdev_close(bd);
	bd = NULL;
	unlink(path);
	rmdir(dir);
}
END_TEST

#define TEST_TIMEOUT	300

static Suite *
fsck_suite(void)
{
	Suite *s = suite_create("fsck");
	TCase *tc;

#define LOOP(name, fn, setup, teardown, n) do {				\
	tc = tcase_create(name);					\
	tcase_set_timeout(tc, TEST_TIMEOUT);				\
	tcase_add_checked_fixture(tc, setup, teardown);			\
	tcase_add_loop_test(tc, fn, 0, n);				\
	suite_add_tcase(s, tc);						\
} while (0)
	LOOP("golden", test_golden, tool_setup, tool_teardown, N_IMG_CASES);
	LOOP("fresh_clean", test_fresh_clean, bd_setup, bd_teardown,
	    (int)(sizeof(shapes) / sizeof(shapes[0])));
	LOOP("clean_summary", test_clean_summary, bd_setup, bd_teardown, 1);
	LOOP("repair_cycle", test_repair_cycle, bd_setup, bd_teardown,
	    N_IMG_CASES);
	LOOP("readonly_never_writes", test_readonly_never_writes, bd_setup,
	    bd_teardown, N_IMG_CASES);
	LOOP("random_damage", test_random_damage, bd_setup, bd_teardown, 200);
	LOOP("sparse_16t", test_sparse_16t, bd_setup, bd_teardown, 1);
#undef LOOP
	return s;
}

int
main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc == 4 && strcmp(argv[1], "--make-image") == 0) {
		const struct img_case *c = img_case_find(argv[2]);
		struct blockdev *dev;

		if (c == NULL || img_make(c, &dev) != 0) {
			fprintf(stderr, "unknown case %s\n", argv[2]);
			return 1;
		}
		failed = img_save(dev, argv[3], c->truncate_to ?
		    c->truncate_to : IMG_BYTES);
		blockdev_close(dev);
		return failed != 0;
	}
	sr = srunner_create(fsck_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
