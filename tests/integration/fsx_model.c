/*
 * fsx_model.c - a randomized file operation tester that checks every read
 * against an in-memory model of the files.
 *
 * It drives a few dozen files of up to 256K, 1M, 4M or 8M, some in
 * subdirectories and some with several names, with a seeded random
 * sequence of pwrite, pread, ftruncate, hole punch, fallocate, zero range,
 * rename, link, unlink, create, shared mmap writes and reads, fsync,
 * fstat, close and dropping the kernel's cached pages (opweight below
 * has the mix).  The model holds every file's bytes and size and which
 * names point to which file (links share content).  Every byte read, by
 * pread or through a mapping, and every size, link count and inode number
 * seen is compared with it; the first difference ends the run with one
 * "FAIL:" line (seed, operation number, name, offset), a hex dump and the
 * last operations.
 *
 * The program knows nothing of flyfs and mounts nothing: it runs on any
 * directory, so that a failing seed can be replayed on ext4 to tell a bug
 * of the model from a bug of the filesystem.  A test runs it in phases
 * (t_fsx.sh): a phase loads the model the previous one saved (--state),
 * first checks every file in full against it (data a remount lost shows
 * there), runs its operations, checks everything again and saves the
 * model; the script remounts between phases.  The random generator's
 * state is saved with the model and no random choice depends on what is
 * open, so phases of N and then M operations make exactly the operations
 * of one run of N+M: a failure found after a remount can be replayed
 * without one.
 *
 *   fsx_model --dir DIR --state FILE --init --seed S [--ops N]
 *   fsx_model --dir DIR --state FILE [--seed S] --ops N
 *   fsx_model --dir DIR --state FILE --verify-only
 * Other options: --label TEXT (the result line's "area: what" part,
 * default "fsx"), -v (print every operation), --allow-eopnotsupp (a
 * fallocate mode the filesystem refuses is skipped from then on: for
 * comparisons on tmpfs, never for the filesystem under test).
 *
 * Exit status 0 and a "PASS:" line, or 1 and a "FAIL:" line; 2 for a
 * usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* fallocate; meson defines it already */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NDIRS		4		/* "", d1/, d1/d2/, d3/ */
#define NSLOTS		48		/* slot s: dirs[s % NDIRS] + "n<s>" */
#define MAXOBJ		28		/* files alive at once */
#define MINOBJ		12		/* unlink keeps at least this many */
#define INITOBJ		20		/* files --init creates */
#define KIB		1024ULL
#define MIB		(1024ULL * 1024)
#define MAXIO		(1 * MIB)	/* longest write or read */
#define MAXMAP		(256 * KIB)	/* longest mapping an op makes */
#define LOGSIZE		256		/* operations a failure report has */
#define STATE_MAGIC	"FSXMODL1"

static const char *const dirs[NDIRS] = { "", "d1/", "d1/d2/", "d3/" };

/*
 * One file of the model.  data holds max bytes; the bytes at and past
 * size are always zero, so growing a file (truncate, a write past EOF,
 * fallocate) only moves size.
 */
struct obj {
	bool		live;
	int		fd;		/* -1: closed; opened by a name */
	int		nlink;		/* names in slots[] that point here */
	uint64_t	size;		/* what st_size must be */
	uint64_t	max;		/* the file never grows past this */
	uint64_t	ino;		/* st_ino: every name, every mount */
	uint8_t		*data;
};

/* How a write's bytes are made: each mode exercises another path. */
enum fill {
	FILL_RANDOM,		/* incompressible */
	FILL_PATTERN,		/* 8-byte words naming op, file, offset */
	FILL_BYTE,		/* one byte repeated: compresses well */
	FILL_ZERO,		/* zeros: may become a hole */
	FILL_NR
};
static const char *const fillname[FILL_NR] = {
	"random", "pattern", "byte", "zero"
};

enum op {
	OP_WRITE, OP_READ, OP_MAPWRITE, OP_MAPREAD, OP_TRUNCATE, OP_PUNCH,
	OP_FALLOC, OP_ZERO, OP_RENAME, OP_LINK, OP_UNLINK, OP_CREATE,
	OP_FSYNC, OP_STAT, OP_CLOSE, OP_DROP, OP_NR
};
/*
 * Weights out of 100.  Writes dominate so that files hold data and fill a
 * small cache; the destructive operations (truncate, punch, zero) are
 * frequent enough that every range is rewritten over holes and unwritten
 * extents many times.
 */
static const int opweight[OP_NR] = {
	[OP_WRITE] = 26,	[OP_READ] = 14,
	[OP_MAPWRITE] = 7,	[OP_MAPREAD] = 7,
	[OP_TRUNCATE] = 7,	[OP_PUNCH] = 5,
	[OP_FALLOC] = 4,	[OP_ZERO] = 3,
	[OP_RENAME] = 5,	[OP_LINK] = 3,
	[OP_UNLINK] = 3,	[OP_CREATE] = 3,
	[OP_FSYNC] = 3,		[OP_STAT] = 5,
	[OP_CLOSE] = 2,		[OP_DROP] = 3,
};

/* One operation as the failure report shows it. */
struct logent {
	uint64_t	opno;
	int		obj;		/* -1: none */
	uint64_t	off, len;	/* the byte range it changed or read */
	char		text[160];
};

static struct obj objs[MAXOBJ];
static int slots[NSLOTS];		/* object index, or -1 for no name */
static uint64_t seed, opno, rs[4];	/* rs: xoshiro256** state */
static int topfd = -1;			/* --dir: every name is relative to it */
static const char *label = "fsx";
static bool verbose, allow_eopnotsupp;
static bool mode_off[OP_NR];		/* refused fallocate modes */
static long pagesz;
static uint8_t *iobuf, *genbuf;		/* MAXIO + a page each */
static struct logent oplog[LOGSIZE];
static char sigmsg[512];		/* what a SIGBUS during mmap reports */

static void failx(const char *fmt, ...) __attribute__((format(printf, 1, 2),
    noreturn));

