/*
 * flyfs_main.c - the flyfs daemon: flyfs IMAGE MOUNTPOINT [-f] [-d] [-o OPTS]
 *
 * This module owns the command line, the order in which a mount comes up
 * and goes down, and the process around it (background, signals, logs).
 * The operations themselves are fuse_ops.c's.
 *
 * Coming up: parse options; check the image and the mount point; take an
 * exclusive flock on the image (two daemons on one image would corrupt
 * it); go to the background (fork before any thread exists: the core's
 * daemons and libaio's completion thread would not survive a fork); mount
 * the filesystem (journal replay); create the FUSE session and mount it;
 * tell the waiting parent that all went well -- or what went wrong, so a
 * background mount fails loudly on the terminal that started it.
 *
 * Going down: fusermount3 -u / umount end the session; SIGTERM, SIGINT
 * and SIGHUP make the loop exit.  Either way the kernel mount is removed
 * first (no new requests), then flyfs_unmount() commits the journal and
 * writes every dirty buffer before the process exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cache/buf.h"		/* struct buf, NBUFCALCSIZE: header budget */
#include "fs/flyfs.h"
#include "fs/fuse_ops.h"
#include "fs/ondisk.h"		/* FLYFS_COMP_*, zstd level range */

#ifndef FLYFS_VERSION
#define FLYFS_VERSION "unknown"
#endif

#define DEFAULT_THREADS		16
#define MAX_THREADS		256
#define ATTR_TIMEOUT		1.0	/* seconds; see fuse_ops.c */
#define IMAGE_LOCK_WAIT		10	/* seconds to wait for a previous
					 * daemon on the image to finish */

/* What the command line asked for. */
struct cmdline {
	char		*image;
	char		*mountpoint;
	char		*cache_size;	/* -o cache_size= */
	char		*compress;	/* -o compress= */
	char		*cache;		/* -o cache= */
	unsigned	commit;		/* -o commit= */
	unsigned	threads;	/* -o threads= */
	int		ro;
	int		noatime;	/* -o noatime: reads leave atime */
	int		noclone_fd;
	int		no_default_permissions;
	int		foreground;
	int		debug;
	int		help;
	int		version;
	int		nargs;		/* non-option arguments seen */
};

enum { KEY_HELP, KEY_VERSION, KEY_FOREGROUND, KEY_DEBUG, KEY_RO, KEY_NOATIME,
    KEY_DROP };

#define OPT(t, p) { t, offsetof(struct cmdline, p), 1 }
static const struct fuse_opt cmdline_spec[] = {
	{ "cache_size=%s", offsetof(struct cmdline, cache_size), 0 },
	{ "compress=%s", offsetof(struct cmdline, compress), 0 },
	{ "cache=%s", offsetof(struct cmdline, cache), 0 },
	{ "commit=%u", offsetof(struct cmdline, commit), 0 },
	{ "threads=%u", offsetof(struct cmdline, threads), 0 },
	OPT("noclone_fd", noclone_fd),
	OPT("no_default_permissions", no_default_permissions),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("noatime", KEY_NOATIME),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	/* fstab-only words that mount(8) / mount.fuse3 may pass along */
	FUSE_OPT_KEY("defaults", KEY_DROP),
	FUSE_OPT_KEY("nofail", KEY_DROP),
	FUSE_OPT_KEY("_netdev", KEY_DROP),
	FUSE_OPT_KEY("auto", KEY_DROP),
	FUSE_OPT_KEY("noauto", KEY_DROP),
	FUSE_OPT_KEY("user", KEY_DROP),
	FUSE_OPT_KEY("nouser", KEY_DROP),
	FUSE_OPT_KEY("users", KEY_DROP),
	FUSE_OPT_KEY("x-", KEY_DROP),
	FUSE_OPT_END
};

static const char *progname = "flyfs";

