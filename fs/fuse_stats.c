/*
 * fuse_stats.c - the virtual extended attributes: statistics and tunables
 * of a mounted flyfs, in the "flyfs." namespace (as CephFS has "ceph.").
 *
 * This module owns the names and their text.  Nothing here is stored on
 * disk: values are rendered from the buffer cache's registry
 * (cache/bufstats.h), the core's figures (flyfs_stats_foreach,
 * flyfs_file_stats_foreach) at each getxattr.  The names are never listed
 * by listxattr, so cp -a and rsync -X do not copy them, and they cannot
 * collide with real attributes, which must live in user., trusted.,
 * security. or system.
 *
 *   any inode   flyfs.file.<name>   per-file figure (ro)
 *               flyfs.stats         every name of this inode, "name value\n"
 *               flyfs.compression   the inode's compression setting (rw;
 *                                   on the root: the live mount-wide one)
 *   root only   flyfs.vfs.<name>    buffer cache registry entry (ro or rw)
 *               flyfs.vfs.drop_caches  write 1: drop clean buffers;
 *                                      3: commit and write dirty ones first
 *               flyfs.fs.<name>     filesystem-wide figure (ro), or a
 *                                   compression tunable (rw or ro)
 *
 * docs/xattrs.md is the user's reference; keep it in step.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/buf.h"
#include "cache/buf_lock.h"
#include "cache/bufstats.h"
#include "blockdev/blockdev.h"
#include "fs/flyfs.h"
#include "fs/fs_int.h"		/* s_bdev, for the device counters */
#include "fs/fuse_ops.h"

#define P_VFS	FLYFS_XATTR_PREFIX "vfs."
#define P_FS	FLYFS_XATTR_PREFIX "fs."
#define P_FILE	FLYFS_XATTR_PREFIX "file."
#define N_STATS	FLYFS_XATTR_PREFIX "stats"
#define N_COMP	FLYFS_XATTR_PREFIX "compression"
#define DROP_CACHES	"drop_caches"

bool
fstats_is_virtual(const char *name)
{
	return strncmp(name, FLYFS_XATTR_PREFIX,
	    sizeof(FLYFS_XATTR_PREFIX) - 1) == 0;
}

static const char *
after(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(name, prefix, n) == 0 ? name + n : NULL;
}

/* ---- text ---------------------------------------------------------------- */

struct sbuf {
	char	*p;
	size_t	len, cap;
	bool	oom;
};

static void __attribute__((format(printf, 2, 3)))
sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;
	size_t ncap;
	char *np;
	int n;

	if (s->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(s->p ? s->p + s->len : NULL,
		    s->p ? s->cap - s->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			s->oom = true;
			return;
		}
		if (s->p && s->len + (size_t)n < s->cap) {
			s->len += (size_t)n;
			return;
		}
		ncap = s->cap ? s->cap : 256;
		while (ncap <= s->len + (size_t)n)
			ncap *= 2;
		if ((np = realloc(s->p, ncap)) == NULL) {
			s->oom = true;
			return;
		}
		s->p = np;
		s->cap = ncap;
	}
}

/* Hand the text over as an xattr value (no NUL counted). */
static int
sbuf_finish(struct sbuf *s, char **valp, size_t *lenp)
{
	if (s->oom) {
		free(s->p);
		return ENOMEM;
	}
	if (s->p == NULL)
		sbuf_printf(s, "%s", "");
	*valp = s->p;
	*lenp = s->len;
	return s->oom ? ENOMEM : 0;
}

/* ---- one value, or all of them ------------------------------------------ */

/* A foreach callback that looks for one name, or prints every one. */
struct figure {
	const char	*want;		/* NULL: print all to out */
	const char	*prefix;	/* for printing: "fs.", "file." */
	bool		found;
	uint64_t	value;
	struct sbuf	*out;
};

static void
figure_cb(void *arg, const char *name, uint64_t value)
{
	struct figure *f = arg;

	if (f->want == NULL) {
		sbuf_printf(f->out, "%s%s %" PRIu64 "\n", f->prefix, name,
		    value);
	} else if (!f->found && strcmp(f->want, name) == 0) {
		f->found = true;
		f->value = value;
	}
}