/* ---- random numbers ----------------------------------------------------- */

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: small, fast, and its whole state fits in the state file. */
static uint64_t
rnd(void)
{
	uint64_t r = rotl(rs[1] * 5, 7) * 9, t = rs[1] << 17;

	rs[2] ^= rs[0];
	rs[3] ^= rs[1];
	rs[1] ^= rs[2];
	rs[0] ^= rs[3];
	rs[2] ^= t;
	rs[3] = rotl(rs[3], 45);
	return r;
}

/* Uniform in [0, n); 0 when n is 0.  The modulo bias is irrelevant here. */
static uint64_t
rnd_below(uint64_t n)
{
	return n == 0 ? 0 : rnd() % n;
}

static uint64_t
rnd_range(uint64_t lo, uint64_t hi)
{
	return lo + rnd_below(hi - lo + 1);
}

static uint64_t
min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* ---- names -------------------------------------------------------------- */

static const char *
slot_path(int s)
{
	static char buf[4][32];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%sn%02d", dirs[s % NDIRS], s);
	return buf[i];
}

/* The Nth name (modulo the link count) of object O, as a slot. */
static int
obj_slot(int o, uint64_t n)
{
	int s, k = (int)(n % (uint64_t)objs[o].nlink);

	for (s = 0; s < NSLOTS; s++)
		if (slots[s] == o && k-- == 0)
			return s;
	failx("model: object %d has no name", o);
}

/*
 * The object's descriptor, opened by one of its names if it is not open.
 * Which name depends on the operation number, not on the generator: what
 * is open differs between one long run and the same run in phases.
 */
static int
obj_fd(int o)
{
	struct obj *f = &objs[o];
	const char *name;

	if (f->fd >= 0)
		return f->fd;
	name = slot_path(obj_slot(o, opno));
	f->fd = openat(topfd, name, O_RDWR);
	if (f->fd < 0)
		failx("open %s (obj %d): %s", name, o, strerror(errno));
	return f->fd;
}

static void
obj_close(int o)
{
	if (objs[o].fd >= 0 && close(objs[o].fd) != 0)
		failx("close obj %d: %s", o, strerror(errno));
	objs[o].fd = -1;
}

static void
obj_free(int o)
{
	obj_close(o);
	free(objs[o].data);
	memset(&objs[o], 0, sizeof(objs[o]));
	objs[o].fd = -1;
}

static int
nlive(void)
{
	int o, n = 0;

	for (o = 0; o < MAXOBJ; o++)
		n += objs[o].live;
	return n;
}

/* A random slot with a name (USED) or without one; -1 if there is none. */
static int
pick_slot(bool used)
{
	int s, n = 0, k;

	for (s = 0; s < NSLOTS; s++)
		n += (slots[s] >= 0) == used;
	if (n == 0)
		return -1;
	k = (int)rnd_below((uint64_t)n);
	for (s = 0; s < NSLOTS; s++)
		if ((slots[s] >= 0) == used && k-- == 0)
			return s;
	return -1;
}

/* ---- the operation log and failure reports ------------------------------ */

static struct logent *
logent(void)
{
	return &oplog[opno % LOGSIZE];
}

/* Record the current operation: what it is, and the range it touches. */
static void __attribute__((format(printf, 4, 5)))
note(int o, uint64_t off, uint64_t len, const char *fmt, ...)
{
	struct logent *e = logent();
	va_list ap;

	e->opno = opno;
	e->obj = o;
	e->off = off;
	e->len = len;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	if (verbose)
		printf("%8" PRIu64 " %s\n", opno, e->text);
	snprintf(sigmsg, sizeof(sigmsg), "FAIL: %s: seed %" PRIu64 " op %"
	    PRIu64 ": fatal signal during: %s\n", label, seed, opno, e->text);
}

static void
print_log(void)
{
	uint64_t i = opno > 40 ? opno - 39 : 1;

	if (opno == 0 || oplog[opno % LOGSIZE].opno != opno) {
		printf("fsx:   no operation ran in this process; to see them, "
		    "replay on any directory: fsx_model --dir DIR --state "
		    "FILE --init --seed %" PRIu64 " --ops %" PRIu64 " -v\n",
		    seed, opno);
		return;
	}
	printf("fsx:   the last operations:\n");
	for (; i <= opno; i++)
		if (oplog[i % LOGSIZE].opno == i)
			printf("fsx:   %8" PRIu64 " %s\n", i,
			    oplog[i % LOGSIZE].text);
}

/* The logged operations that touched byte OFF of object O, newest first. */
static void
print_touching(int o, uint64_t off)
{
	uint64_t i;
	int shown = 0;

	for (i = opno; i > 0 && opno - i < LOGSIZE && shown < 5; i--) {
		struct logent *e = &oplog[i % LOGSIZE];

		if (e->opno != i || e->obj != o)
			continue;
		if (off >= e->off && off < e->off + e->len) {
			printf("fsx:   op %" PRIu64 " covered that byte: %s\n",
			    i, e->text);
			shown++;
		}
	}
}

static void
failx(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	printf("FAIL: %s: seed %" PRIu64 " op %" PRIu64 ": ", label, seed,
	    opno);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	print_log();
	fflush(stdout);
	exit(1);
}

/* A SIGBUS in a mapping is an I/O error the kernel could not return. */
static void
on_fatal_signal(int sig)
{
	ssize_t r;

	(void)sig;
	r = write(STDOUT_FILENO, sigmsg, strlen(sigmsg));
	(void)r;
	_exit(1);
}

static void
hexline(const char *what, const uint8_t *p, size_t n, const uint8_t *other)
{
	size_t i;

	printf("fsx:     %-8s", what);
	for (i = 0; i < n; i++)
		printf(p[i] != other[i] ? "[%02x]" : " %02x ", p[i]);
	printf("\n");
}

/*
 * Explain a pattern word found where other bytes were expected: stale or
 * misplaced data usually names the write it came from.
 */