static void __attribute__((format(printf, 1, 2)))
errmsg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: %s IMAGE MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]\n"
"       %s -h | --help | -V | --version\n"
"\n"
"Mount the flyfs filesystem in IMAGE (made by mkfs.flyfs) on MOUNTPOINT.\n"
"\n"
"  -f                     stay in the foreground\n"
"  -d, -o debug           print every FUSE request (implies -f)\n"
"  -h, --help             this text, then libfuse's options\n"
"  -V, --version          versions of flyfs and libfuse\n"
"\n"
"flyfs options (-o):\n"
"  cache_size=SIZE        buffer cache memory (data and headers), bytes or\n"
"                         with K/M/G (default: 1/8 of RAM within [16M, 2G])\n"
"  cache=MODE             the kernel page cache in front of the buffer cache:\n"
"                           keep       (default) page cache, writes go through\n"
"                                      at once, cached pages kept across opens\n"
"                           strict     as keep, cached pages dropped at open\n"
"                           writeback  kernel writeback cache: writes reach\n"
"                                      flyfs later, coalesced\n"
"                           direct     no page cache (direct_io; shared\n"
"                                      writable mmap is refused)\n"
"  compress=none|zstd[:LEVEL]  compress file data on flush (default: as\n"
"                         the image says; LEVEL %d..%d)\n"
"  commit=SECONDS         periodic journal commit (default 5)\n"
"  ro                     read-only (no journal replay: refused if needed)\n"
"  threads=N              FUSE worker threads (default %d)\n"
"  noclone_fd             one /dev/fuse descriptor for all workers\n"
"  no_default_permissions let flyfs, not the kernel, check permissions\n"
"                         (flyfs checks none: do not use)\n"
"\n"
"default_permissions, fsname=IMAGE and subtype=flyfs are always passed to\n"
"the kernel; allow_other and the usual mount options (noatime, nosuid,\n"
"nodev, noexec, ...) are passed through.\n",
	    progname, progname, FLYFS_ZSTD_LEVEL_MIN, FLYFS_ZSTD_LEVEL_MAX,
	    DEFAULT_THREADS);
}

static int
opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cmdline *cl = data;

	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (cl->nargs == 0)
			cl->image = strdup(arg);
		else if (cl->nargs == 1)
			cl->mountpoint = strdup(arg);
		else {
			errmsg("unexpected argument '%s'", arg);
			return -1;
		}
		cl->nargs++;
		return 0;
	case KEY_HELP:
		cl->help = 1;
		return 0;
	case KEY_VERSION:
		cl->version = 1;
		return 0;
	case KEY_FOREGROUND:
		cl->foreground = 1;
		return 0;
	case KEY_DEBUG:
		cl->debug = cl->foreground = 1;
		return 1;			/* libfuse prints requests */
	case KEY_RO:
		cl->ro = 1;
		return 1;			/* and the kernel mount is ro */
	case KEY_NOATIME:
		cl->noatime = 1;
		return 1;			/* the kernel shows it in mounts */
	case KEY_DROP:
		return 0;
	default:
		return 1;			/* libfuse's */
	}
}

/* "64M" -> bytes; 0 and EINVAL like the rest. */
static int
parse_size(const char *s, long *out)
{
	char *end;
	long v, mul = 1;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || errno || v < 0)
		return EINVAL;
	switch (*end) {
	case 'k': case 'K': mul = 1L << 10; end++; break;
	case 'm': case 'M': mul = 1L << 20; end++; break;
	case 'g': case 'G': mul = 1L << 30; end++; break;
	case 't': case 'T': mul = 1L << 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'b' || *end == 'B')
		end++;
	if (*end != '\0' || __builtin_mul_overflow(v, mul, out))
		return EINVAL;
	return 0;
}

static int
parse_compress(const char *s, struct flyfs_mount_opts *mo)
{
	char *end;
	long lvl;

	if (strcmp(s, "none") == 0) {
		mo->compress = FLYFS_COMP_NONE;
		return 0;
	}
	if (strncmp(s, "zstd", 4) != 0)
		return EINVAL;
	mo->compress = FLYFS_COMP_ZSTD;
	if (s[4] == '\0')
		return 0;
	if (s[4] != ':')
		return EINVAL;
	lvl = strtol(s + 5, &end, 10);
	if (end == s + 5 || *end != '\0' || lvl < FLYFS_ZSTD_LEVEL_MIN ||
	    lvl > FLYFS_ZSTD_LEVEL_MAX)
		return EINVAL;
	mo->compress_level = (int)lvl;
	return 0;
}

