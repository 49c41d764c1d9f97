/*
 * posix_check.c - POSIX conformance checks over a mounted directory.
 *
 *	posix_check [-R] DIR NAME
 *
 * Makes the scratch directory DIR/NAME (it must not exist) and checks,
 * inside it, the errno of each failing case of the common calls and the
 * semantics of the successful ones: open flags, rename corner cases, link
 * counts, permission checks by an unprivileged user, sticky directories,
 * which timestamps each call updates, symlinks, truncate, lseek
 * SEEK_DATA/SEEK_HOLE and readdir.  It prints one line per check,
 *
 *	PASS: posix: <what>
 *	FAIL: posix: <what> (expected ..., got ...)
 *	SKIP: posix: <what> (why)
 *
 * which tests/integration/run.sh counts, and exits 0 when it ran to the
 * end (whatever failed), 2 when it could not run at all.  -R skips the
 * atime-on-read checks: for a FUSE mount whose reads the kernel's page
 * cache may serve without asking the filesystem (flyfs -o cache=keep),
 * so that nothing can stamp the atime.
 *
 * The specification is what Linux gives on ext4 (and tmpfs): the program
 * runs on any directory, so an expected value can be confirmed there
 * first ("posix_check /tmp/x ref" as root).  Where POSIX allows two
 * answers and Linux filesystems differ, both are accepted.
 *
 * The permission and sticky-directory checks need root: the program
 * forks children that become user nobody (65534) and uid 65533, so on a
 * FUSE mount the daemon must run with -o allow_other.  Without root they
 * are skipped.  The scratch tree is left behind for fsck to look at.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE	(1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE		(1 << 1)
#endif

#define NOBODY		65534		/* the unprivileged user and group */
#define OTHER		65533		/* a second unprivileged user */
#define SGID_GROUP	1234		/* a group nobody is not in */
#define NAP_NS		20000000L	/* between a stat and the call it times */

static bool is_root;
static bool no_read_atime;	/* -R: skip the atime-on-read checks */

/* ---- reporting ------------------------------------------------------------- */

/*
 * Every line goes out at once: the children share stdout, and a line held
 * in a buffer across fork() would be printed twice.
 */
static void
line(const char *tag, const char *what, const char *why)
{
	if (why != NULL)
		printf("%s: posix: %s (%s)\n", tag, what, why);
	else
		printf("%s: posix: %s\n", tag, what);
	fflush(stdout);
}

static void
pass(const char *what)
{
	line("PASS", what, NULL);
}

static void
fail(const char *what, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	line("FAIL", what, why);
}

static void
skip(const char *what, const char *why)
{
	line("SKIP", what, why);
}

/* The symbolic name of an errno value, for the FAIL lines. */
static const char *
ename(int e)
{
	static const struct { int e; const char *name; } names[] = {
		{ EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EIO, "EIO" },
		{ EBADF, "EBADF" }, { EACCES, "EACCES" }, { EBUSY, "EBUSY" },
		{ EEXIST, "EEXIST" }, { EXDEV, "EXDEV" },
		{ ENOTDIR, "ENOTDIR" }, { EISDIR, "EISDIR" },
		{ EINVAL, "EINVAL" }, { EFBIG, "EFBIG" }, { ENOSPC, "ENOSPC" },
		{ EROFS, "EROFS" }, { EMLINK, "EMLINK" },
		{ ENAMETOOLONG, "ENAMETOOLONG" }, { ENOSYS, "ENOSYS" },
		{ ENOTEMPTY, "ENOTEMPTY" }, { ELOOP, "ELOOP" },
		{ ENXIO, "ENXIO" }, { EOPNOTSUPP, "EOPNOTSUPP" },
		{ ENOTSUP, "ENOTSUP" }, { ETXTBSY, "ETXTBSY" },
	};
	static char buf[32];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == e)
			return names[i].name;
	snprintf(buf, sizeof(buf), "errno %d", e);
	return buf;
}

/*
 * The call returned RC, with ERR the errno it left; it should have failed
 * with WANT (or ALT, when ALT is not 0).  Used through EXPECT_ERR so that
 * errno is read right after the call.
 */
static void
expect_err(const char *what, long rc, int err, int want, int alt)
{
	char exp[96];

	if (alt != 0)
		snprintf(exp, sizeof(exp), "%s or %s", ename(want), ename(alt));
	else
		snprintf(exp, sizeof(exp), "%s", ename(want));
	if (rc != -1)
		fail(what, "expected errno %s, got success (%ld)", exp, rc);
	else if (err == want || (alt != 0 && err == alt))
		pass(what);
	else
		fail(what, "expected errno %s, got %s", exp, ename(err));
}
#define EXPECT_ERR(what, call, want) do {				\
	long rc_ = (long)(call);					\
	expect_err((what), rc_, errno, (want), 0);			\
} while (0)
#define EXPECT_ERR2(what, call, want, alt) do {				\
	long rc_ = (long)(call);					\
	expect_err((what), rc_, errno, (want), (alt));			\
} while (0)
#define EXPECT_OK(what, call) do {					\
	long rc_ = (long)(call);					\
	if (rc_ == -1)							\
		fail((what), "expected success, got errno %s",		\
		    ename(errno));					\
	else								\
		pass(what);						\
} while (0)

/*
 * OK: PASS, else FAIL with the formatted reason.  Used through EXPECT,
 * which evaluates the condition first: the reason's arguments often read
 * what the condition's calls (stat, read) filled in, and a function's
 * arguments are evaluated in no fixed order.
 */
static void
expect_(const char *what, bool ok, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	if (ok) {
		pass(what);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	line("FAIL", what, why);
}
#define EXPECT(what, cond, ...) do {					\
	bool ok_ = (cond);						\
	expect_((what), ok_, __VA_ARGS__);				\
} while (0)

/* The permission bits in ST, filled by a stat call that returned RC. */
static int
perm_bits(int rc, const struct stat *st)
{
	return rc == 0 ? (int)(st->st_mode & 07777) : -1;
}

/*
 * The permission bits of PATH from a statx that asks for the mode alone,
 * as "stat -c %a" does (-1 on failure).  FUSE refreshes only the
 * attributes a caller asks for that it knows to be stale, so this sees
 * the kernel's cached mode where a full stat would fetch a fresh one.
 */
static int
mode_only(const char *path)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, 0, STATX_MODE, &stx) != 0)
		return -1;
	return stx.stx_mode & 07777;
}

/* BITS (perm_bits: -1 when the stat failed) must be WANT. */
#define EXPECT_MODE(what, bits, want) do {				\
	int m_ = (bits);						\
	if (m_ < 0)							\
		fail((what), "stat: %s", ename(errno));			\
	else								\
		EXPECT((what), m_ == (want), "mode %04o, expected %04o", \
		    (unsigned)m_, (unsigned)(want));			\
} while (0)

/* ---- setup helpers ----------------------------------------------------------- */

/*
 * Setup that must work for the checks after it to mean anything.  A
 * failure is a FAIL line of its own (the dependent checks then fail too,
 * which is noise, but the first line says why).
 */
static bool
setup(bool ok, const char *what)
{
	if (!ok)
		fail("setup", "%s: %s", what, strerror(errno));
	return ok;
}

/* Make PATH holding DATA (may be NULL), then chmod it to MODE. */
static bool
mkfile(const char *path, mode_t mode, const char *data)
{
	int fd;
	bool ok;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return setup(false, path);
	ok = data == NULL ||
	    write(fd, data, strlen(data)) == (ssize_t)strlen(data);
	ok = ok && fchmod(fd, mode) == 0;
	close(fd);
	return setup(ok, path);
}

static bool
mkdir_mode(const char *path, mode_t mode)
{
	return setup(mkdir(path, 0700) == 0 && chmod(path, mode) == 0, path);
}

/* The contents of PATH as a string (up to 255 bytes); "" on error. */
static const char *
slurp(const char *path)
{
	static char buf[256];
	ssize_t n = -1;
	int fd;

	if ((fd = open(path, O_RDONLY)) >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
	}
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* open() and close at once: 0 or -1 with errno as open left it. */
static int
try_open(const char *path, int flags, mode_t mode)
{
	int fd;

	if ((fd = open(path, flags, mode)) < 0)
		return -1;
	close(fd);
	return 0;
}

static ino_t
ino_of(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? st.st_ino : 0;
}

/* PATH1 and PATH2 both exist and are one inode. */
static bool
same_ino(const char *path1, const char *path2)
{
	struct stat st1, st2;

	return lstat(path1, &st1) == 0 && lstat(path2, &st2) == 0 &&
	    st1.st_ino == st2.st_ino && st1.st_dev == st2.st_dev;
}

/* st_nlink of PATH, or -1. */
static long
nlink_of(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? (long)st.st_nlink : -1;
}

static bool
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static int
renameat2_(const char *from, const char *to, unsigned flags)
{
	return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to,
	    flags);
}

/* ---- open flags ---------------------------------------------------------------- */