static void
decode_pattern(const uint8_t *got, uint64_t fileoff)
{
	uint64_t w = 0;
	int i;

	for (i = 7; i >= 0; i--)
		w = w << 8 | got[i];
	if ((w >> 40) == 0 || (w >> 40) > (opno & 0xffffff) ||
	    ((w >> 32) & 0xff) >= MAXOBJ)
		return;
	printf("fsx:   the word read at 0x%" PRIx64 " looks like op %" PRIu64
	    "'s pattern for obj %u offset 0x%" PRIx64 "\n", fileoff,
	    w >> 40, (unsigned)((w >> 32) & 0xff), (w & 0xffffffff) << 3);
}

/*
 * Compare LEN bytes GOT, read at OFF of object O through HOW, with the
 * model; report the first difference and fail.
 */
static void
check_bytes(const char *how, int o, const char *name, uint64_t off,
    const uint8_t *got, uint64_t len)
{
	const uint8_t *exp = objs[o].data + off;
	uint64_t i, first, last, ndiff = 0, line;
	bool zeros = true;

	if (memcmp(exp, got, len) == 0)
		return;
	for (first = 0; exp[first] == got[first]; first++)
		;
	for (last = len - 1; exp[last] == got[last]; last--)
		;
	for (i = first; i <= last; i++) {
		ndiff += exp[i] != got[i];
		zeros &= got[i] == 0;
	}
	fflush(stdout);
	printf("FAIL: %s: seed %" PRIu64 " op %" PRIu64 ": %s %s (obj %d, "
	    "size 0x%" PRIx64 "): data differs at offset 0x%" PRIx64 "\n",
	    label, seed, opno, how, name, o, objs[o].size, off + first);
	printf("fsx:   read [0x%" PRIx64 ", 0x%" PRIx64 "): %" PRIu64
	    " bytes differ in [0x%" PRIx64 ", 0x%" PRIx64 "]%s\n", off,
	    off + len, ndiff, off + first, off + last,
	    zeros ? ", read as zeros there" : "");
	/* The 16 bytes around the first difference, and around the last. */
	for (i = 0; i < 2; i++) {
		size_t n;

		line = (i == 0 ? first : last) & ~15ULL;
		if (i == 1 && line == (first & ~15ULL))
			break;
		n = (size_t)min64(16, len - line);
		printf("fsx:   at 0x%08" PRIx64 ":\n", off + line);
		hexline("expected", exp + line, n, got + line);
		hexline("got", got + line, n, exp + line);
	}
	i = (off + first) & ~7ULL;
	if (i >= off && i + 8 <= off + len)
		decode_pattern(got + (i - off), i);
	print_touching(o, off + first);
	print_log();
	fflush(stdout);
	exit(1);
}

/* fstat the object and compare size, link count and inode number. */
static void
check_stat(int o, const char *why)
{
	struct obj *f = &objs[o];
	struct stat st;

	if (fstat(obj_fd(o), &st) != 0)
		failx("fstat obj %d (%s): %s", o, why, strerror(errno));
	if ((uint64_t)st.st_size != f->size)
		failx("obj %d (%s): st_size 0x%jx, model 0x%" PRIx64, o, why,
		    (uintmax_t)st.st_size, f->size);
	if (st.st_nlink != (nlink_t)f->nlink)
		failx("obj %d (%s): st_nlink %ju, model %d", o, why,
		    (uintmax_t)st.st_nlink, f->nlink);
	if (st.st_ino != f->ino)
		failx("obj %d (%s): st_ino %ju, model %" PRIu64, o, why,
		    (uintmax_t)st.st_ino, f->ino);
}

/* ---- the model's side of each change ------------------------------------ */

static void
model_write(int o, uint64_t off, const uint8_t *buf, uint64_t len)
{
	struct obj *f = &objs[o];

	memcpy(f->data + off, buf, len);
	if (off + len > f->size)
		f->size = off + len;
}

static void
model_truncate(int o, uint64_t size)
{
	struct obj *f = &objs[o];

	if (size < f->size)
		memset(f->data + size, 0, f->size - size);
	f->size = size;
}

/* Zero [OFF, OFF+LEN) as far as it lies inside the file. */
static void
model_zero(int o, uint64_t off, uint64_t len)
{
	struct obj *f = &objs[o];

	if (off < f->size)
		memset(f->data + off, 0, min64(len, f->size - off));
}

/* ---- choosing offsets, lengths and data --------------------------------- */

/* A multiple of 4K, 16K, 64K or 1M below LIM, sometimes a little off. */
static uint64_t
aligned_off(uint64_t lim)
{
	static const uint64_t al[] = { 4 * KIB, 16 * KIB, 64 * KIB, MIB };
	uint64_t a = al[rnd_below(4)], off = rnd_below(lim / a + 1) * a;

	switch (rnd_below(4)) {
	case 0:
		off -= min64(off, rnd_range(1, 64));
		break;
	case 1:
		off += rnd_range(1, 64);
		break;
	}
	return off;
}

/*
 * Where a write-like operation starts: anywhere in the file, just before
 * EOF, past EOF (leaving a hole), at a block boundary near the file, or
 * anywhere below the file's limit.  Always below f->max.  Far holes are
 * rare: files mostly hold data, so that they fill the cache.
 */
static uint64_t
pick_off(const struct obj *f)
{
	uint64_t r = rnd_below(100), off;
	uint64_t near = min64(f->max, f->size + MIB);

	if (r < 30)
		off = rnd_below(f->size + 1);
	else if (r < 45)
		off = f->size - min64(f->size, rnd_below(8 * KIB));
	else if (r < 60)
		off = f->size + rnd_below(256 * KIB);
	else if (r < 90)
		off = aligned_off(near);
	else
		off = rnd_below(f->max);
	return off < f->max ? off : rnd_below(f->max);
}