/* Turn the command line into mount options and a mount mode.  0 or -1. */
static int
check_cmdline(struct cmdline *cl, struct flyfs_mount_opts *mo,
    struct flyfs_fuse *ff)
{
	memset(mo, 0, sizeof(*mo));
	mo->compress = -1;
	if (cl->cache_size && parse_size(cl->cache_size, &mo->cache_size)) {
		errmsg("bad cache_size '%s' (bytes, or a number with K, M or G)",
		    cl->cache_size);
		return -1;
	}
	if (cl->compress && parse_compress(cl->compress, mo)) {
		errmsg("bad compress '%s' (none, zstd or zstd:LEVEL with LEVEL "
		    "%d..%d)", cl->compress, FLYFS_ZSTD_LEVEL_MIN,
		    FLYFS_ZSTD_LEVEL_MAX);
		return -1;
	}
	if (cl->commit > 86400) {
		errmsg("bad commit=%u (seconds, at most 86400)", cl->commit);
		return -1;
	}
	/*
	 * cache_size is the cache's memory, buffer headers included: the
	 * core sizes buffer data (maxbufspace) to what is left after one
	 * header per NBUFCALCSIZE bytes (~5%), so that the daemon's RSS stays
	 * within cache_size plus a small fixed overhead (FUSE buffers,
	 * stacks).  0 (the core's default) is left alone.
	 */
	if (mo->cache_size > 0)
		mo->cache_size -= mo->cache_size / NBUFCALCSIZE *
		    (long)sizeof(struct buf);
	mo->commit_interval = (int)cl->commit;
	mo->readonly = cl->ro;
	mo->noatime = cl->noatime;
	if (cl->threads == 0)
		cl->threads = DEFAULT_THREADS;
	if (cl->threads > MAX_THREADS) {
		errmsg("bad threads=%u (1..%d)", cl->threads, MAX_THREADS);
		return -1;
	}
	ff->cache_mode = FLYFS_CACHE_KEEP;
	if (cl->cache && flyfs_cache_mode_parse(cl->cache, &ff->cache_mode)) {
		errmsg("bad cache '%s' (strict, keep, writeback or direct)",
		    cl->cache);
		return -1;
	}
	ff->readonly = cl->ro;
	ff->debug = cl->debug;
	ff->mount_uid = getuid();
	ff->attr_timeout = ATTR_TIMEOUT;
	ff->entry_timeout = ATTR_TIMEOUT;
	return 0;
}

/* The image must exist and be a file or a block device. */
static int
check_image(const char *image)
{
	struct stat st;

	if (stat(image, &st) != 0) {
		errmsg("%s: %s", image, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		errmsg("%s: not a regular file or block device", image);
		return -1;
	}
	return 0;
}

/* The mount point must be a directory that nothing is mounted on. */
static int
check_mountpoint(const char *mp)
{
	char parent[PATH_MAX];
	struct stat st, pst;

	if (stat(mp, &st) != 0) {
		errmsg("mount point %s: %s%s", mp, strerror(errno),
		    errno == ENOTCONN ? " (a dead FUSE mount: fusermount3 -u "
		    "it first)" : "");
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		errmsg("mount point %s: not a directory", mp);
		return -1;
	}
	snprintf(parent, sizeof(parent), "%s/..", mp);
	if (stat(parent, &pst) == 0 &&
	    (pst.st_dev != st.st_dev || pst.st_ino == st.st_ino)) {
		errmsg("mount point %s is busy: something is mounted on it", mp);
		return -1;
	}
	return 0;
}

/*
 * One daemon per image.  A daemon that was just unmounted may still be
 * writing its dirty buffers: wait a little for it, so "umount; mount" works.
 */
static int
lock_image(const char *image)
{
	int fd, i;

	if ((fd = open(image, O_RDONLY | O_CLOEXEC)) < 0) {
		errmsg("%s: %s", image, strerror(errno));
		return -1;
	}
	for (i = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; i++) {
		if (errno != EWOULDBLOCK || i >= IMAGE_LOCK_WAIT * 10) {
			errmsg("%s: in use by another flyfs (%s)", image,
			    errno == EWOULDBLOCK ? "still locked after "
			    "waiting" : strerror(errno));
			close(fd);
			return -1;
		}
		if (i == 0)
			fprintf(stderr, "%s: %s is locked, waiting for the "
			    "flyfs using it to finish\n", progname, image);
		usleep(100 * 1000);
	}
	return fd;			/* held until exit */
}

/* ---- background ------------------------------------------------------------- */

/*
 * Fork; the parent waits for the child's verdict on the status pipe: a
 * zero byte for success, else the error text, which it prints.  Returns
 * the write end in the child (-1 in the foreground).
 */
static int
go_background(void)
{
	char buf[1024];
	int pfd[2];
	ssize_t n;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) != 0) {
		errmsg("pipe: %s", strerror(errno));
		exit(1);
	}
	if ((pid = fork()) < 0) {
		errmsg("fork: %s", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		/* Text until a NUL byte (success) or EOF (the child died). */
		close(pfd[1]);
		while ((n = read(pfd[0], buf, sizeof(buf))) > 0) {
			char *nul = memchr(buf, '\0', (size_t)n);

			fwrite(buf, 1, nul ? (size_t)(nul - buf) : (size_t)n,
			    stderr);
			if (nul != NULL)
				_exit(0);
		}
		_exit(1);
	}
	close(pfd[0]);
	setsid();
	return pfd[1];
}

