/*
 * fuse_ops.h - what the FUSE daemon's three files share (private to the
 * daemon; the filesystem core never includes it).
 *
 * fuse_ops.c owns the low-level operations vector and the per-mount
 * settings that shape its replies (struct flyfs_fuse); fuse_stats.c owns
 * the virtual "flyfs.*" extended attributes; fuse_wire.c the one INIT flag
 * libfuse 3.14 cannot negotiate; flyfs_main.c owns the command line, the
 * session and the mount's life.
 */
#ifndef FLYFS_FUSE_OPS_H
#define FLYFS_FUSE_OPS_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct flyfs;

/*
 * How the kernel's page cache sits in front of the buffer cache (-o cache=).
 * docs/design.md ("FUSE cache mode") says why STRICT is the default.
 */
enum flyfs_cache_mode {
	FLYFS_CACHE_STRICT,	/* page cache, write-through, dropped at open */
	FLYFS_CACHE_KEEP,	/* same, kept across opens (keep_cache) */
	FLYFS_CACHE_WRITEBACK,	/* kernel writeback cache: writes coalesced */
	FLYFS_CACHE_DIRECT,	/* direct_io: no page cache at all */
};

/*
 * One mount, the session's userdata.  Fields marked (c) are set before the
 * loop and constant while it runs; (a) is only read and written atomically.
 */
struct flyfs_fuse {
	struct flyfs	*fs;		/* (c) */
	struct fuse_session *se;	/* (c) once mounted (flyfs_fuse_attach) */
	enum flyfs_cache_mode cache_mode; /* (c) */
	uid_t		mount_uid;	/* (c) may set tunables, besides root */
	bool		readonly;	/* (c) */
	bool		debug;		/* (c) */
	double		attr_timeout;	/* (c) seconds the kernel trusts attrs */
	double		entry_timeout;	/* (c) ... and names */
	unsigned	reads_out;	/* (a) reads the I/O completion answers,
					 * not yet answered */
};

/* fuse_ops.c */
const struct fuse_lowlevel_ops *flyfs_fuse_ops(void);
/* Once SE is mounted: let the core's own attribute changes reach the
 * kernel (flyfs_set_attr_cb). */
void	flyfs_fuse_attach(struct flyfs_fuse *ff, struct fuse_session *se);
/* Wait until every read answered from I/O completion has been answered:
 * after the loop ends, before the session goes. */
void	flyfs_fuse_drain(struct flyfs_fuse *ff);
const char *flyfs_cache_mode_name(enum flyfs_cache_mode mode);
int	flyfs_cache_mode_parse(const char *s, enum flyfs_cache_mode *out);

/* fuse_wire.c: after fuse_session_mount, before the loop.  Adds
 * FUSE_HANDLE_KILLPRIV_V2 to the INIT reply where libfuse cannot.  0 or
 * an errno. */
int	flyfs_fuse_wire(struct fuse_session *se);

/* fuse_stats.c: the virtual xattrs ("flyfs." names). */
#define FLYFS_XATTR_PREFIX	"flyfs."
bool	fstats_is_virtual(const char *name);
/*
 * Render virtual attribute NAME of INO into a malloc'ed *VALP of *LENP
 * bytes (no NUL counted).  0, ENODATA (no such name here) or ENOMEM.
 */
int	fstats_get(struct flyfs_fuse *ff, uint64_t ino, const char *name,
	    char **valp, size_t *lenp);
/* Write VALUE to NAME on INO for user UID.  0, ENODATA, EPERM, EINVAL. */
int	fstats_set(struct flyfs_fuse *ff, uint64_t ino, const char *name,
	    const char *value, size_t size, uid_t uid);

#endif /* FLYFS_FUSE_OPS_H */