/* A length from 1 to ROOM: mostly small, some block-sized, a few 1 MiB. */
static uint64_t
pick_len(uint64_t room)
{
	uint64_t r = rnd_below(100), len;

	if (r < 10)
		len = rnd_range(1, 64);
	else if (r < 35)
		len = rnd_range(1, 4 * KIB);
	else if (r < 45)
		len = rnd_range(1, 16) * 4 * KIB;
	else if (r < 68)
		len = rnd_range(1, 64 * KIB);
	else if (r < 85)
		len = rnd_range(1, 256 * KIB);
	else if (r < 93)
		len = MAXIO;
	else
		len = rnd_range(1, MAXIO);
	return len < room ? len : room;
}

static uint64_t
pattern_word(int o, uint64_t pos)
{
	return (opno & 0xffffff) << 40 | (uint64_t)o << 32 |
	    ((pos >> 3) & 0xffffffff);
}

/* Fill genbuf with LEN bytes meant for offset OFF of object O. */
static enum fill
gen_data(int o, uint64_t off, uint64_t len)
{
	uint64_t r = rnd_below(100), i;
	enum fill mode = r < 40 ? FILL_RANDOM : r < 80 ? FILL_PATTERN :
	    r < 95 ? FILL_BYTE : FILL_ZERO;

	switch (mode) {
	case FILL_RANDOM:
		for (i = 0; i < len; i += 8) {
			uint64_t w = rnd();

			memcpy(genbuf + i, &w, 8);	/* genbuf has slack */
		}
		break;
	case FILL_PATTERN:
		for (i = 0; i < len; i++) {
			uint64_t pos = off + i;

			genbuf[i] = (uint8_t)(pattern_word(o, pos) >>
			    ((pos & 7) * 8));
		}
		break;
	case FILL_BYTE:
		memset(genbuf, (int)(opno * 37 % 255 + 1), len);
		break;
	default:
		memset(genbuf, 0, len);
		break;
	}
	return mode;
}

/* ---- operations --------------------------------------------------------- */

static void
op_write(int s)
{
	int o = slots[s];
	struct obj *f = &objs[o];
	uint64_t off = pick_off(f), len = pick_len(f->max - off);
	enum fill mode = gen_data(o, off, len);
	ssize_t n;

	note(o, off, len, "write    %-9s obj %2d [0x%06" PRIx64 ", +0x%"
	    PRIx64 ") %s, size 0x%" PRIx64, slot_path(s), o, off, len,
	    fillname[mode], f->size);
	n = pwrite(obj_fd(o), genbuf, len, (off_t)off);
	if (n < 0 || (uint64_t)n != len)
		failx("pwrite %s: %zd of %" PRIu64 ": %s", slot_path(s), n,
		    len, n < 0 ? strerror(errno) : "short write");
	model_write(o, off, genbuf, len);
	check_stat(o, "after write");
}

/* Read [OFF, OFF+LEN) with pread and check it, and that EOF is where it is. */
static void
read_check(int s, int o, uint64_t off, uint64_t len, const char *how)
{
	struct obj *f = &objs[o];
	uint64_t want = off < f->size ? min64(len, f->size - off) : 0, got = 0;
	ssize_t n;

	while (got < len) {
		n = pread(obj_fd(o), iobuf + got, len - got,
		    (off_t)(off + got));
		if (n < 0)
			failx("pread %s [0x%" PRIx64 ", +0x%" PRIx64 "): %s",
			    slot_path(s), off + got, len - got,
			    strerror(errno));
		if (n == 0)
			break;
		got += (uint64_t)n;
	}
	if (got > want) {
		/* What lies past the model's EOF is shown as a mismatch. */
		check_bytes(how, o, slot_path(s), off, iobuf, want);
		failx("%s %s (obj %d): read 0x%" PRIx64 " bytes at 0x%" PRIx64
		    ", but size is 0x%" PRIx64, how, slot_path(s), o, got, off,
		    f->size);
	}
	check_bytes(how, o, slot_path(s), off, iobuf, got);
	if (got < want)
		failx("%s %s (obj %d): short read, 0x%" PRIx64 " of 0x%" PRIx64
		    " bytes at 0x%" PRIx64 " (size 0x%" PRIx64 ")", how,
		    slot_path(s), o, got, want, off, f->size);
}

static void
op_read(int s)
{
	int o = slots[s];
	struct obj *f = &objs[o];
	uint64_t r = rnd_below(100), off, len;

	if (r < 50)
		off = rnd_below(f->size + 4 * KIB);
	else if (r < 75)
		off = aligned_off(f->size + 4 * KIB);
	else
		off = f->size - min64(f->size, rnd_below(64 * KIB));
	len = pick_len(MAXIO);
	note(o, off, len, "read     %-9s obj %2d [0x%06" PRIx64 ", +0x%"
	    PRIx64 "), size 0x%" PRIx64, slot_path(s), o, off, len, f->size);
	read_check(s, o, off, len, "pread");
}

static void
do_ftruncate(int s, int o, uint64_t size)
{
	if (ftruncate(obj_fd(o), (off_t)size) != 0)
		failx("ftruncate %s to 0x%" PRIx64 ": %s", slot_path(s), size,
		    strerror(errno));
	model_truncate(o, size);
}

/* Map [OFF, OFF+LEN) of the object shared; the range lies inside the file. */
static uint8_t *
map_range(int s, int o, uint64_t off, uint64_t len, int prot, uint64_t *pg,
    size_t *maplen)
{
	void *p;

	*pg = off & ~((uint64_t)pagesz - 1);
	*maplen = (size_t)(off + len - *pg);
	p = mmap(NULL, *maplen, prot, MAP_SHARED, obj_fd(o), (off_t)*pg);
	if (p == MAP_FAILED)
		failx("mmap %s [0x%" PRIx64 ", +0x%zx): %s", slot_path(s), *pg,
		    *maplen, strerror(errno));
	return (uint8_t *)p + (off - *pg);
}

/*
 * Write through a shared mapping.  A mapping cannot extend a file, so a
 * range past EOF is first made part of it by ftruncate, as fsx does.
 */