static void
syslog_func(enum fuse_log_level level, const char *fmt, va_list ap)
{
	vsyslog((int)level, fmt, ap);
}

/* Success: let the parent go, and detach from the terminal. */
static void
report_ready(int statusfd, bool debug)
{
	char ok = '\0';
	int fd;

	if (statusfd < 0)
		return;
	openlog("flyfs", LOG_PID, LOG_DAEMON);
	fuse_set_log_func(syslog_func);
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		if (!debug) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (fd > 2)
			close(fd);
	}
	if (write(statusfd, &ok, 1) != 1)
		syslog(LOG_WARNING, "flyfs: status pipe: %m");
	close(statusfd);
}

/* Failure in the background: the parent prints what we wrote on stderr.
 * Everything before report_ready() writes to stderr, which the child
 * redirects into the status pipe. */
static void
capture_stderr(int statusfd)
{
	if (statusfd >= 0)
		dup2(statusfd, 2);
}

/* ---- mount and run -------------------------------------------------------- */

static int
add_opt(struct fuse_args *args, const char *fmt, const char *val)
{
	char buf[PATH_MAX + 64];

	snprintf(buf, sizeof(buf), fmt, val);
	return fuse_opt_add_arg(args, "-o") || fuse_opt_add_arg(args, buf);
}

/*
 * Mount SE on the mount point and serve it until unmount or a stop signal.
 * Returns the exit status.
 */
static int
run_session(struct fuse_session *se, struct cmdline *cl,
    struct flyfs_fuse *ff, int statusfd)
{
	struct fuse_loop_config *lc;
	sigset_t sigs;
	int ret = 1, error;

	if (fuse_set_signal_handlers(se) != 0)
		return 1;
	if (fuse_session_mount(se, cl->mountpoint) != 0) {
		errmsg("cannot mount on %s", cl->mountpoint);
		goto out_signals;
	}
	if ((error = flyfs_fuse_wire(se)) != 0) {
		errmsg("cannot hook the FUSE device: %s", strerror(error));
		goto out_unmount;
	}
	flyfs_fuse_attach(ff, se);
	report_ready(statusfd, cl->debug);

	/* Signals to this thread only: the workers and the core's threads
	 * block them, so the loop's sem_wait here sees EINTR and ends. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);

	if ((lc = fuse_loop_cfg_create()) == NULL)
		goto out_unmount;
	fuse_loop_cfg_set_clone_fd(lc, !cl->noclone_fd);
	fuse_loop_cfg_set_max_threads(lc, cl->threads);
	fuse_loop_cfg_set_idle_threads(lc, cl->threads);
	/* 0 after an unmount, the signal's number after a stop signal (both
	 * clean stops), or -errno. */
	ret = fuse_session_loop_mt(se, lc) < 0;
	fuse_loop_cfg_destroy(lc);
	/* Reads still waiting for the disk answer on a live session. */
	flyfs_fuse_drain(ff);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
	return ret;
}