static void
format_vfs(struct sbuf *s)
{
	int i;

	for (i = 0; i < bufstat_count(); i++)
		sbuf_printf(s, "vfs.%s %ld\n", bufstat_at(i)->bs_name,
		    bufstat_read(bufstat_at(i)));
}

/*
 * flyfs.fs.dev_*: the image device's own counters (blockdev_get_stats),
 * i.e. every byte that reached the image -- buffer cache writes, the
 * journal's log writes, superblock and O_DIRECT bounce writes -- which is
 * what a benchmark's "bytes written to the backing store" must count.
 */
static void
dev_stats_foreach(struct flyfs_fuse *ff,
    void (*fn)(void *arg, const char *name, uint64_t value), void *arg)
{
	struct blockdev_stats st;

	if (ff->fs == NULL || ff->fs->s_bdev == NULL)
		return;
	blockdev_get_stats(ff->fs->s_bdev, &st);
	fn(arg, "dev_reads", st.reads);
	fn(arg, "dev_writes", st.writes);
	fn(arg, "dev_flushes", st.flushes);
	fn(arg, "dev_read_bytes", st.read_bytes);
	fn(arg, "dev_write_bytes", st.write_bytes);
	fn(arg, "dev_errors", st.errors);
	fn(arg, "dev_inflight", st.inflight);
	fn(arg, "dev_max_inflight", st.max_inflight);
	fn(arg, "dev_ring_waits", st.ring_waits);
	fn(arg, "dev_syncs", st.syncs);
	fn(arg, "dev_own_reads", st.own_reads);
	fn(arg, "dev_lat_total_us", st.lat_total_ns / 1000);
}

static void
fs_figures(struct flyfs_fuse *ff,
    void (*fn)(void *arg, const char *name, uint64_t value), void *arg)
{
	flyfs_stats_foreach(ff->fs, fn, arg);
	dev_stats_foreach(ff, fn, arg);
}

/* flyfs.stats: everything INO has. */
static int
format_all(struct flyfs_fuse *ff, uint64_t ino, struct sbuf *s)
{
	struct figure f = { .out = s };
	int err;

	if (ino == FLYFS_ROOT_INO) {
		format_vfs(s);
		f.prefix = "fs.";
		fs_figures(ff, figure_cb, &f);
	}
	f.prefix = "file.";
	err = flyfs_file_stats_foreach(ff->fs, ino, figure_cb, &f);
	/* A core that has no per-file figures yet still gives the rest. */
	if (err == ENOSYS || err == EOPNOTSUPP)
		err = 0;
	return err;
}

int
fstats_get(struct flyfs_fuse *ff, uint64_t ino, const char *name,
    char **valp, size_t *lenp)
{
	struct sbuf s = { 0 };
	struct figure f = { 0 };
	const struct bufstat *bs;
	const char *n;
	size_t len;
	int err;

	if (strcmp(name, N_COMP) == 0) {
		char buf[32];

		err = flyfs_compression_get(ff->fs, ino, buf, sizeof(buf),
		    &len);
		if (err)
			return err;
		sbuf_printf(&s, "%.*s", (int)len, buf);
		return sbuf_finish(&s, valp, lenp);
	}
	if (strcmp(name, N_STATS) == 0) {
		err = format_all(ff, ino, &s);
		if (err) {
			free(s.p);
			return err;
		}
		return sbuf_finish(&s, valp, lenp);
	}
	if ((n = after(name, P_FILE)) != NULL) {
		f.want = n;
		err = flyfs_file_stats_foreach(ff->fs, ino, figure_cb, &f);
		if (err)
			return err == ENOSYS || err == EOPNOTSUPP ? ENODATA : err;
		if (!f.found)
			return ENODATA;
		sbuf_printf(&s, "%" PRIu64, f.value);
		return sbuf_finish(&s, valp, lenp);
	}
	if (ino != FLYFS_ROOT_INO)
		return ENODATA;
	if ((n = after(name, P_VFS)) != NULL) {
		if (strcmp(n, DROP_CACHES) == 0) {
			sbuf_printf(&s, "0");	/* as /proc/sys/vm/drop_caches */
		} else {
			if ((bs = bufstat_lookup(n)) == NULL)
				return ENODATA;
			sbuf_printf(&s, "%ld", bufstat_read(bs));
		}
		return sbuf_finish(&s, valp, lenp);
	}
	if ((n = after(name, P_FS)) != NULL) {
		f.want = n;
		fs_figures(ff, figure_cb, &f);
		if (!f.found)
			return ENODATA;
		sbuf_printf(&s, "%" PRIu64, f.value);
		return sbuf_finish(&s, valp, lenp);
	}
	return ENODATA;
}