static void
op_mapwrite(int s)
{
	int o = slots[s];
	struct obj *f = &objs[o];
	uint64_t off = pick_off(f), len, pg, r;
	size_t maplen;
	enum fill mode;
	uint8_t *p;

	len = pick_len(min64(f->max - off, MAXMAP));
	mode = gen_data(o, off, len);
	r = rnd_below(3);
	note(o, off, len, "mapwrite %-9s obj %2d [0x%06" PRIx64 ", +0x%"
	    PRIx64 ") %s, size 0x%" PRIx64 ", %s", slot_path(s), o, off, len,
	    fillname[mode], f->size, r == 0 ? "msync" : r == 1 ?
	    "msync async" : "munmap only");
	if (off + len > f->size)
		do_ftruncate(s, o, off + len);
	p = map_range(s, o, off, len, PROT_READ | PROT_WRITE, &pg, &maplen);
	memcpy(p, genbuf, len);
	if (r < 2 && msync(p - (off - pg), maplen, r == 0 ? MS_SYNC :
	    MS_ASYNC) != 0)
		failx("msync %s: %s", slot_path(s), strerror(errno));
	if (munmap(p - (off - pg), maplen) != 0)
		failx("munmap %s: %s", slot_path(s), strerror(errno));
	model_write(o, off, genbuf, len);
	check_stat(o, "after mapwrite");
}

/*
 * Read through a shared mapping.  When the range ends at EOF, the rest of
 * the last page must read as zeros too.
 */
static void
op_mapread(int s)
{
	int o = slots[s];
	struct obj *f = &objs[o];
	uint64_t off, len, pg, tail = 0;
	size_t maplen;
	uint8_t *p;

	if (f->size == 0) {
		note(o, 0, 0, "mapread  %-9s obj %2d empty: fstat only",
		    slot_path(s), o);
		check_stat(o, "mapread of an empty file");
		return;
	}
	off = rnd_below(2) ? rnd_below(f->size) :
	    aligned_off(f->size - 1) % f->size;
	len = pick_len(min64(f->size - off, MAXMAP));
	if (off + len == f->size && (f->size & (uint64_t)(pagesz - 1)) != 0)
		tail = (uint64_t)pagesz - (f->size & (uint64_t)(pagesz - 1));
	note(o, off, len, "mapread  %-9s obj %2d [0x%06" PRIx64 ", +0x%"
	    PRIx64 "), size 0x%" PRIx64 "%s", slot_path(s), o, off, len,
	    f->size, tail ? ", with the tail of the last page" : "");
	p = map_range(s, o, off, len + tail, PROT_READ, &pg, &maplen);
	memcpy(iobuf, p, len + tail);
	if (munmap(p - (off - pg), maplen) != 0)
		failx("munmap %s: %s", slot_path(s), strerror(errno));
	/* The model's bytes past size are zero: one comparison does both. */
	check_bytes("mmap read", o, slot_path(s), off, iobuf, len + tail);
}

static void
op_truncate(int s)
{
	int o = slots[s];
	struct obj *f = &objs[o];
	uint64_t r = rnd_below(100), size;

	if (r < 20)
		size = f->size - rnd_below(f->size / 4 + 1);
	else if (r < 30)
		size = rnd_below(f->size + 1);
	else if (r < 33)
		size = 0;
	else if (r < 60)
		size = f->size + rnd_below(512 * KIB);
	else if (r < 85)
		size = aligned_off(f->max);
	else
		size = rnd_below(f->max + 1);
	size = min64(size, f->max);
	note(o, min64(size, f->size), f->size > size ? f->size - size :
	    size - f->size, "truncate %-9s obj %2d 0x%" PRIx64 " -> 0x%"
	    PRIx64, slot_path(s), o, f->size, size);
	do_ftruncate(s, o, size);
	check_stat(o, "after truncate");
}

/*
 * fallocate in one of the modes: punch a hole (keep size), allocate
 * (extending or not), zero a range (extending or not).
 */