static void
check_open(void)
{
	char name[300], path[320];
	struct stat st;
	char buf[16];
	int fd;

	if (!mkdir_mode("open", 0755) || !mkfile("open/file", 0644, "hello"))
		return;

	EXPECT_ERR("open: O_CREAT|O_EXCL on an existing file -> EEXIST",
	    try_open("open/file", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	EXPECT_ERR("open: O_CREAT|O_EXCL on a directory -> EEXIST",
	    try_open("open", O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	EXPECT_ERR("open: O_CREAT on a directory -> EISDIR",
	    try_open("open", O_RDONLY | O_CREAT, 0644), EISDIR);
	EXPECT_ERR("open: missing file without O_CREAT -> ENOENT",
	    try_open("open/missing", O_RDONLY, 0), ENOENT);
	EXPECT_ERR("open: O_CREAT in a missing directory -> ENOENT",
	    try_open("open/nodir/f", O_WRONLY | O_CREAT, 0644), ENOENT);
	EXPECT_ERR("open: O_DIRECTORY on a file -> ENOTDIR",
	    try_open("open/file", O_RDONLY | O_DIRECTORY, 0), ENOTDIR);
	EXPECT_ERR("open: a directory O_WRONLY -> EISDIR",
	    try_open("open", O_WRONLY, 0), EISDIR);
	EXPECT_ERR("open: a directory O_RDWR -> EISDIR",
	    try_open("open", O_RDWR, 0), EISDIR);
	EXPECT_OK("open: a directory O_RDONLY|O_DIRECTORY",
	    try_open("open", O_RDONLY | O_DIRECTORY, 0));
	EXPECT_ERR("open: path through a file component -> ENOTDIR",
	    try_open("open/file/x", O_RDONLY, 0), ENOTDIR);
	EXPECT_ERR("open: O_CREAT through a file component -> ENOTDIR",
	    try_open("open/file/x", O_WRONLY | O_CREAT, 0644), ENOTDIR);
	EXPECT_ERR("open: a file with a trailing slash -> ENOTDIR",
	    try_open("open/file/", O_RDONLY, 0), ENOTDIR);

	/* O_TRUNC: size 0 and the old bytes gone. */
	fd = open("open/file", O_RDWR | O_TRUNC);
	if (setup(fd >= 0, "open O_TRUNC")) {
		EXPECT("open: O_TRUNC truncates",
		    fstat(fd, &st) == 0 && st.st_size == 0 &&
		    read(fd, buf, sizeof(buf)) == 0,
		    "size %lld after open", (long long)st.st_size);
		close(fd);
	}

	/* O_APPEND: every write at the end, whatever the offset. */
	mkfile("open/app", 0644, "abc");
	fd = open("open/app", O_WRONLY | O_APPEND);
	if (setup(fd >= 0, "open O_APPEND")) {
		off_t pos;

		lseek(fd, 0, SEEK_SET);
		(void)!write(fd, "XY", 2);
		pos = lseek(fd, 0, SEEK_CUR);
		close(fd);
		EXPECT("open: O_APPEND writes at the end",
		    strcmp(slurp("open/app"), "abcXY") == 0,
		    "contents '%s', expected 'abcXY'", slurp("open/app"));
		EXPECT("open: O_APPEND leaves the offset at the new end",
		    pos == 5, "offset %lld, expected 5", (long long)pos);
	}

	/* The umask applies to the creation mode (no ACLs here). */
	fd = open("open/umask", O_WRONLY | O_CREAT | O_EXCL, 0666);
	if (setup(fd >= 0, "create open/umask")) {
		EXPECT_MODE("open: O_CREAT mode 0666 under umask 022 gives 0644",
		    perm_bits(fstat(fd, &st), &st), 0644);
		close(fd);
	}
	/* A mode that forbids writing binds later opens, not this one. */
	fd = open("open/mode0", O_RDWR | O_CREAT | O_EXCL, 0);
	if (setup(fd >= 0, "create open/mode0")) {
		EXPECT("open: O_CREAT mode 0 still returns a writable fd",
		    write(fd, "x", 1) == 1, "write: %s", ename(errno));
		close(fd);
	}

	/* Names: 255 bytes is the limit, 256 is too long everywhere. */
	memset(name, 'n', 255);
	name[255] = '\0';
	snprintf(path, sizeof(path), "open/%s", name);
	EXPECT_OK("open: create a 255-byte name",
	    try_open(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
	EXPECT_OK("open: stat a 255-byte name", lstat(path, &st));
	memset(name, 'l', 256);
	name[256] = '\0';
	snprintf(path, sizeof(path), "open/%s", name);
	EXPECT_ERR("open: O_CREAT of a 256-byte name -> ENAMETOOLONG",
	    try_open(path, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
	EXPECT_ERR("open: lookup of a 256-byte name -> ENAMETOOLONG",
	    try_open(path, O_RDONLY, 0), ENAMETOOLONG);
	EXPECT_ERR("open: mkdir of a 256-byte name -> ENAMETOOLONG",
	    mkdir(path, 0755), ENAMETOOLONG);
	EXPECT_ERR("open: symlink to a 256-byte name -> ENAMETOOLONG",
	    symlink("file", path), ENAMETOOLONG);
	EXPECT_ERR("open: link to a 256-byte name -> ENAMETOOLONG",
	    link("open/app", path), ENAMETOOLONG);
	EXPECT_ERR("open: rename to a 256-byte name -> ENAMETOOLONG",
	    rename("open/app", path), ENAMETOOLONG);

	/* Symlinks. */
	setup(symlink("file", "open/lnk") == 0, "symlink open/lnk");
	setup(symlink("loop2", "open/loop1") == 0 &&
	    symlink("loop1", "open/loop2") == 0, "symlink loop");
	setup(symlink("made", "open/dangle") == 0, "symlink open/dangle");
	EXPECT_ERR("open: O_NOFOLLOW on a symlink -> ELOOP",
	    try_open("open/lnk", O_RDONLY | O_NOFOLLOW, 0), ELOOP);
	EXPECT_OK("open: a symlink is followed",
	    try_open("open/lnk", O_RDONLY, 0));
	EXPECT_ERR("open: a symlink loop -> ELOOP",
	    try_open("open/loop1", O_RDONLY, 0), ELOOP);
	EXPECT_ERR("open: stat through a symlink loop -> ELOOP",
	    stat("open/loop1/x", &st), ELOOP);
	EXPECT_ERR("open: O_CREAT|O_EXCL on a dangling symlink -> EEXIST",
	    try_open("open/dangle", O_WRONLY | O_CREAT | O_EXCL, 0644),
	    EEXIST);
	EXPECT_OK("open: O_CREAT through a dangling symlink",
	    try_open("open/dangle", O_WRONLY | O_CREAT, 0644));
	EXPECT("open: ... creates the symlink's target",
	    lstat("open/made", &st) == 0 && S_ISREG(st.st_mode),
	    "open/made: %s", strerror(errno));
}

/* ---- rename ----------------------------------------------------------------- */

static void
check_rename_exchange(void)
{
	struct stat st;
	ino_t i1, i2;
	long n1, n2;
	int rc;

	mkfile("ren/x1", 0644, "one");
	mkfile("ren/x2", 0644, "two");
	i1 = ino_of("ren/x1");
	i2 = ino_of("ren/x2");
	rc = renameat2_("ren/x1", "ren/x2", RENAME_EXCHANGE);
	if (rc == -1 && (errno == EINVAL || errno == ENOSYS)) {
		skip("rename: RENAME_EXCHANGE", "not supported here");
		return;
	}
	EXPECT_OK("rename: RENAME_EXCHANGE of two files", rc);
	EXPECT("rename: RENAME_EXCHANGE swaps the inodes",
	    ino_of("ren/x1") == i2 && ino_of("ren/x2") == i1 &&
	    strcmp(slurp("ren/x1"), "two") == 0,
	    "x1 has '%s'", slurp("ren/x1"));

	/* A directory and a file in different parents: ".." and counts. */
	setup(mkdir("ren/e1", 0755) == 0 && mkdir("ren/e2", 0755) == 0 &&
	    mkdir("ren/e1/d", 0755) == 0, "mkdir ren/e1 ren/e2");
	mkfile("ren/e2/f", 0644, "f");
	n1 = nlink_of("ren/e1");
	n2 = nlink_of("ren/e2");
	EXPECT_OK("rename: RENAME_EXCHANGE of a dir and a file across dirs",
	    renameat2_("ren/e1/d", "ren/e2/f", RENAME_EXCHANGE));
	EXPECT("rename: ... the names now hold the other type",
	    lstat("ren/e2/f", &st) == 0 && S_ISDIR(st.st_mode) &&
	    lstat("ren/e1/d", &st) == 0 && S_ISREG(st.st_mode),
	    "types not swapped");
	EXPECT("rename: ... parents' link counts follow the directory",
	    nlink_of("ren/e1") == n1 - 1 && nlink_of("ren/e2") == n2 + 1,
	    "e1 %ld->%ld, e2 %ld->%ld", n1, nlink_of("ren/e1"), n2,
	    nlink_of("ren/e2"));
	EXPECT("rename: ... the moved directory's .. is its new parent",
	    same_ino("ren/e2/f/..", "ren/e2"),
	    ".. is inode %lu, e2 is %lu", (unsigned long)ino_of("ren/e2/f/.."),
	    (unsigned long)ino_of("ren/e2"));
	/* Two directories in different parents: counts stay, ".." swap. */
	setup(mkdir("ren/e1/dd", 0755) == 0 && mkdir("ren/e2/dd2", 0755) == 0,
	    "mkdir ren/e1/dd ren/e2/dd2");
	n1 = nlink_of("ren/e1");
	n2 = nlink_of("ren/e2");
	EXPECT_OK("rename: RENAME_EXCHANGE of two dirs across parents",
	    renameat2_("ren/e1/dd", "ren/e2/dd2", RENAME_EXCHANGE));
	EXPECT("rename: ... link counts unchanged, each .. is its new parent",
	    nlink_of("ren/e1") == n1 && nlink_of("ren/e2") == n2 &&
	    same_ino("ren/e1/dd/..", "ren/e1") &&
	    same_ino("ren/e2/dd2/..", "ren/e2"),
	    "e1 %ld->%ld, e2 %ld->%ld", n1, nlink_of("ren/e1"), n2,
	    nlink_of("ren/e2"));
	EXPECT_ERR("rename: RENAME_EXCHANGE with a missing target -> ENOENT",
	    renameat2_("ren/x1", "ren/none", RENAME_EXCHANGE), ENOENT);
}

static void
check_rename(void)
{
	struct stat st;
	ino_t ino;
	long n, n1, n2;
	char buf[16];
	ssize_t got;
	int fd;

	if (!mkdir_mode("ren", 0755))
		return;

	/* File over file: the replaced inode loses the name. */
	mkfile("ren/f1", 0644, "one");
	mkfile("ren/f2", 0644, "two");
	setup(link("ren/f2", "ren/f2link") == 0, "link ren/f2link");
	ino = ino_of("ren/f1");
	EXPECT_OK("rename: file over file", rename("ren/f1", "ren/f2"));
	EXPECT("rename: ... the target name has the source inode",
	    ino_of("ren/f2") == ino && !exists("ren/f1") &&
	    strcmp(slurp("ren/f2"), "one") == 0,
	    "f2 has '%s'", slurp("ren/f2"));
	EXPECT("rename: ... the replaced inode's link count drops",
	    nlink_of("ren/f2link") == 1 &&
	    strcmp(slurp("ren/f2link"), "two") == 0,
	    "nlink %ld", nlink_of("ren/f2link"));

	/* The replaced inode lives on while open. */
	mkfile("ren/g1", 0644, "g1");
	mkfile("ren/g2", 0644, "g2 data");
	fd = open("ren/g2", O_RDONLY);
	if (setup(fd >= 0, "open ren/g2")) {
		EXPECT_OK("rename: file over an open file",
		    rename("ren/g1", "ren/g2"));
		got = pread(fd, buf, sizeof(buf), 0);
		EXPECT("rename: ... the open replaced file reads its data",
		    got == 7 && memcmp(buf, "g2 data", 7) == 0,
		    "read %zd bytes", got);
		EXPECT("rename: ... and has link count 0",
		    fstat(fd, &st) == 0 && st.st_nlink == 0,
		    "nlink %ld", (long)st.st_nlink);
		close(fd);
	}

	/* Directories over directories. */
	setup(mkdir("ren/d1", 0755) == 0 && mkdir("ren/d2", 0755) == 0 &&
	    mkdir("ren/d3", 0755) == 0 && mkdir("ren/d4", 0755) == 0 &&
	    mkdir("ren/d4/x", 0755) == 0, "mkdir ren/d*");
	n = nlink_of("ren");
	EXPECT_OK("rename: dir over an empty dir", rename("ren/d1", "ren/d2"));
	EXPECT("rename: ... the parent's link count drops by one",
	    nlink_of("ren") == n - 1 && !exists("ren/d1"),
	    "nlink %ld -> %ld", n, nlink_of("ren"));
	EXPECT_ERR2("rename: dir over a non-empty dir -> ENOTEMPTY",
	    rename("ren/d3", "ren/d4"), ENOTEMPTY, EEXIST);
	EXPECT_ERR("rename: file over a dir -> EISDIR",
	    rename("ren/f2", "ren/d3"), EISDIR);
	EXPECT_ERR("rename: dir over a file -> ENOTDIR",
	    rename("ren/d3", "ren/f2"), ENOTDIR);
	EXPECT_ERR("rename: dir into its own subdirectory -> EINVAL",
	    rename("ren/d4", "ren/d4/x/y"), EINVAL);
	EXPECT_ERR("rename: dir to a new name inside itself -> EINVAL",
	    rename("ren/d4", "ren/d4/y"), EINVAL);
	EXPECT_ERR("rename: missing source -> ENOENT",
	    rename("ren/none", "ren/other"), ENOENT);
	EXPECT_ERR("rename: into a missing directory -> ENOENT",
	    rename("ren/f2", "ren/nodir/f"), ENOENT);

	/* Renames that change nothing. */
	EXPECT_OK("rename: a file to itself", rename("ren/f2", "ren/f2"));
	EXPECT_OK("rename: a dir to itself", rename("ren/d3", "ren/d3"));
	EXPECT("rename: ... both still there",
	    exists("ren/f2") && exists("ren/d3"), "a name vanished");
	setup(link("ren/f2", "ren/h2") == 0, "link ren/h2");
	EXPECT_OK("rename: between two links of one inode",
	    rename("ren/f2", "ren/h2"));
	EXPECT("rename: ... both names remain, link count 2",
	    exists("ren/f2") && exists("ren/h2") && nlink_of("ren/h2") == 2,
	    "f2 %s, nlink %ld", exists("ren/f2") ? "there" : "gone",
	    nlink_of("ren/h2"));

	/* A directory moved to another parent. */
	setup(mkdir("ren/p1", 0755) == 0 && mkdir("ren/p2", 0755) == 0 &&
	    mkdir("ren/p1/m", 0755) == 0, "mkdir ren/p1 ren/p2");
	mkfile("ren/p1/m/inside", 0644, "in");
	n1 = nlink_of("ren/p1");
	n2 = nlink_of("ren/p2");
	EXPECT_OK("rename: dir to another parent",
	    rename("ren/p1/m", "ren/p2/m"));
	EXPECT("rename: ... both parents' link counts follow",
	    nlink_of("ren/p1") == n1 - 1 && nlink_of("ren/p2") == n2 + 1,
	    "p1 %ld->%ld, p2 %ld->%ld", n1, nlink_of("ren/p1"), n2,
	    nlink_of("ren/p2"));
	EXPECT("rename: ... its .. is the new parent",
	    same_ino("ren/p2/m/..", "ren/p2"), ".. is the old one");
	EXPECT("rename: ... its contents came along",
	    strcmp(slurp("ren/p2/m/inside"), "in") == 0, "inside lost");
	setup(mkdir("ren/p1/empty", 0755) == 0, "mkdir ren/p1/empty");
	n1 = nlink_of("ren/p1");
	n2 = nlink_of("ren/p2");
	EXPECT_OK("rename: dir over an empty dir in another parent",
	    rename("ren/p2/m", "ren/p1/empty"));
	EXPECT("rename: ... the source parent loses a link, the target's "
	    "stays", nlink_of("ren/p1") == n1 && nlink_of("ren/p2") == n2 - 1 &&
	    same_ino("ren/p1/empty/..", "ren/p1"),
	    "p1 %ld->%ld, p2 %ld->%ld", n1, nlink_of("ren/p1"), n2,
	    nlink_of("ren/p2"));

	/* renameat2 flags. */
	mkfile("ren/n1", 0644, "n1");
	mkfile("ren/n2", 0644, "n2");
	EXPECT_ERR("rename: RENAME_NOREPLACE onto an existing name -> EEXIST",
	    renameat2_("ren/n1", "ren/n2", RENAME_NOREPLACE), EEXIST);
	EXPECT("rename: ... both files untouched",
	    strcmp(slurp("ren/n1"), "n1") == 0 &&
	    strcmp(slurp("ren/n2"), "n2") == 0, "contents changed");
	EXPECT_OK("rename: RENAME_NOREPLACE onto a free name",
	    renameat2_("ren/n1", "ren/n3", RENAME_NOREPLACE));
	EXPECT_ERR("rename: RENAME_NOREPLACE|RENAME_EXCHANGE -> EINVAL",
	    renameat2_("ren/n2", "ren/n3", RENAME_NOREPLACE | RENAME_EXCHANGE),
	    EINVAL);
	check_rename_exchange();
}

/* ---- link counts ------------------------------------------------------------- */

static void
check_links(void)
{
	char buf[16];
	struct stat st;
	long n;
	int fd, i;

	if (!mkdir_mode("lnk", 0755) || !mkfile("lnk/f", 0644, "data"))
		return;
	EXPECT("link: a new file has link count 1", nlink_of("lnk/f") == 1,
	    "nlink %ld", nlink_of("lnk/f"));
	EXPECT_OK("link: link()", link("lnk/f", "lnk/g"));
	EXPECT("link: ... link count 2 on both names, one inode",
	    nlink_of("lnk/f") == 2 && nlink_of("lnk/g") == 2 &&
	    same_ino("lnk/f", "lnk/g"),
	    "nlink %ld/%ld", nlink_of("lnk/f"), nlink_of("lnk/g"));
	EXPECT_OK("link: unlink one name", unlink("lnk/g"));
	EXPECT("link: ... link count back to 1", nlink_of("lnk/f") == 1,
	    "nlink %ld", nlink_of("lnk/f"));
	for (i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "lnk/m%d", i);
		if (link("lnk/f", buf) != 0)
			break;
	}
	EXPECT("link: 50 more links give link count 51",
	    nlink_of("lnk/f") == 51, "nlink %ld", nlink_of("lnk/f"));
	for (i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "lnk/m%d", i);
		unlink(buf);
	}
	EXPECT("link: ... and unlinking them gives 1", nlink_of("lnk/f") == 1,
	    "nlink %ld", nlink_of("lnk/f"));

	n = nlink_of("lnk");
	EXPECT_OK("link: mkdir", mkdir("lnk/d", 0755));
	EXPECT("link: ... the parent gains a link, the new dir has 2",
	    nlink_of("lnk") == n + 1 && nlink_of("lnk/d") == 2,
	    "parent %ld->%ld, dir %ld", n, nlink_of("lnk"), nlink_of("lnk/d"));
	setup(mkdir("lnk/d/e", 0755) == 0, "mkdir lnk/d/e");
	EXPECT("link: a subdirectory adds a link", nlink_of("lnk/d") == 3,
	    "nlink %ld", nlink_of("lnk/d"));
	setup(rmdir("lnk/d/e") == 0, "rmdir lnk/d/e");
	EXPECT("link: rmdir of the subdirectory takes it back",
	    nlink_of("lnk/d") == 2, "nlink %ld", nlink_of("lnk/d"));
	mkfile("lnk/d/file", 0644, NULL);
	EXPECT("link: a file in a dir adds no link", nlink_of("lnk/d") == 2,
	    "nlink %ld", nlink_of("lnk/d"));

	EXPECT_ERR("link: link to a directory -> EPERM",
	    link("lnk/d", "lnk/dlink"), EPERM);
	EXPECT_ERR("link: link onto an existing name -> EEXIST",
	    link("lnk/f", "lnk/d"), EEXIST);
	EXPECT_ERR("link: link of a missing file -> ENOENT",
	    link("lnk/none", "lnk/x"), ENOENT);
	EXPECT_ERR("link: unlink a directory -> EISDIR", unlink("lnk/d"),
	    EISDIR);
	EXPECT_ERR("link: unlink a missing name -> ENOENT",
	    unlink("lnk/none"), ENOENT);
	EXPECT_ERR("link: rmdir a file -> ENOTDIR", rmdir("lnk/f"), ENOTDIR);
	EXPECT_ERR("link: rmdir a non-empty dir -> ENOTEMPTY", rmdir("lnk/d"),
	    ENOTEMPTY);
	EXPECT_ERR("link: rmdir \".\" -> EINVAL", rmdir("lnk/d/."), EINVAL);
	EXPECT_ERR("link: rmdir \"..\" -> ENOTEMPTY", rmdir("lnk/d/.."),
	    ENOTEMPTY);
	EXPECT_ERR("link: rmdir a missing dir -> ENOENT", rmdir("lnk/none"),
	    ENOENT);
	setup(unlink("lnk/d/file") == 0, "unlink lnk/d/file");
	EXPECT_OK("link: rmdir the emptied dir", rmdir("lnk/d"));
	EXPECT("link: ... the parent's link count is back",
	    nlink_of("lnk") == n, "nlink %ld, was %ld", nlink_of("lnk"), n);

	/* An unlinked open file stays readable. */
	fd = open("lnk/f", O_RDONLY);
	if (setup(fd >= 0, "open lnk/f")) {
		EXPECT_OK("link: unlink an open file", unlink("lnk/f"));
		EXPECT("link: ... it is gone from the directory",
		    !exists("lnk/f"), "still there");
		EXPECT("link: ... the fd reads it, link count 0",
		    pread(fd, buf, 4, 0) == 4 && memcmp(buf, "data", 4) == 0 &&
		    fstat(fd, &st) == 0 && st.st_nlink == 0,
		    "nlink %ld", (long)st.st_nlink);
		close(fd);
	}

	/* link() of a symlink links the symlink itself (Linux). */
	setup(symlink("nowhere", "lnk/sym") == 0, "symlink lnk/sym");
	EXPECT_OK("link: link of a dangling symlink", link("lnk/sym", "lnk/sym2"));
	EXPECT("link: ... the symlink itself gets the link",
	    lstat("lnk/sym2", &st) == 0 && S_ISLNK(st.st_mode) &&
	    st.st_nlink == 2, "nlink %ld", (long)st.st_nlink);
}

/* ---- permissions (as nobody) ------------------------------------------------------ */

/* Become UID/GID with no supplementary groups, or die. */
static void
become(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0) {
		fail("setup", "become uid %u: %s", (unsigned)uid,
		    strerror(errno));
		_exit(1);
	}
}

/*
 * Run FN in a child as UID/GID.  The child prints its own lines; it
 * dying is one more FAIL.
 */
static void
run_as(uid_t uid, gid_t gid, void (*fn)(void), const char *who)
{
	pid_t pid;
	int status;

	fflush(stdout);
	if ((pid = fork()) < 0) {
		fail(who, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		become(uid, gid);
		fn();
		fflush(stdout);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		fail(who, "the child did not run to the end (status 0x%x)",
		    status);
}

static void
nobody_perm(void)
{
	struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	struct timespec now[2] = { { 0, UTIME_NOW }, { 0, UTIME_NOW } };
	struct stat st;
	DIR *d;
	int fd;

	EXPECT_ERR("perm: nobody opens a 0600 root file for reading -> EACCES",
	    try_open("perm/secret", O_RDONLY, 0), EACCES);
	EXPECT_ERR("perm: nobody access(R_OK) of a 0600 root file -> EACCES",
	    access("perm/secret", R_OK), EACCES);
	EXPECT_OK("perm: nobody reads a 0644 root file",
	    try_open("perm/public", O_RDONLY, 0));
	EXPECT_ERR("perm: nobody writes a 0644 root file -> EACCES",
	    try_open("perm/public", O_WRONLY, 0), EACCES);
	EXPECT_ERR("perm: nobody creates in a 0755 root dir -> EACCES",
	    try_open("perm/new", O_WRONLY | O_CREAT, 0644), EACCES);
	EXPECT_ERR("perm: nobody mkdir in a 0755 root dir -> EACCES",
	    mkdir("perm/newdir", 0755), EACCES);
	EXPECT_ERR("perm: nobody unlinks in a 0755 root dir -> EACCES",
	    unlink("perm/public"), EACCES);
	EXPECT_ERR("perm: nobody renames in a 0755 root dir -> EACCES",
	    rename("perm/public", "perm/public2"), EACCES);
	EXPECT_ERR("perm: nobody writes a 0444 file it owns -> EACCES",
	    try_open("perm/mine", O_WRONLY, 0), EACCES);
	EXPECT_ERR("perm: nobody chmods a root file -> EPERM",
	    chmod("perm/secret", 0644), EPERM);
	EXPECT_OK("perm: nobody chmods its own file", chmod("perm/mine", 0440));
	EXPECT_ERR("perm: nobody chowns its file to root -> EPERM",
	    chown("perm/mine", 0, (gid_t)-1), EPERM);
	EXPECT_ERR("perm: nobody chgrps its file to a group it is not in -> EPERM",
	    chown("perm/mine", (uid_t)-1, 0), EPERM);
	EXPECT_ERR("perm: nobody chowns a root file -> EPERM",
	    chown("perm/public", NOBODY, NOBODY), EPERM);

	/* setgid needs membership of the file's group: dropped silently. */
	EXPECT_OK("perm: nobody chmod 02755 of its file in group root",
	    chmod("perm/mine_g0", 02755));
	EXPECT_MODE("perm: ... S_ISGID is dropped (not in the group)",
	    perm_bits(stat("perm/mine_g0", &st), &st), 0755);

	EXPECT_ERR("perm: nobody utimensat explicit times, not owner -> EPERM",
	    utimensat(AT_FDCWD, "perm/shared", ts, 0), EPERM);
	EXPECT_OK("perm: nobody utimensat UTIME_NOW on a file it may write",
	    utimensat(AT_FDCWD, "perm/shared", now, 0));
	EXPECT_OK("perm: nobody utimensat(NULL) on a file it may write",
	    utimensat(AT_FDCWD, "perm/shared", NULL, 0));
	EXPECT_ERR("perm: nobody utimensat UTIME_NOW, no write access -> EACCES",
	    utimensat(AT_FDCWD, "perm/secret", now, 0), EACCES);

	EXPECT_ERR("perm: nobody stat through a dir without x -> EACCES",
	    stat("perm/nox/f", &st), EACCES);
	EXPECT_ERR("perm: nobody open through a dir without x -> EACCES",
	    try_open("perm/nox/f", O_RDONLY, 0), EACCES);
	d = opendir("perm/noread");
	EXPECT("perm: nobody opendir of a 0711 dir -> EACCES",
	    d == NULL && errno == EACCES, "%s",
	    d != NULL ? "opened" : ename(errno));
	if (d != NULL)
		closedir(d);
	EXPECT_OK("perm: nobody looks up a known name in a 0711 dir",
	    stat("perm/noread/f", &st));

	/* Unprivileged writes and truncates strip setuid/setgid. */
	fd = open("perm/suid", O_WRONLY);
	if (setup(fd >= 0, "nobody open perm/suid")) {
		EXPECT_OK("perm: nobody writes a 06777 root file",
		    write(fd, "x", 1));
		EXPECT_MODE("perm: ... the kernel's cached mode has lost "
		    "S_ISUID and S_ISGID", mode_only("perm/suid"), 0777);
		EXPECT_MODE("perm: ... the write clears S_ISUID and S_ISGID",
		    perm_bits(fstat(fd, &st), &st), 0777);
		close(fd);
	}
	EXPECT_OK("perm: nobody truncates a 06777 root file",
	    truncate("perm/suid2", 1));
	EXPECT_MODE("perm: ... the truncate clears S_ISUID and S_ISGID",
	    perm_bits(stat("perm/suid2", &st), &st), 0777);
	fd = open("perm/suid3", O_WRONLY);
	if (setup(fd >= 0, "nobody open perm/suid3")) {
		EXPECT_OK("perm: nobody fallocates a 06777 root file",
		    fallocate(fd, 0, 0, 65536));
		EXPECT_MODE("perm: ... the fallocate clears S_ISUID and "
		    "S_ISGID", perm_bits(fstat(fd, &st), &st), 0777);
		close(fd);
	}

	/*
	 * S_ISGID without group execute (once the mandatory locking mark)
	 * goes only when the writer is outside the file's group (Linux 6.2
	 * and later, setattr_should_drop_sgid()).
	 */
	fd = open("perm/sgid_nox", O_WRONLY);
	if (setup(fd >= 0, "nobody open perm/sgid_nox")) {
		EXPECT_OK("perm: nobody writes a 02666 file of group root",
		    write(fd, "x", 1));
		EXPECT_MODE("perm: ... S_ISGID is cleared (not in the group)",
		    perm_bits(fstat(fd, &st), &st), 0666);
		close(fd);
	}
	fd = open("perm/sgid_nox_in", O_WRONLY);
	if (setup(fd >= 0, "nobody open perm/sgid_nox_in")) {
		EXPECT_OK("perm: nobody writes a 02666 file of its group",
		    write(fd, "x", 1));
		EXPECT_MODE("perm: ... S_ISGID without group execute stays",
		    perm_bits(fstat(fd, &st), &st), 02666);
		close(fd);
	}

	/* A setgid directory passes its group on; mkdir inherits the bit. */
	fd = open("perm/sgid/f", O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (setup(fd >= 0, "nobody create perm/sgid/f")) {
		EXPECT("perm: a file made by nobody is owned by nobody",
		    fstat(fd, &st) == 0 && st.st_uid == NOBODY,
		    "uid %u", (unsigned)st.st_uid);
		EXPECT("perm: ... and in a setgid dir has the dir's group",
		    st.st_gid == SGID_GROUP, "gid %u, expected %u",
		    (unsigned)st.st_gid, SGID_GROUP);
		close(fd);
	}
	fd = open("perm/sgid/g", O_WRONLY | O_CREAT | O_EXCL, 02755);
	if (setup(fd >= 0, "nobody create perm/sgid/g")) {
		EXPECT("perm: nobody creating 02755 in a group it is not in "
		    "gets no S_ISGID", fstat(fd, &st) == 0 &&
		    (st.st_mode & 07777) == 0755 && st.st_gid == SGID_GROUP,
		    "mode %04o gid %u", (unsigned)(st.st_mode & 07777),
		    (unsigned)st.st_gid);
		close(fd);
	}
	EXPECT_OK("perm: nobody mkdir in a setgid dir", mkdir("perm/sgid/d", 0755));
	EXPECT("perm: ... the new dir has the group and S_ISGID",
	    stat("perm/sgid/d", &st) == 0 && st.st_gid == SGID_GROUP &&
	    (st.st_mode & S_ISGID) != 0,
	    "gid %u mode %04o", (unsigned)st.st_gid,
	    (unsigned)(st.st_mode & 07777));
}

static void
check_perm(void)
{
	struct stat st;
	int fd;

	if (!is_root) {
		skip("perm: permission checks", "not root");
		return;
	}
	if (!mkdir_mode("perm", 0755) ||
	    !mkfile("perm/secret", 0600, "secret") ||
	    !mkfile("perm/public", 0644, "public") ||
	    !mkfile("perm/shared", 0666, NULL) ||
	    !mkfile("perm/mine", 0444, NULL) ||
	    !mkfile("perm/mine_g0", 0644, NULL) ||
	    !mkfile("perm/suid", 06777, "s") ||
	    !mkfile("perm/suid2", 06777, "s") ||
	    !mkfile("perm/suid3", 06777, "s") ||
	    !mkfile("perm/sgid_nox", 02666, "s") ||
	    !mkfile("perm/sgid_nox_in", 02666, "s") ||
	    !mkdir_mode("perm/nox", 0766) ||
	    !mkfile("perm/nox/f", 0644, NULL) ||
	    !mkdir_mode("perm/noread", 0711) ||
	    !mkfile("perm/noread/f", 0644, NULL) ||
	    !mkdir_mode("perm/sgid", 0777) ||
	    !setup(chown("perm/mine", NOBODY, NOBODY) == 0, "chown mine") ||
	    !setup(chown("perm/mine_g0", NOBODY, 0) == 0, "chown mine_g0") ||
	    !setup(chown("perm/sgid_nox_in", 0, NOBODY) == 0 &&
	    chmod("perm/sgid_nox_in", 02666) == 0, "chown sgid_nox_in") ||
	    !setup(chown("perm/sgid", 0, SGID_GROUP) == 0 &&
	    chmod("perm/sgid", 02777) == 0, "chown sgid"))
		return;

	/* Root keeps the bits on write (CAP_FSETID), loses them on chown. */
	mkfile("perm/rsuid", 06755, NULL);
	fd = open("perm/rsuid", O_WRONLY);
	if (setup(fd >= 0, "open perm/rsuid")) {
		(void)!write(fd, "x", 1);
		EXPECT_MODE("perm: a write by root keeps S_ISUID and S_ISGID",
		    perm_bits(fstat(fd, &st), &st), 06755);
		EXPECT_OK("perm: root fallocates a 06755 file",
		    fallocate(fd, 0, 0, 65536));
		EXPECT_MODE("perm: ... and keeps S_ISUID and S_ISGID",
		    perm_bits(fstat(fd, &st), &st), 06755);
		close(fd);
	}
	EXPECT_OK("perm: root chowns a 06755 file",
	    chown("perm/rsuid", OTHER, OTHER));
	EXPECT_MODE("perm: ... chown clears S_ISUID and S_ISGID, even by root",
	    perm_bits(stat("perm/rsuid", &st), &st), 0755);

	setup(symlink("public", "perm/lnk") == 0, "symlink perm/lnk");
	EXPECT_OK("perm: root lchowns a symlink",
	    lchown("perm/lnk", OTHER, OTHER));
	EXPECT("perm: ... the link changes owner, its target does not",
	    lstat("perm/lnk", &st) == 0 && st.st_uid == OTHER &&
	    st.st_gid == OTHER && stat("perm/public", &st) == 0 &&
	    st.st_uid == 0, "uid %u", (unsigned)st.st_uid);

	run_as(NOBODY, NOBODY, nobody_perm, "perm: as nobody");
}

/* ---- sticky directories ----------------------------------------------------------- */

static void
nobody_sticky(void)
{
	EXPECT_OK("sticky: nobody creates a file in a 01777 dir",
	    try_open("sticky/mine", O_WRONLY | O_CREAT | O_EXCL, 0644));
	EXPECT_OK("sticky: nobody creates a second file",
	    try_open("sticky/mine2", O_WRONLY | O_CREAT | O_EXCL, 0644));
	EXPECT_ERR("sticky: nobody unlinks another user's file -> EPERM",
	    unlink("sticky/theirs"), EPERM);
	EXPECT_ERR("sticky: nobody renames another user's file -> EPERM",
	    rename("sticky/theirs", "sticky/stolen"), EPERM);
	EXPECT_ERR("sticky: nobody renames over another user's file -> EPERM",
	    rename("sticky/mine2", "sticky/theirs"), EPERM);
	EXPECT_ERR("sticky: nobody rmdirs another user's empty dir -> EPERM",
	    rmdir("sticky/theirdir"), EPERM);
	EXPECT_OK("sticky: nobody renames its own file",
	    rename("sticky/mine2", "sticky/mine3"));
	EXPECT_OK("sticky: nobody unlinks its own file", unlink("sticky/mine"));
	EXPECT_OK("sticky: without the sticky bit, nobody unlinks another's file",
	    unlink("plain/theirs"));
}

static void
other_sticky(void)
{
	EXPECT_OK("sticky: the owner (uid 65533) unlinks its file",
	    unlink("sticky/theirs"));
	EXPECT_OK("sticky: the owner (uid 65533) rmdirs its dir",
	    rmdir("sticky/theirdir"));
}

static void
check_sticky(void)
{
	if (!is_root) {
		skip("sticky: sticky directory checks", "not root");
		return;
	}
	if (!mkdir_mode("sticky", 01777) || !mkdir_mode("plain", 0777) ||
	    !mkfile("sticky/theirs", 0666, NULL) ||
	    !mkdir_mode("sticky/theirdir", 0777) ||
	    !mkfile("plain/theirs", 0644, NULL) ||
	    !setup(chown("sticky/theirs", OTHER, OTHER) == 0 &&
	    chown("sticky/theirdir", OTHER, OTHER) == 0 &&
	    chown("plain/theirs", OTHER, OTHER) == 0, "chown theirs"))
		return;
	run_as(NOBODY, NOBODY, nobody_sticky, "sticky: as nobody");
	run_as(OTHER, OTHER, other_sticky, "sticky: as uid 65533");
}

/* ---- timestamps ----------------------------------------------------------------- */

#define T_A	1		/* atime */
#define T_M	2		/* mtime */
#define T_C	4		/* ctime */

static void
nap(void)
{
	struct timespec ts = { 0, NAP_NS };

	nanosleep(&ts, NULL);
}

static int
tscmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	if (a.tv_nsec != b.tv_nsec)
		return a.tv_nsec < b.tv_nsec ? -1 : 1;
	return 0;
}

static bool
ts_eq(struct timespec a, time_t sec, long nsec)
{
	return a.tv_sec == sec && a.tv_nsec == nsec;
}

/*
 * Between the stats B and A, exactly the times in WANT advanced and the
 * others stayed.  (No time may go backwards.)
 */
static void
expect_times(const char *what, const struct stat *b, const struct stat *a,
    int want)
{
	static const char *names[] = { "atime", "mtime", "ctime" };
	struct timespec tb[3] = { b->st_atim, b->st_mtim, b->st_ctim };
	struct timespec ta[3] = { a->st_atim, a->st_mtim, a->st_ctim };
	char why[256] = "";
	int i, c;

	for (i = 0; i < 3; i++) {
		c = tscmp(ta[i], tb[i]);
		if ((want & (1 << i)) && c <= 0)
			snprintf(why + strlen(why), sizeof(why) - strlen(why),
			    "%s%s not updated", *why ? ", " : "", names[i]);
		else if (!(want & (1 << i)) && c != 0)
			snprintf(why + strlen(why), sizeof(why) - strlen(why),
			    "%s%s changed", *why ? ", " : "", names[i]);
	}
	EXPECT(what, *why == '\0', "%s", why);
}

/* lstat PATH into ST, then nap: the next call's times are later. */
static bool
snap(const char *path, struct stat *st)
{
	bool ok = setup(lstat(path, st) == 0, path);

	nap();
	return ok;
}

static void
check_times_utimens(void)
{
	struct timespec set[2] = { { 1000000000, 123456789 },
	    { 1100000000, 987654321 } };
	struct timespec onlya[2] = { { 1200000000, 5 }, { 0, UTIME_OMIT } };
	struct timespec both_now[2] = { { 0, UTIME_NOW }, { 0, UTIME_NOW } };
	struct timespec t0, t1;
	struct stat b, a;

	mkfile("times/u", 0644, "u");
	snap("times/u", &b);
	EXPECT_OK("times: utimensat explicit atime+mtime",
	    utimensat(AT_FDCWD, "times/u", set, 0));
	lstat("times/u", &a);
	EXPECT("times: ... sets exactly the asked atime and mtime",
	    ts_eq(a.st_atim, 1000000000, 123456789) &&
	    ts_eq(a.st_mtim, 1100000000, 987654321),
	    "atime %lld.%09ld mtime %lld.%09ld", (long long)a.st_atim.tv_sec,
	    a.st_atim.tv_nsec, (long long)a.st_mtim.tv_sec, a.st_mtim.tv_nsec);
	EXPECT("times: ... and updates ctime", tscmp(a.st_ctim, b.st_ctim) > 0,
	    "ctime not updated");

	snap("times/u", &b);
	EXPECT_OK("times: utimensat atime only (mtime UTIME_OMIT)",
	    utimensat(AT_FDCWD, "times/u", onlya, 0));
	lstat("times/u", &a);
	EXPECT("times: ... sets atime, leaves mtime",
	    ts_eq(a.st_atim, 1200000000, 5) &&
	    tscmp(a.st_mtim, b.st_mtim) == 0 &&
	    tscmp(a.st_ctim, b.st_ctim) > 0,
	    "atime %lld.%09ld, mtime %s, ctime %s",
	    (long long)a.st_atim.tv_sec, a.st_atim.tv_nsec,
	    tscmp(a.st_mtim, b.st_mtim) == 0 ? "kept" : "changed",
	    tscmp(a.st_ctim, b.st_ctim) > 0 ? "updated" : "not updated");

	/* The filesystem's clock may be coarse (ext4: a jiffy): allow it. */
	clock_gettime(CLOCK_REALTIME, &t0);
	t0.tv_sec -= 1;
	EXPECT_OK("times: utimensat UTIME_NOW",
	    utimensat(AT_FDCWD, "times/u", both_now, 0));
	clock_gettime(CLOCK_REALTIME, &t1);
	t1.tv_sec += 1;
	lstat("times/u", &a);
	EXPECT("times: ... sets atime and mtime to now",
	    tscmp(a.st_atim, t0) > 0 && tscmp(a.st_atim, t1) < 0 &&
	    tscmp(a.st_mtim, t0) > 0 && tscmp(a.st_mtim, t1) < 0,
	    "atime %lld mtime %lld, now %lld", (long long)a.st_atim.tv_sec,
	    (long long)a.st_mtim.tv_sec, (long long)t1.tv_sec - 1);
}

/* utimensat with AT_SYMLINK_NOFOLLOW acts on the link, not its target. */
static void
check_times_symlink(void)
{
	struct timespec set[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	struct stat st, tb, ta;

	mkfile("times/target", 0644, NULL);
	setup(symlink("target", "times/link") == 0, "symlink times/link");
	lstat("times/target", &tb);
	EXPECT_OK("times: utimensat AT_SYMLINK_NOFOLLOW on a symlink",
	    utimensat(AT_FDCWD, "times/link", set, AT_SYMLINK_NOFOLLOW));
	lstat("times/target", &ta);
	EXPECT("times: ... sets the symlink's own times, not the target's",
	    lstat("times/link", &st) == 0 &&
	    ts_eq(st.st_mtim, 1000000000, 0) &&
	    ts_eq(st.st_atim, 1000000000, 0) &&
	    tscmp(ta.st_mtim, tb.st_mtim) == 0,
	    "link mtime %lld, target mtime %s", (long long)st.st_mtim.tv_sec,
	    tscmp(ta.st_mtim, tb.st_mtim) == 0 ? "kept" : "changed");
}

/* Listing a directory is reading it: ext4 stamps its atime the same way. */
static void
check_times_readdir(const struct timespec old[2])
{
	struct stat b, a;
	DIR *d;

	if (!setup(mkdir("times/rd", 0755) == 0 || errno == EEXIST,
	    "mkdir times/rd") ||
	    !setup(utimensat(AT_FDCWD, "times/rd", old, 0) == 0,
	    "utimensat times/rd"))
		return;
	snap("times/rd", &b);
	d = opendir("times/rd");
	if (!setup(d != NULL, "opendir times/rd"))
		return;
	while (readdir(d) != NULL)
		;
	closedir(d);
	lstat("times/rd", &a);
	expect_times("times: readdir updates an atime older than mtime "
	    "(relatime, strictatime)", &b, &a, T_A);
}

/*
 * atime on read follows the mount's policy, which statvfs shows:
 * noatime (nothing to check), relatime (a read updates an atime older
 * than mtime), or strictatime (every read updates it).
 */
static void
check_times_read(void)
{
	struct timespec old[2] = { { 1000000000, 0 }, { 0, UTIME_OMIT } };
	struct statvfs sv;
	struct stat b, a;
	char c;
	int fd;

	/* Whatever the policy, a read is not a change. */
	mkfile("times/r", 0644, "r");
	snap("times/r", &b);
	fd = open("times/r", O_RDONLY);
	if (!setup(fd >= 0, "open times/r"))
		return;
	(void)!read(fd, &c, 1);
	close(fd);
	lstat("times/r", &a);
	EXPECT("times: read changes neither mtime nor ctime",
	    tscmp(a.st_mtim, b.st_mtim) == 0 &&
	    tscmp(a.st_ctim, b.st_ctim) == 0, "mtime %s, ctime %s",
	    tscmp(a.st_mtim, b.st_mtim) == 0 ? "kept" : "changed",
	    tscmp(a.st_ctim, b.st_ctim) == 0 ? "kept" : "changed");
	if (no_read_atime) {
		skip("times: read updates atime", "-R: not checked on this mount");
		return;
	}
	if (statvfs(".", &sv) != 0 || (sv.f_flag & ST_NOATIME)) {
		skip("times: read updates atime", "mounted noatime");
		return;
	}
	setup(utimensat(AT_FDCWD, "times/r", old, 0) == 0, "utimensat times/r");
	snap("times/r", &b);
	fd = open("times/r", O_RDONLY);
	if (!setup(fd >= 0, "open times/r"))
		return;
	(void)!read(fd, &c, 1);
	close(fd);
	lstat("times/r", &a);
	expect_times("times: read updates an atime older than mtime "
	    "(relatime, strictatime)", &b, &a, T_A);
	check_times_readdir(old);
	if (sv.f_flag & ST_RELATIME) {
		skip("times: every read updates atime", "mounted relatime");
		return;
	}
	snap("times/r", &b);
	fd = open("times/r", O_RDONLY);
	if (!setup(fd >= 0, "open times/r"))
		return;
	(void)!pread(fd, &c, 1, 0);
	close(fd);
	lstat("times/r", &a);
	expect_times("times: read updates atime again (strictatime)", &b, &a,
	    T_A);
}

static void
check_times(void)
{
	struct stat b, a, bd, ad, bd2, ad2;
	int fd;

	if (!mkdir_mode("times", 0755) || !mkdir_mode("times/d2", 0755) ||
	    !mkfile("times/w", 0644, "x"))
		return;

	fd = open("times/w", O_WRONLY);
	if (setup(fd >= 0, "open times/w")) {
		snap("times/w", &b);
		(void)!write(fd, "data", 4);
		fstat(fd, &a);
		expect_times("times: write updates mtime+ctime, not atime",
		    &b, &a, T_M | T_C);
		snap("times/w", &b);
		(void)!ftruncate(fd, 100);
		fstat(fd, &a);
		expect_times("times: ftruncate (grow) updates mtime+ctime",
		    &b, &a, T_M | T_C);
		snap("times/w", &b);
		(void)!ftruncate(fd, 100);
		fstat(fd, &a);
		expect_times("times: ftruncate to the same size updates "
		    "mtime+ctime", &b, &a, T_M | T_C);
		close(fd);
	}
	snap("times/w", &b);
	setup(truncate("times/w", 100) == 0, "truncate times/w");
	lstat("times/w", &a);
	expect_times("times: truncate by path to the same size updates "
	    "mtime+ctime", &b, &a, T_M | T_C);
	snap("times/w", &b);
	setup(try_open("times/w", O_WRONLY | O_TRUNC, 0) == 0, "O_TRUNC");
	lstat("times/w", &a);
	expect_times("times: open O_TRUNC updates mtime+ctime", &b, &a,
	    T_M | T_C);
	/* POSIX: O_TRUNC on an existing file marks them, whatever its size. */
	snap("times/w", &b);
	setup(try_open("times/w", O_WRONLY | O_TRUNC, 0) == 0, "O_TRUNC");
	lstat("times/w", &a);
	expect_times("times: open O_TRUNC of an empty file updates "
	    "mtime+ctime", &b, &a, T_M | T_C);

	snap("times/w", &b);
	setup(chmod("times/w", 0600) == 0, "chmod times/w");
	lstat("times/w", &a);
	expect_times("times: chmod updates ctime only", &b, &a, T_C);
	if (is_root) {
		snap("times/w", &b);
		setup(chown("times/w", OTHER, OTHER) == 0, "chown times/w");
		lstat("times/w", &a);
		expect_times("times: chown updates ctime only", &b, &a, T_C);
	}

	/* link: the file's ctime, the directory's mtime+ctime. */
	snap("times/w", &b);
	lstat("times", &bd);
	setup(link("times/w", "times/w2") == 0, "link times/w2");
	lstat("times/w", &a);
	lstat("times", &ad);
	expect_times("times: link updates the file's ctime", &b, &a, T_C);
	expect_times("times: link updates the dir's mtime+ctime", &bd, &ad,
	    T_M | T_C);

	snap("times/w", &b);
	lstat("times", &bd);
	setup(unlink("times/w2") == 0, "unlink times/w2");
	lstat("times/w", &a);
	lstat("times", &ad);
	expect_times("times: unlink updates the remaining link's ctime",
	    &b, &a, T_C);
	expect_times("times: unlink updates the dir's mtime+ctime", &bd, &ad,
	    T_M | T_C);

	/* rename across directories: both directories, the file's ctime. */
	snap("times/w", &b);
	lstat("times", &bd);
	lstat("times/d2", &bd2);
	setup(rename("times/w", "times/d2/w") == 0, "rename times/w");
	lstat("times/d2/w", &a);
	lstat("times", &ad);
	lstat("times/d2", &ad2);
	expect_times("times: rename updates the source dir's mtime+ctime",
	    &bd, &ad, T_M | T_C);
	expect_times("times: rename updates the target dir's mtime+ctime",
	    &bd2, &ad2, T_M | T_C);
	expect_times("times: rename updates the file's ctime (as ext4)",
	    &b, &a, T_C);

	snap("times", &bd);
	setup(try_open("times/c", O_WRONLY | O_CREAT | O_EXCL, 0644) == 0,
	    "create times/c");
	lstat("times", &ad);
	expect_times("times: create updates the parent's mtime+ctime", &bd,
	    &ad, T_M | T_C);
	snap("times", &bd);
	setup(mkdir("times/sub", 0755) == 0, "mkdir times/sub");
	lstat("times", &ad);
	expect_times("times: mkdir updates the parent's mtime+ctime", &bd,
	    &ad, T_M | T_C);
	snap("times", &bd);
	setup(rmdir("times/sub") == 0, "rmdir times/sub");
	lstat("times", &ad);
	expect_times("times: rmdir updates the parent's mtime+ctime", &bd,
	    &ad, T_M | T_C);
	snap("times", &bd);
	setup(symlink("c", "times/sym") == 0, "symlink times/sym");
	lstat("times", &ad);
	expect_times("times: symlink updates the parent's mtime+ctime", &bd,
	    &ad, T_M | T_C);

	check_times_utimens();
	check_times_symlink();
	check_times_read();
}

/* ---- symlinks, truncate, I/O on the wrong fd ------------------------------------------ */

static void
check_symlink_len(size_t len)
{
	char *target, buf[PATH_MAX + 1], what[96];
	struct stat st;
	ssize_t n;

	if ((target = malloc(len + 1)) == NULL)
		return;
	memset(target, 't', len);
	target[len] = '\0';
	if (len > 1)
		target[len / 2] = '/';
	unlink("misc/sl");
	snprintf(what, sizeof(what), "misc: symlink with a %zu-byte target",
	    len);
	EXPECT_OK(what, symlink(target, "misc/sl"));
	n = readlink("misc/sl", buf, sizeof(buf));
	snprintf(what, sizeof(what),
	    "misc: ... readlink returns the %zu bytes, lstat size %zu", len,
	    len);
	EXPECT(what, n == (ssize_t)len && memcmp(buf, target, len) == 0 &&
	    lstat("misc/sl", &st) == 0 && st.st_size == (off_t)len &&
	    S_ISLNK(st.st_mode), "readlink %zd bytes, size %lld", n,
	    (long long)st.st_size);
	free(target);
}

static void
check_misc(void)
{
	char buf[PATH_MAX + 2], big[8192];
	struct stat st;
	ssize_t n;
	size_t i;
	bool zeros;
	int fd;

	if (!mkdir_mode("misc", 0755) || !mkfile("misc/f", 0644, "0123456789"))
		return;

	EXPECT_ERR("misc: mkdir of an existing dir -> EEXIST",
	    mkdir("misc", 0755), EEXIST);
	EXPECT_ERR("misc: mkdir over a file -> EEXIST", mkdir("misc/f", 0755),
	    EEXIST);
	EXPECT_ERR("misc: mkdir under a file -> ENOTDIR",
	    mkdir("misc/f/d", 0755), ENOTDIR);
	EXPECT_ERR("misc: mkdir in a missing dir -> ENOENT",
	    mkdir("misc/none/d", 0755), ENOENT);
	EXPECT_OK("misc: mkdir mode 0777", mkdir("misc/d", 0777));
	EXPECT("misc: ... gives 0755 under umask 022",
	    lstat("misc/d", &st) == 0 && (st.st_mode & 07777) == 0755,
	    "mode %04o", (unsigned)(st.st_mode & 07777));

	check_symlink_len(1);
	check_symlink_len(200);
	check_symlink_len(PATH_MAX - 1);
	memset(buf, 'x', PATH_MAX);
	buf[PATH_MAX] = '\0';
	EXPECT_ERR("misc: symlink with a 4096-byte target -> ENAMETOOLONG",
	    symlink(buf, "misc/sl2"), ENAMETOOLONG);
	unlink("misc/sl");
	setup(symlink("0123456789", "misc/sl") == 0, "symlink misc/sl");
	n = readlink("misc/sl", buf, 4);
	EXPECT("misc: readlink into a short buffer truncates",
	    n == 4 && memcmp(buf, "0123", 4) == 0, "returned %zd", n);
	EXPECT_ERR("misc: symlink onto an existing name -> EEXIST",
	    symlink("x", "misc/f"), EEXIST);
	EXPECT_ERR("misc: readlink of a file -> EINVAL",
	    readlink("misc/f", buf, sizeof(buf)), EINVAL);
	EXPECT_ERR("misc: readlink of a dir -> EINVAL",
	    readlink("misc/d", buf, sizeof(buf)), EINVAL);
	EXPECT_ERR("misc: readlink of a missing name -> ENOENT",
	    readlink("misc/none", buf, sizeof(buf)), ENOENT);

	EXPECT_OK("misc: mkfifo", mkfifo("misc/fifo", 0644));
	EXPECT("misc: ... is a FIFO", lstat("misc/fifo", &st) == 0 &&
	    S_ISFIFO(st.st_mode), "mode 0%o", (unsigned)st.st_mode);
	if (is_root) {
		EXPECT_OK("misc: mknod a character device",
		    mknod("misc/chr", S_IFCHR | 0644, makedev(1, 3)));
		EXPECT("misc: ... keeps its type and rdev",
		    lstat("misc/chr", &st) == 0 && S_ISCHR(st.st_mode) &&
		    st.st_rdev == makedev(1, 3), "mode 0%o rdev 0x%llx",
		    (unsigned)st.st_mode, (unsigned long long)st.st_rdev);
	}

	/* truncate and the wrong kind of descriptor. */
	EXPECT_ERR("misc: truncate a directory -> EISDIR",
	    truncate("misc/d", 0), EISDIR);
	EXPECT_ERR("misc: truncate to a negative size -> EINVAL",
	    truncate("misc/f", -1), EINVAL);
	fd = open("misc/f", O_RDONLY);
	if (setup(fd >= 0, "open misc/f O_RDONLY")) {
		EXPECT_ERR("misc: ftruncate on an O_RDONLY fd -> EINVAL",
		    ftruncate(fd, 0), EINVAL);
		EXPECT_ERR("misc: write to an O_RDONLY fd -> EBADF",
		    write(fd, "x", 1), EBADF);
		close(fd);
	}
	fd = open("misc/f", O_WRONLY);
	if (setup(fd >= 0, "open misc/f O_WRONLY")) {
		EXPECT_ERR("misc: read from an O_WRONLY fd -> EBADF",
		    read(fd, buf, 1), EBADF);
		close(fd);
	}
	EXPECT("misc: ... and the file is unchanged",
	    strcmp(slurp("misc/f"), "0123456789") == 0, "'%s'",
	    slurp("misc/f"));

	fd = open("misc/f", O_RDONLY);
	if (setup(fd >= 0, "open misc/f")) {
		EXPECT("misc: pread at EOF returns 0",
		    pread(fd, buf, 10, 10) == 0, "returned data");
		EXPECT("misc: pread past EOF returns 0",
		    pread(fd, buf, 10, 1000) == 0, "returned data");
		close(fd);
	}
	fd = open("misc", O_RDONLY | O_DIRECTORY);
	if (setup(fd >= 0, "open misc")) {
		EXPECT_OK("misc: fsync of a directory fd", fsync(fd));
		close(fd);
	}

	/* Cut a written file down and grow it back: the cut part is zeros. */
	fd = open("misc/cut", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (setup(fd >= 0, "create misc/cut")) {
		memset(big, 'x', sizeof(big));
		setup(pwrite(fd, big, sizeof(big), 0) == (ssize_t)sizeof(big),
		    "write misc/cut");
		EXPECT_OK("misc: ftruncate down to 100", ftruncate(fd, 100));
		EXPECT_OK("misc: ftruncate back up to 8192",
		    ftruncate(fd, sizeof(big)));
		n = pread(fd, big, sizeof(big), 0);
		zeros = n == (ssize_t)sizeof(big);
		for (i = 0; zeros && i < sizeof(big); i++)
			zeros = big[i] == (i < 100 ? 'x' : '\0');
		EXPECT("misc: ... reads the 100 bytes, then zeros", zeros,
		    "read %zd bytes, byte %zu wrong", n, i - 1);
		close(fd);
	}
	EXPECT_OK("misc: truncate a file up by path",
	    truncate("misc/f", 1 << 20));
	EXPECT("misc: ... sets the size", lstat("misc/f", &st) == 0 &&
	    st.st_size == 1 << 20, "size %lld", (long long)st.st_size);
}

/* ---- lseek SEEK_DATA / SEEK_HOLE ---------------------------------------------------- */

#define MiB	(1L << 20)

static void
check_seek(void)
{
	char blk[4096];
	off_t hole, data, r;
	int fd;

	/* Data at [0, 4K) and [1M, 1M+4K), size 2M: ext4 answers exactly. */
	fd = open("misc/sparse", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (!setup(fd >= 0, "create misc/sparse"))
		return;
	memset(blk, 'd', sizeof(blk));
	if (!setup(pwrite(fd, blk, sizeof(blk), 0) == sizeof(blk) &&
	    pwrite(fd, blk, sizeof(blk), MiB) == sizeof(blk) &&
	    ftruncate(fd, 2 * MiB) == 0 && fsync(fd) == 0, "write sparse")) {
		close(fd);
		return;
	}
	r = lseek(fd, 0, SEEK_DATA);
	if (r == -1 && (errno == EINVAL || errno == ENOTSUP)) {
		skip("seek: SEEK_DATA/SEEK_HOLE", "not supported here");
		close(fd);
		return;
	}
	EXPECT("seek: SEEK_DATA at 0 is 0", r == 0, "got %lld (%s)",
	    (long long)r, r == -1 ? ename(errno) : "");
	/*
	 * Holes are found at the filesystem's block granularity, which may
	 * exceed 4K (flyfs: 4K..128K data blocks); ext4 says 4096.
	 */
	hole = lseek(fd, 0, SEEK_HOLE);
	EXPECT("seek: SEEK_HOLE at 0 finds the hole after the first data",
	    hole >= 4096 && hole <= MiB, "got %lld", (long long)hole);
	data = lseek(fd, hole, SEEK_DATA);
	EXPECT("seek: SEEK_DATA from the hole finds the data at 1M",
	    data == MiB, "got %lld (%s)", (long long)data,
	    data == -1 ? ename(errno) : "");
	r = lseek(fd, MiB, SEEK_HOLE);
	EXPECT("seek: SEEK_HOLE after the second data",
	    r >= MiB + 4096 && r <= 2 * MiB, "got %lld", (long long)r);
	r = lseek(fd, MiB + MiB / 2, SEEK_HOLE);
	EXPECT("seek: SEEK_HOLE inside a hole is the offset itself",
	    r == MiB + MiB / 2, "got %lld", (long long)r);
	EXPECT_ERR("seek: SEEK_DATA in the trailing hole -> ENXIO",
	    lseek(fd, MiB + MiB / 2, SEEK_DATA), ENXIO);
	EXPECT_ERR("seek: SEEK_DATA at EOF -> ENXIO",
	    lseek(fd, 2 * MiB, SEEK_DATA), ENXIO);
	EXPECT_ERR("seek: SEEK_HOLE at EOF -> ENXIO",
	    lseek(fd, 2 * MiB, SEEK_HOLE), ENXIO);
	EXPECT_ERR("seek: SEEK_SET to a negative offset -> EINVAL",
	    lseek(fd, -1, SEEK_SET), EINVAL);
	r = pread(fd, blk, sizeof(blk), MiB / 2);
	EXPECT("seek: the hole reads as zeros",
	    r == sizeof(blk) && blk[0] == 0 && blk[sizeof(blk) - 1] == 0,
	    "read %lld", (long long)r);
	close(fd);

	fd = open("misc/dense", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (!setup(fd >= 0, "create misc/dense"))
		return;
	memset(blk, 'd', sizeof(blk));
	setup(pwrite(fd, blk, sizeof(blk), 0) == sizeof(blk) &&
	    pwrite(fd, blk, 100, sizeof(blk)) == 100, "write dense");
	r = lseek(fd, 0, SEEK_HOLE);
	EXPECT("seek: SEEK_HOLE in a dense file is its size",
	    r == (off_t)sizeof(blk) + 100, "got %lld", (long long)r);
	close(fd);
}

/* ---- readdir ------------------------------------------------------------------------ */

#define NDIRENT	200

static void
check_readdir(void)
{
	char seen[NDIRENT], name[300], want[256];
	struct dirent *de;
	struct statvfs sv;
	bool dots[2] = { false, false };
	int i, dup = 0, odd = 0, missing = 0;
	long pos;
	DIR *d;

	if (!mkdir_mode("rd", 0755))
		return;
	for (i = 0; i < NDIRENT; i++) {
		snprintf(name, sizeof(name), "rd/entry-%03d", i);
		if (!mkfile(name, 0644, NULL))
			return;
	}
	EXPECT("readdir: statvfs f_namemax is 255",
	    statvfs("rd", &sv) == 0 && sv.f_namemax == 255,
	    "f_namemax %lu", (unsigned long)sv.f_namemax);

	/* seekdir back to a telldir cookie gives the same entry. */
	if ((d = opendir("rd")) == NULL) {
		setup(false, "opendir rd");
		return;
	}
	for (i = 0; i < 50 && readdir(d) != NULL; i++)
		continue;
	pos = telldir(d);
	de = readdir(d);
	snprintf(want, sizeof(want), "%s", de != NULL ? de->d_name : "");
	for (i = 0; i < 20 && readdir(d) != NULL; i++)
		continue;
	seekdir(d, pos);
	de = readdir(d);
	EXPECT("readdir: seekdir to a telldir cookie returns the same entry",
	    de != NULL && *want != '\0' && strcmp(de->d_name, want) == 0,
	    "wanted '%s', got '%s'", want, de != NULL ? de->d_name : "(end)");
	closedir(d);

	/*
	 * Unlink each entry as it is returned (what rm -r does): every entry
	 * not yet removed must still come exactly once.
	 */
	memset(seen, 0, sizeof(seen));
	if ((d = opendir("rd")) == NULL) {
		setup(false, "opendir rd");
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0) {
			dots[0] = true;
			continue;
		}
		if (strcmp(de->d_name, "..") == 0) {
			dots[1] = true;
			continue;
		}
		if (sscanf(de->d_name, "entry-%d", &i) != 1 || i < 0 ||
		    i >= NDIRENT) {
			odd++;
			continue;
		}
		if (seen[i]++)
			dup++;
		snprintf(name, sizeof(name), "rd/%s", de->d_name);
		unlink(name);
	}
	closedir(d);
	for (i = 0; i < NDIRENT; i++)
		missing += !seen[i];
	EXPECT("readdir: lists . and ..", dots[0] && dots[1], "missing");
	EXPECT("readdir: unlinking while listing: each entry exactly once",
	    dup == 0 && odd == 0 && missing == 0,
	    "%d duplicates, %d unknown, %d missing", dup, odd, missing);
	EXPECT_OK("readdir: ... and the directory is then empty", rmdir("rd"));
}

/*
 * Each entry's d_ino and d_type agree with lstat (ext4 fills d_type;
 * DT_UNKNOWN would be legal POSIX but is not what ext4 does).
 */
static void
check_readdir_types(void)
{
	static const char *names[] = { "file", "dir", "sym", "fifo" };
	struct dirent *de;
	struct stat st;
	char path[300];
	int found = 0, badino = 0, badtype = 0;
	size_t i;
	DIR *d;

	if (!mkdir_mode("rdt", 0755) || !mkfile("rdt/file", 0644, NULL) ||
	    !setup(mkdir("rdt/dir", 0755) == 0, "mkdir rdt/dir") ||
	    !setup(symlink("file", "rdt/sym") == 0, "symlink rdt/sym") ||
	    !setup(mkfifo("rdt/fifo", 0644) == 0, "mkfifo rdt/fifo"))
		return;
	if ((d = opendir("rdt")) == NULL) {
		setup(false, "opendir rdt");
		return;
	}
	while ((de = readdir(d)) != NULL) {
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcmp(de->d_name, names[i]) == 0)
				break;
		if (i == sizeof(names) / sizeof(names[0]))
			continue;
		found++;
		snprintf(path, sizeof(path), "rdt/%s", de->d_name);
		if (lstat(path, &st) != 0)
			continue;
		if (de->d_ino != st.st_ino)
			badino++;
		if (de->d_type != IFTODT(st.st_mode))
			badtype++;
	}
	closedir(d);
	EXPECT("readdir: d_ino matches st_ino", found == 4 && badino == 0,
	    "%d of %d differ", badino, found);
	EXPECT("readdir: d_type matches the file type",
	    found == 4 && badtype == 0, "%d of %d differ", badtype, found);
}

/* ---- main ------------------------------------------------------------------------ */

int
main(int argc, char *argv[])
{
	int ch;

	while ((ch = getopt(argc, argv, "R")) != -1) {
		if (ch != 'R')
			goto usage;
		no_read_atime = true;
	}
	argc -= optind;
	argv += optind;
	if (argc != 2)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(022);
	is_root = geteuid() == 0;
	if (chdir(argv[0]) != 0 || mkdir(argv[1], 0755) != 0 ||
	    chmod(argv[1], 0755) != 0 || chdir(argv[1]) != 0) {
		fprintf(stderr, "posix_check: %s/%s: %s\n", argv[0], argv[1],
		    strerror(errno));
		return 2;
	}

	check_open();
	check_rename();
	check_links();
	check_perm();
	check_sticky();
	check_times();
	check_misc();
	check_seek();
	check_readdir();
	check_readdir_types();
	return 0;
usage:
	fprintf(stderr, "usage: posix_check [-R] DIR NAME\n"
	    "  checks POSIX semantics inside DIR/NAME (made here);\n"
	    "  -R: skip the atime-on-read checks\n");
	return 2;
}