/* ---- writes ----------------------------------------------------------------- */

/*
 * A decimal integer with an optional binary suffix (K, M, G, T), optional
 * surrounding white space (setfattr -v "64M", echo's newline).  EINVAL if
 * anything else is there or it overflows a long.
 */
static int
parse_value(const char *value, size_t size, long *out)
{
	char buf[64], *end;
	long v, mul = 1;
	size_t i;

	if (size == 0 || size >= sizeof(buf))
		return EINVAL;
	memcpy(buf, value, size);
	buf[size] = '\0';
	if (strlen(buf) != size)
		return EINVAL;			/* embedded NUL */
	for (i = size; i > 0 && isspace((unsigned char)buf[i - 1]); i--)
		buf[i - 1] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (end == buf || errno)
		return EINVAL;
	switch (*end) {
	case 'k': case 'K': mul = 1L << 10; end++; break;
	case 'm': case 'M': mul = 1L << 20; end++; break;
	case 'g': case 'G': mul = 1L << 30; end++; break;
	case 't': case 'T': mul = 1L << 40; end++; break;
	default: break;
	}
	if (*end != '\0')
		return EINVAL;
	if (__builtin_mul_overflow(v, mul, out))
		return EINVAL;
	return 0;
}

int
fstats_set(struct flyfs_fuse *ff, uint64_t ino, const char *name,
    const char *value, size_t size, uid_t uid)
{
	const struct bufstat *bs = NULL;
	const char *n;
	char *cur = NULL;
	size_t len;
	uint64_t cur_v;
	long v;
	int err;

	if (strcmp(name, N_COMP) == 0) {
		/* On the root: the mount-wide setting, a tunable's rights. */
		if (ino == FLYFS_ROOT_INO && uid != 0 && uid != ff->mount_uid)
			return EPERM;
		return flyfs_compression_set(ff->fs, ino, value, size,
		    (uint32_t)uid);
	}
	n = ino == FLYFS_ROOT_INO ? after(name, P_FS) : NULL;
	if (n != NULL && ff->fs->s_compress != NULL &&
	    fs_compress_tunable_get(ff->fs->s_compress, n, &cur_v) == 0) {
		/* A compression tunable (compress.c's registry). */
		if (uid != 0 && uid != ff->mount_uid)
			return EPERM;
		if ((err = parse_value(value, size, &v)) != 0)
			return err;
		if (v < 0)
			return EINVAL;
		return fs_compress_tunable_set(ff->fs->s_compress, n,
		    (uint64_t)v);
	}
	n = ino == FLYFS_ROOT_INO ? after(name, P_VFS) : NULL;
	if (n == NULL || (strcmp(n, DROP_CACHES) != 0 &&
	    (bs = bufstat_lookup(n)) == NULL)) {
		/* Not a tunable: ENODATA if there is no such name at all. */
		err = fstats_get(ff, ino, name, &cur, &len);
		free(cur);
		return err ? err : EPERM;
	}
	if (uid != 0 && uid != ff->mount_uid)
		return EPERM;
	if (bs != NULL && (bs->bs_flags & BUFSTAT_RW) == 0)
		return EPERM;
	if ((err = parse_value(value, size, &v)) != 0)
		return err;
	if (bs != NULL) {
		err = bufstat_set(n, v);
		return err == ENOENT ? ENODATA : err;
	}
	/* drop_caches */
	if (v != 1 && v != 3)
		return EINVAL;
	if (v == 3 && (err = flyfs_sync(ff->fs)) != 0)
		return err;
	(void)buf_drop_clean();
	return 0;
}