static void
op_fallocate(int s, enum op which)
{
	int o = slots[s];
	struct obj *f = &objs[o];
	uint64_t off, len, r = rnd_below(2);
	int mode;
	const char *what;

	off = rnd_below(4) == 0 ? aligned_off(f->size + 64 * KIB) :
	    rnd_below(f->size + 64 * KIB);
	off = min64(off, f->max - 1);
	len = pick_len(f->max - off);
	if (which == OP_PUNCH) {
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		what = "punch";
	} else if (which == OP_FALLOC) {
		mode = r ? FALLOC_FL_KEEP_SIZE : 0;
		what = r ? "falloc keep" : "falloc";
	} else {
		mode = FALLOC_FL_ZERO_RANGE | (r ? FALLOC_FL_KEEP_SIZE : 0);
		what = r ? "zero keep" : "zero";
	}
	note(o, off, len, "%-8s %-9s obj %2d [0x%06" PRIx64 ", +0x%" PRIx64
	    "), size 0x%" PRIx64, what, slot_path(s), o, off, len, f->size);
	if (mode_off[which])
		return;
	if (fallocate(obj_fd(o), mode, (off_t)off, (off_t)len) != 0) {
		if (errno == EOPNOTSUPP && allow_eopnotsupp) {
			mode_off[which] = true;
			printf("fsx: %s refused (EOPNOTSUPP): not tried "
			    "again\n", what);
			return;
		}
		failx("fallocate %s %s [0x%" PRIx64 ", +0x%" PRIx64 "): %s",
		    what, slot_path(s), off, len, strerror(errno));
	}
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		model_zero(o, off, len);
	if ((mode & (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) == 0 &&
	    off + len > f->size)
		f->size = off + len;
	check_stat(o, "after fallocate");
}

/* Remove name S from the model; the last name frees the object. */
static void
drop_name(int s)
{
	int o = slots[s];

	slots[s] = -1;
	if (--objs[o].nlink == 0)
		obj_free(o);
}

/*
 * Rename a name to any other slot.  Over a name of another file, that
 * file loses a name; over another name of the same file, rename does
 * nothing at all (POSIX), and both names stay.
 */
static void
op_rename(void)
{
	int s = pick_slot(true), d = (int)rnd_below(NSLOTS);
	int o = slots[s];

	if (d == s)
		d = (d + 1) % NSLOTS;
	note(o, 0, 0, "rename   %-9s obj %2d -> %s%s", slot_path(s), o,
	    slot_path(d), slots[d] < 0 ? "" : slots[d] == o ?
	    " (another name of it)" : " (replacing another file)");
	if (renameat(topfd, slot_path(s), topfd, slot_path(d)) != 0)
		failx("rename %s -> %s: %s", slot_path(s), slot_path(d),
		    strerror(errno));
	if (slots[d] == o)
		return;
	if (slots[d] >= 0)
		drop_name(d);
	slots[d] = o;
	slots[s] = -1;
	check_stat(o, "after rename");
}

static void
op_link(void)
{
	int s = pick_slot(true), d = pick_slot(false);
	int o = slots[s];

	if (d < 0) {
		note(o, 0, 0, "link     no free name: fstat %s", slot_path(s));
		check_stat(o, "fstat");
		return;
	}
	note(o, 0, 0, "link     %-9s obj %2d -> %s", slot_path(s), o,
	    slot_path(d));
	if (linkat(topfd, slot_path(s), topfd, slot_path(d), 0) != 0)
		failx("link %s -> %s: %s", slot_path(s), slot_path(d),
		    strerror(errno));
	slots[d] = o;
	objs[o].nlink++;
	check_stat(o, "after link");
}

/* Unlink a name, unless that would leave fewer than MINOBJ files. */
static void
op_unlink(void)
{
	int s = pick_slot(true), o = slots[s];

	if (objs[o].nlink == 1 && nlive() <= MINOBJ) {
		note(o, 0, 0, "unlink   %-9s obj %2d: the last files, fstat "
		    "only", slot_path(s), o);
		check_stat(o, "fstat");
		return;
	}
	note(o, 0, 0, "unlink   %-9s obj %2d (nlink %d)", slot_path(s), o,
	    objs[o].nlink);
	if (unlinkat(topfd, slot_path(s), 0) != 0)
		failx("unlink %s: %s", slot_path(s), strerror(errno));
	drop_name(s);
	if (objs[o].live)
		check_stat(o, "after unlink");
}

/* A new empty file; its limit makes most files small and a few large. */
static int
create_obj(int s)
{
	uint64_t r = rnd_below(100);
	struct stat st;
	struct obj *f;
	int o;

	for (o = 0; o < MAXOBJ && objs[o].live; o++)
		;
	f = &objs[o];
	f->max = r < 20 ? 256 * KIB : r < 45 ? MIB : r < 75 ? 4 * MIB :
	    8 * MIB;
	f->data = calloc(1, f->max);
	if (f->data == NULL)
		failx("out of memory");
	f->fd = openat(topfd, slot_path(s), O_RDWR | O_CREAT | O_EXCL, 0644);
	if (f->fd < 0)
		failx("create %s: %s", slot_path(s), strerror(errno));
	if (fstat(f->fd, &st) != 0)
		failx("fstat %s: %s", slot_path(s), strerror(errno));
	f->live = true;
	f->nlink = 1;
	f->size = 0;
	f->ino = st.st_ino;
	slots[s] = o;
	return o;
}

static void
op_create(void)
{
	int s = pick_slot(false), o;

	if (s < 0 || nlive() >= MAXOBJ) {
		s = pick_slot(true);
		note(slots[s], 0, 0, "create   no room: fstat %s",
		    slot_path(s));
		check_stat(slots[s], "fstat");
		return;
	}
	note(-1, 0, 0, "create   %s", slot_path(s));
	o = create_obj(s);
	logent()->obj = o;
	check_stat(o, "after create");
}

static void
op_fsync(int s)
{
	int o = slots[s];
	bool data = rnd_below(2);

	note(o, 0, 0, "%-8s %-9s obj %2d", data ? "fdatasync" : "fsync",
	    slot_path(s), o);
	if ((data ? fdatasync(obj_fd(o)) : fsync(obj_fd(o))) != 0)
		failx("fsync %s: %s", slot_path(s), strerror(errno));
}

/* fstat by descriptor, and stat by this name: the same file. */
static void
op_stat(int s)
{
	int o = slots[s];
	struct stat st;

	note(o, 0, 0, "stat     %-9s obj %2d", slot_path(s), o);
	check_stat(o, "fstat");
	if (fstatat(topfd, slot_path(s), &st, 0) != 0)
		failx("stat %s: %s", slot_path(s), strerror(errno));
	if (st.st_ino != objs[o].ino || (uint64_t)st.st_size != objs[o].size)
		failx("stat %s: ino %ju size 0x%jx, model obj %d ino %" PRIu64
		    " size 0x%" PRIx64, slot_path(s), (uintmax_t)st.st_ino,
		    (uintmax_t)st.st_size, o, objs[o].ino, objs[o].size);
}

/*
 * Drop the file's clean pages from the kernel's page cache, so that the
 * next reads reach the filesystem instead of pages the kernel kept.
 */
static void
op_drop(int s)
{
	int o = slots[s], e;

	note(o, 0, 0, "drop     %-9s obj %2d: fadvise DONTNEED", slot_path(s),
	    o);
	if ((e = posix_fadvise(obj_fd(o), 0, 0, POSIX_FADV_DONTNEED)) != 0)
		failx("fadvise %s: %s", slot_path(s), strerror(e));
}

static enum op
pick_op(void)
{
	int r = (int)rnd_below(100), i;

	for (i = 0; i < OP_NR - 1; i++) {
		if (r < opweight[i])
			break;
		r -= opweight[i];
	}
	return (enum op)i;
}

static void
do_op(void)
{
	enum op op = pick_op();
	int s = pick_slot(true);

	switch (op) {
	case OP_WRITE:		op_write(s); break;
	case OP_READ:		op_read(s); break;
	case OP_MAPWRITE:	op_mapwrite(s); break;
	case OP_MAPREAD:	op_mapread(s); break;
	case OP_TRUNCATE:	op_truncate(s); break;
	case OP_PUNCH:
	case OP_FALLOC:
	case OP_ZERO:		op_fallocate(s, op); break;
	case OP_RENAME:		op_rename(); break;
	case OP_LINK:		op_link(); break;
	case OP_UNLINK:		op_unlink(); break;
	case OP_CREATE:		op_create(); break;
	case OP_FSYNC:		op_fsync(s); break;
	case OP_STAT:		op_stat(s); break;
	case OP_CLOSE:
		note(slots[s], 0, 0, "close    %-9s obj %2d", slot_path(s),
		    slots[s]);
		obj_close(slots[s]);
		break;
	default:		op_drop(s); break;
	}
}

/* ---- checking everything ------------------------------------------------ */

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directory holds exactly the model's names (and its subdirectories). */
static void
verify_dir(int d)
{
	const char *want[NSLOTS + 2];
	char *got[NSLOTS + 8], buf[NSLOTS + 2][16];
	int nw = 0, ng = 0, s, fd, i;
	struct dirent *de;
	DIR *dp;

	for (s = d; s < NSLOTS; s += NDIRS)
		if (slots[s] >= 0) {
			snprintf(buf[nw], sizeof(buf[nw]), "n%02d", s);
			want[nw] = buf[nw];
			nw++;
		}
	if (d == 0) {
		want[nw++] = "d1";
		want[nw++] = "d3";
	} else if (d == 1)
		want[nw++] = "d2";
	fd = d == 0 ? openat(topfd, ".", O_RDONLY | O_DIRECTORY) :
	    openat(topfd, dirs[d], O_RDONLY | O_DIRECTORY);
	if (fd < 0 || (dp = fdopendir(fd)) == NULL)
		failx("opendir '%s': %s", dirs[d], strerror(errno));
	while ((errno = 0, de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (ng == NSLOTS + 8)
			failx("directory '%s': too many entries", dirs[d]);
		got[ng++] = strdup(de->d_name);
	}
	if (errno != 0)
		failx("readdir '%s': %s", dirs[d], strerror(errno));
	closedir(dp);
	qsort(want, (size_t)nw, sizeof(want[0]), cmpstr);
	qsort(got, (size_t)ng, sizeof(got[0]), cmpstr);
	for (i = 0; i < nw || i < ng; i++)
		if (i >= nw || i >= ng || strcmp(want[i], got[i]) != 0)
			failx("directory '%s': entry %d is '%s', model '%s' "
			    "(%d entries, model %d)", dirs[d], i,
			    i < ng ? got[i] : "(none)",
			    i < nw ? want[i] : "(none)", ng, nw);
	for (i = 0; i < ng; i++)
		free(got[i]);
}

/*
 * Check every directory, every name's inode, size and link count, and
 * every file's whole content (read by a fresh open of one of its names).
 */
static void
verify_all(const char *when)
{
	struct stat st;
	int d, s, o;

	for (d = 0; d < NDIRS; d++)
		verify_dir(d);
	for (s = 0; s < NSLOTS; s++) {
		if ((o = slots[s]) < 0)
			continue;
		if (fstatat(topfd, slot_path(s), &st, 0) != 0)
			failx("%s: stat %s: %s", when, slot_path(s),
			    strerror(errno));
		if (!S_ISREG(st.st_mode) || st.st_ino != objs[o].ino ||
		    (uint64_t)st.st_size != objs[o].size ||
		    st.st_nlink != (nlink_t)objs[o].nlink)
			failx("%s: %s: mode 0%o ino %ju size 0x%jx nlink %ju; "
			    "model obj %d ino %" PRIu64 " size 0x%" PRIx64
			    " nlink %d", when, slot_path(s), st.st_mode,
			    (uintmax_t)st.st_ino, (uintmax_t)st.st_size,
			    (uintmax_t)st.st_nlink, o, objs[o].ino,
			    objs[o].size, objs[o].nlink);
	}
	for (o = 0; o < MAXOBJ; o++) {
		uint64_t off;
		int fs;

		if (!objs[o].live)
			continue;
		obj_close(o);
		fs = obj_slot(o, opno);	/* the name obj_fd opens */
		for (off = 0; off <= objs[o].size; off += MAXIO)
			read_check(fs, o, off, MAXIO, when);
		check_stat(o, when);
		obj_close(o);
	}
}

/* ---- the state file ----------------------------------------------------- */

struct state_hdr {
	char		magic[8];
	uint64_t	seed, opno, rs[4];
	int32_t		slots[NSLOTS];
};

struct state_obj {
	uint64_t	live, size, max, ino;
};

static void
xwrite(FILE *fp, const void *p, size_t n, const char *path)
{
	if (n != 0 && fwrite(p, n, 1, fp) != 1)
		failx("write %s: %s", path, strerror(errno));
}

static void
xread(FILE *fp, void *p, size_t n, const char *path)
{
	if (n != 0 && fread(p, n, 1, fp) != 1)
		failx("read %s: %s", path, ferror(fp) ? strerror(errno) :
		    "truncated");
}

/* Write the model to PATH.tmp, then rename: a crash leaves the old one. */
static void
save_state(const char *path)
{
	struct state_hdr h = { .magic = STATE_MAGIC };
	char tmp[4096];
	FILE *fp;
	int s, o;

	h.seed = seed;
	h.opno = opno;
	memcpy(h.rs, rs, sizeof(rs));
	for (s = 0; s < NSLOTS; s++)
		h.slots[s] = slots[s];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fp = fopen(tmp, "w")) == NULL)
		failx("create %s: %s", tmp, strerror(errno));
	xwrite(fp, &h, sizeof(h), tmp);
	for (o = 0; o < MAXOBJ; o++) {
		struct state_obj so = { objs[o].live, objs[o].size,
		    objs[o].max, objs[o].ino };

		xwrite(fp, &so, sizeof(so), tmp);
		if (objs[o].live)
			xwrite(fp, objs[o].data, objs[o].size, tmp);
	}
	if (fclose(fp) != 0 || rename(tmp, path) != 0)
		failx("save %s: %s", path, strerror(errno));
}