int
main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct flyfs_mount_opts mo;
	struct fuse_session *se = NULL;
	struct flyfs_fuse ff;
	struct cmdline cl;
	char err[512], image[PATH_MAX], mntpath[PATH_MAX];
	sigset_t sigs;
	int statusfd = -1, lockfd = -1, ret = 0, uerr;

	memset(&cl, 0, sizeof(cl));
	memset(&ff, 0, sizeof(ff));
	if (fuse_opt_parse(&args, &cl, cmdline_spec, opt_proc) != 0)
		return 2;
	if (cl.help) {
		usage(stdout);
		printf("\nlibfuse options:\n");
		fflush(stdout);
		fuse_lowlevel_help();
		ret = 0;
		goto out;
	}
	if (cl.version) {
		printf("flyfs version %s\nFUSE library version %s\n",
		    FLYFS_VERSION, fuse_pkgversion());
		fflush(stdout);
		fuse_lowlevel_version();
		ret = 0;
		goto out;
	}
	if (cl.nargs != 2) {
		usage(stderr);
		ret = 2;
		goto out;
	}
	if (check_cmdline(&cl, &mo, &ff) != 0) {
		ret = 2;
		goto out;
	}
	if (check_image(cl.image) || realpath(cl.image, image) == NULL) {
		ret = 1;
		goto out;
	}
	if (check_mountpoint(cl.mountpoint) != 0) {
		ret = 1;
		goto out;
	}
	/* Absolute from here on: the daemon does chdir("/") before mounting,
	 * and a relative "mnt" would then name /mnt. */
	if (realpath(cl.mountpoint, mntpath) == NULL) {
		errmsg("mount point %s: %s", cl.mountpoint, strerror(errno));
		ret = 1;
		goto out;
	}
	free(cl.mountpoint);
	if ((cl.mountpoint = strdup(mntpath)) == NULL) {
		ret = 1;
		goto out;
	}
	if (!cl.no_default_permissions &&
	    add_opt(&args, "%s", "default_permissions")) {
		ret = 1;
		goto out;
	}
	if (add_opt(&args, "fsname=%s", image) ||
	    add_opt(&args, "subtype=%s", "flyfs")) {
		ret = 1;
		goto out;
	}
	/* Options are checked here, before anything is mounted. */
	se = fuse_session_new(&args, flyfs_fuse_ops(),
	    sizeof(struct fuse_lowlevel_ops), &ff);
	if (se == NULL) {
		ret = 2;			/* libfuse said why */
		goto out;
	}
	if ((lockfd = lock_image(image)) < 0) {
		ret = 1;
		goto out;
	}

	if (!cl.foreground) {
		statusfd = go_background();
		capture_stderr(statusfd);
	}
	if (chdir("/") != 0)
		errmsg("chdir /: %s", strerror(errno));

	/* The core's threads inherit a mask without the stop signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	err[0] = '\0';
	uerr = flyfs_mount(image, &mo, &ff.fs, err, sizeof(err));
	if (uerr) {
		errmsg("%s: %s", image, err[0] ? err : strerror(uerr));
		ret = 1;
		goto out;
	}
	ret = run_session(se, &cl, &ff, statusfd);
	fuse_session_destroy(se);
	se = NULL;

	uerr = flyfs_unmount(ff.fs);
	if (uerr) {
		fuse_log(FUSE_LOG_ERR, "flyfs: %s: unmount: %s\n", image,
		    strerror(uerr));
		ret = 1;
	}
out:
	/* Every exit after parsing comes here, so nothing libfuse or the
	 * option parser allocated outlives main (LeakSanitizer checks). */
	if (se != NULL)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	if (lockfd >= 0)
		close(lockfd);
	free(cl.image);
	free(cl.mountpoint);
	free(cl.cache_size);
	free(cl.compress);
	free(cl.cache);
	return ret;
}