static void
load_state(const char *path)
{
	struct state_hdr h;
	FILE *fp;
	int s, o;

	if ((fp = fopen(path, "r")) == NULL)
		failx("open %s: %s", path, strerror(errno));
	xread(fp, &h, sizeof(h), path);
	if (memcmp(h.magic, STATE_MAGIC, 8) != 0)
		failx("%s: not an fsx_model state file", path);
	if (seed != 0 && seed != h.seed)
		failx("%s was made with seed %" PRIu64 ", not %" PRIu64, path,
		    h.seed, seed);
	seed = h.seed;
	opno = h.opno;
	memcpy(rs, h.rs, sizeof(rs));
	for (o = 0; o < MAXOBJ; o++) {
		struct state_obj so;

		xread(fp, &so, sizeof(so), path);
		objs[o].fd = -1;
		if (!so.live)
			continue;
		if (so.size > so.max || so.max > 64 * MIB)
			failx("%s: object %d is damaged", path, o);
		objs[o].live = true;
		objs[o].size = so.size;
		objs[o].max = so.max;
		objs[o].ino = so.ino;
		if ((objs[o].data = calloc(1, so.max)) == NULL)
			failx("out of memory");
		xread(fp, objs[o].data, so.size, path);
	}
	fclose(fp);
	for (s = 0; s < NSLOTS; s++) {
		slots[s] = h.slots[s];
		if (slots[s] >= MAXOBJ || (slots[s] >= 0 &&
		    !objs[slots[s]].live))
			failx("%s: name slot %d is damaged", path, s);
		if (slots[s] >= 0)
			objs[slots[s]].nlink++;
	}
}

/* A fresh tree: the subdirectories and INITOBJ empty files. */
static void
init_tree(void)
{
	uint64_t x = seed;
	int i, o;

	for (i = 0; i < 4; i++)
		rs[i] = splitmix64(&x);
	for (o = 0; o < MAXOBJ; o++)
		objs[o].fd = -1;
	for (i = 0; i < NSLOTS; i++)
		slots[i] = -1;
	if (mkdirat(topfd, "d1", 0755) != 0 ||
	    mkdirat(topfd, "d1/d2", 0755) != 0 ||
	    mkdirat(topfd, "d3", 0755) != 0)
		failx("mkdir in the test directory (not empty?): %s",
		    strerror(errno));
	for (i = 0; i < INITOBJ; i++)
		create_obj(i);
}

static void
close_all(void)
{
	int o;

	for (o = 0; o < MAXOBJ; o++)
		if (objs[o].live)
			obj_close(o);
}

/* ---- main --------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr,
"usage: fsx_model --dir DIR --state FILE [--init] [--seed S] [--ops N]\n"
"                 [--verify-only] [--label TEXT] [-v] [--allow-eopnotsupp]\n"
"  --init          DIR is new or empty: make the files, start the model\n"
"                  (needs --seed); otherwise load it from FILE and check\n"
"                  every file against it first\n"
"  --ops N         operations to run, then check all and save to FILE\n"
"  --verify-only   load and check, run nothing, leave FILE as it is\n");
	exit(2);
}

static uint64_t
num_arg(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || *s == '\0' || *end != '\0')
		usage();
	return v;
}

int
main(int argc, char **argv)
{
	const char *dir = NULL, *state = NULL;
	bool init = false, verify_only = false, have_seed = false;
	uint64_t nops = 0, i, first;
	struct sigaction sa = { .sa_handler = on_fatal_signal };
	int a;

	for (a = 1; a < argc; a++) {
		const char *o = argv[a];
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;

		if (strcmp(o, "--init") == 0)
			init = true;
		else if (strcmp(o, "--verify-only") == 0)
			verify_only = true;
		else if (strcmp(o, "-v") == 0)
			verbose = true;
		else if (strcmp(o, "--allow-eopnotsupp") == 0)
			allow_eopnotsupp = true;
		else if (v == NULL)
			usage();
		else if (strcmp(o, "--dir") == 0 && ++a)
			dir = v;
		else if (strcmp(o, "--state") == 0 && ++a)
			state = v;
		else if (strcmp(o, "--label") == 0 && ++a)
			label = v;
		else if (strcmp(o, "--ops") == 0 && ++a)
			nops = num_arg(v);
		else if (strcmp(o, "--seed") == 0 && ++a) {
			seed = num_arg(v);
			have_seed = true;
		} else
			usage();
	}
	if (dir == NULL || state == NULL || (init && !have_seed) ||
	    (init && verify_only) || (have_seed && seed == 0))
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	pagesz = sysconf(_SC_PAGESIZE);
	iobuf = malloc(MAXIO + (size_t)pagesz);
	genbuf = malloc(MAXIO + (size_t)pagesz);
	if (iobuf == NULL || genbuf == NULL)
		failx("out of memory");
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	if (init)
		mkdir(dir, 0755);
	if ((topfd = open(dir, O_RDONLY | O_DIRECTORY)) < 0)
		failx("open %s: %s", dir, strerror(errno));
	if (init)
		init_tree();
	else {
		load_state(state);
		verify_all("check after load");
	}
	first = opno + 1;
	if (!verify_only) {
		for (i = 0; i < nops; i++) {
			opno++;
			do_op();
		}
		close_all();
		verify_all("check at the end");
		save_state(state);
	}
	if (verify_only)
		printf("PASS: %s: all files match the model after op %" PRIu64
		    ", seed %" PRIu64 "\n", label, opno, seed);
	else
		printf("PASS: %s: %" PRIu64 " ops (%" PRIu64 "-%" PRIu64
		    "), seed %" PRIu64 "\n", label, nops, first, opno, seed);
	return 0;
}
