/*
 * mkfs.c - mkfs.flyfs, make a flyfs filesystem in an image file.
 *
 * This file owns the command line: option parsing, creating or sizing the
 * image file, refusing to overwrite a recognizable filesystem without -f,
 * and the summary.  The layout itself is fs/mkfs_core.c; the image is
 * written through blockdev/ (O_DIRECT), as the filesystem will read it.
 *
 * Exit status: 0 success, 1 usage or operational error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "fs/format.h"
#include "fs/mkfs_core.h"

#ifndef FLYFS_VERSION
#define FLYFS_VERSION "unknown"
#endif

static const char *progname = "mkfs.flyfs";

struct options {
	struct flyfs_mkfs_params p;
	const char *image;
	uint64_t size;			/* 0: not given */
	bool force, dry_run, quiet;
};

static void __attribute__((format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", progname);
	exit(1);
}

static void
usage(void)
{
	printf(
"Usage: %s [options] IMAGE [SIZE]\n"
"Make a flyfs filesystem in the image file IMAGE.  If IMAGE does not exist\n"
"it is created with SIZE bytes; if it exists and SIZE is not given, the\n"
"whole file is used.  SIZE takes K, M, G or T (powers of 1024); a bare\n"
"number is in KiB, as with mke2fs.\n"
"\n"
"Options:\n"
"  -b SIZE           data block size: 4K to 128K, a power of two\n"
"                    (default 16K); a bare number is in bytes\n"
"  -C ALGO[:LEVEL]   default compression for file data: none or\n"
"                    zstd[:1..19] (default none; zstd alone means level %d)\n"
"  -f                overwrite an existing filesystem or other signature\n"
"  -J size=SIZE      journal size, 4M to 4G (default: 1/64 of the image,\n"
"                    4M to 1G); a bare number is in MiB, as with mke2fs\n"
"  -L LABEL          volume label, at most %d bytes\n"
"  -n                dry run: print what would be made, write nothing\n"
"  -q                quiet: print errors only\n"
"  -U UUID           filesystem UUID: xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx,\n"
"                    'random' (default) or 'time' (time-ordered, v7)\n"
"  -V, --version     print the version and exit\n"
"  -h, --help        print this help and exit\n"
"\n"
"Exit status: 0 on success, 1 on a usage or operational error.\n",
	    progname, FLYFS_ZSTD_LEVEL_DEFAULT, FLYFS_LABEL_MAX);
}

/*
 * Parse "<digits>[K|M|G|T][i][B]" into bytes; UNIT scales a bare number.
 * Returns false on junk or overflow.
 */
static bool
parse_size(const char *s, uint64_t unit, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = unit;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	switch (*end) {
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	case 't': case 'T': mul = 1ULL << 40; end++; break;
	case 'b': case 'B': case '\0': break;
	default: return false;
	}
	if (mul != unit && *end == 'i')
		end++;
	if (*end == 'B' || (*end == 'b' && end[1] == '\0'))
		end++;
	if (*end != '\0')
		return false;
	if (v != 0 && mul > UINT64_MAX / v)
		return false;
	*out = v * mul;
	return true;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 8-4-4-4-12 hex digits; returns false on anything else. */
static bool
parse_uuid(const char *s, uint8_t uuid[16])
{
	int n = 0;

	for (int i = 0; s[i] != '\0'; ) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i++] != '-')
				return false;
			continue;
		}
		if (n == 16 || hexval(s[i]) < 0 || hexval(s[i + 1]) < 0)
			return false;
		uuid[n++] = (uint8_t)(hexval(s[i]) << 4 | hexval(s[i + 1]));
		i += 2;
	}
	return n == 16 && strlen(s) == 36;
}

static void
format_uuid(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
	    u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* RFC 9562 version 7: 48-bit Unix milliseconds, then random bits. */
static void
make_uuid_v7(uint8_t u[16])
{
	struct timespec ts;
	uint64_t ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (getrandom(u, 16, 0) != 16)
		die("cannot read random bytes for the UUID: %s",
		    strerror(errno));
	for (int i = 0; i < 6; i++)
		u[i] = (uint8_t)(ms >> (40 - 8 * i));
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x70);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
}

static void
parse_compression(const char *arg, struct flyfs_mkfs_params *p)
{
	const char *colon = strchr(arg, ':');
	size_t n = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
	char *end;
	long level;

	if (n == 4 && strncmp(arg, "none", 4) == 0 && colon == NULL) {
		p->comp = FLYFS_COMP_NONE;
		p->comp_level = 0;
		return;
	}
	if (n != 4 || strncmp(arg, "zstd", 4) != 0)
		usage_error("invalid compression '%s': use none or "
		    "zstd[:LEVEL]", arg);
	p->comp = FLYFS_COMP_ZSTD;
	p->comp_level = FLYFS_ZSTD_LEVEL_DEFAULT;
	if (colon == NULL)
		return;
	errno = 0;
	level = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 ||
	    level < FLYFS_ZSTD_LEVEL_MIN || level > FLYFS_ZSTD_LEVEL_MAX)
		usage_error("invalid zstd level '%s': must be %d..%d",
		    colon + 1, FLYFS_ZSTD_LEVEL_MIN, FLYFS_ZSTD_LEVEL_MAX);
	p->comp_level = (uint8_t)level;
}

static void
parse_journal(const char *arg, struct flyfs_mkfs_params *p)
{
	uint64_t bytes;

	if (strncmp(arg, "size=", 5) != 0)
		usage_error("invalid journal option '%s': use -J size=SIZE",
		    arg);
	if (!parse_size(arg + 5, 1ULL << 20, &bytes))
		usage_error("invalid journal size '%s'", arg + 5);
	if (bytes % FLYFS_BLOCK_SIZE != 0 ||
	    bytes < FLYFS_JOURNAL_MIN_BLOCKS * FLYFS_BLOCK_SIZE ||
	    bytes > FLYFS_JOURNAL_MAX_BLOCKS * FLYFS_BLOCK_SIZE)
		usage_error("journal size '%s' is out of range: 4M to 4G, "
		    "a multiple of 4K", arg + 5);
	p->journal_bytes = bytes;
}

static void
parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	flyfs_mkfs_params_init(&o->p);
	o->p.root_uid = getuid();
	o->p.root_gid = getgid();
	while ((c = getopt_long(argc, argv, "b:C:fJ:L:nqU:Vh", longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'b':
			if (!parse_size(optarg, 1, &v) ||
			    v < FLYFS_DATA_BLOCK_MIN ||
			    v > FLYFS_DATA_BLOCK_MAX || (v & (v - 1)) != 0)
				usage_error("invalid data block size '%s': "
				    "must be a power of two from 4K to 128K",
				    optarg);
			o->p.data_block_size = (uint32_t)v;
			break;
		case 'C':
			parse_compression(optarg, &o->p);
			break;
		case 'f':
			o->force = true;
			break;
		case 'J':
			parse_journal(optarg, &o->p);
			break;
		case 'L':
			if (strlen(optarg) > FLYFS_LABEL_MAX)
				usage_error("label '%s' is too long: at most "
				    "%d bytes", optarg, FLYFS_LABEL_MAX);
			memset(o->p.label, 0, sizeof(o->p.label));
			memcpy(o->p.label, optarg, strlen(optarg));
			break;
		case 'n':
			o->dry_run = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'U':
			if (strcmp(optarg, "random") == 0) {
				o->p.have_uuid = false;
			} else if (strcmp(optarg, "time") == 0) {
				make_uuid_v7(o->p.uuid);
				o->p.have_uuid = true;
			} else if (parse_uuid(optarg, o->p.uuid)) {
				o->p.have_uuid = true;
			} else {
				usage_error("invalid UUID '%s'", optarg);
			}
			break;
		case 'V':
			printf("%s %s (flyfs format %d.%d)\n", progname,
			    FLYFS_VERSION, FLYFS_VERSION_MAJOR,
			    FLYFS_VERSION_MINOR);
			exit(0);
		case 'h':
			usage();
			exit(0);
		default:
			fprintf(stderr, "Try '%s --help' for more "
			    "information.\n", progname);
			exit(1);
		}
	}
	if (optind >= argc)
		usage_error("no IMAGE given");
	o->image = argv[optind++];
	if (optind < argc) {
		if (!parse_size(argv[optind], 1024, &o->size) || o->size == 0)
			usage_error("invalid SIZE '%s'", argv[optind]);
		optind++;
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
}

/* ---- What is already in the image? ------------------------------------ */

#define PROBE_BYTES	(72 * 1024)

static bool
probe_at(const uint8_t *b, size_t have, size_t off, const void *sig, size_t n)
{
	return off + n <= have && memcmp(b + off, sig, n) == 0;
}

/*
 * Describe the filesystem or signature found in the first bytes B (HAVE of
 * them) or, for flyfs, in the last block TAIL; write nothing to DESC when
 * there is none.
 */
static bool
probe_signature(const uint8_t *b, size_t have, const uint8_t *tail,
    char *desc, size_t len)
{
	struct flyfs_sb_info sbi;
	char u[37];

	if (have >= 8 && le64_load(b) == FLYFS_SUPER_MAGIC) {
		if (flyfs_sb_decode(b, &sbi, NULL, 0) == 0) {
			format_uuid(sbi.uuid, u);
			snprintf(desc, len, "a flyfs filesystem (label "
			    "\"%s\", UUID %s)", sbi.label, u);
		} else {
			snprintf(desc, len, "a flyfs filesystem (with a "
			    "damaged superblock)");
		}
		return true;
	}
	if (tail != NULL && le64_load(tail) == FLYFS_SUPER_MAGIC) {
		snprintf(desc, len, "a flyfs filesystem (backup superblock "
		    "only)");
		return true;
	}
	if (have >= 1082 && le16_load(b + 1080) == 0xef53) {
		uint32_t compat = le32_load(b + 1024 + 0x5c);
		uint32_t incompat = le32_load(b + 1024 + 0x60);
		const char *kind = "ext2";
		char label[17];

		if (incompat & (0x40 | 0x80 | 0x200))	/* extents 64bit flex */
			kind = "ext4";
		else if (compat & 0x4)			/* has_journal */
			kind = "ext3";
		memcpy(label, b + 1024 + 0x78, 16);
		label[16] = '\0';
		snprintf(desc, len, "an %s filesystem (label \"%s\")", kind,
		    label);
		return true;
	}
	if (probe_at(b, have, 0, "XFSB", 4))
		return snprintf(desc, len, "an XFS filesystem"), true;
	if (probe_at(b, have, 65536 + 64, "_BHRfS_M", 8))
		return snprintf(desc, len, "a btrfs filesystem"), true;
	if (probe_at(b, have, 0, "LUKS\xba\xbe", 6))
		return snprintf(desc, len, "a LUKS encrypted volume"), true;
	if (probe_at(b, have, 0, "hsqs", 4))
		return snprintf(desc, len, "a squashfs filesystem"), true;
	if (probe_at(b, have, 4086, "SWAPSPACE2", 10) ||
	    probe_at(b, have, 4086, "SWAP-SPACE", 10))
		return snprintf(desc, len, "a swap area"), true;
	if (probe_at(b, have, 32769, "CD001", 5))
		return snprintf(desc, len, "an ISO 9660 filesystem"), true;
	if (probe_at(b, have, 512, "EFI PART", 8))
		return snprintf(desc, len, "a GPT partition table"), true;
	if (probe_at(b, have, 510, "\x55\xaa", 2)) {
		if (probe_at(b, have, 54, "FAT", 3) ||
		    probe_at(b, have, 82, "FAT32", 5))
			snprintf(desc, len, "a FAT filesystem");
		else
			snprintf(desc, len, "a DOS/MBR boot sector or "
			    "partition table");
		return true;
	}
	return false;
}

static void
refuse_if_occupied(const struct options *o, int fd, uint64_t fsize)
{
	static uint8_t head[PROBE_BYTES], tail[FLYFS_BLOCK_SIZE];
	ssize_t n, t = 0;
	char desc[256];

	n = pread(fd, head, sizeof(head), 0);
	if (n < 0)
		die("cannot read %s: %s", o->image, strerror(errno));
	if (fsize >= 2 * FLYFS_BLOCK_SIZE) {
		t = pread(fd, tail, sizeof(tail),
		    (off_t)((fsize & ~(uint64_t)(FLYFS_BLOCK_SIZE - 1)) -
		    FLYFS_BLOCK_SIZE));
		if (t < 0)
			die("cannot read %s: %s", o->image, strerror(errno));
	}
	if (!probe_signature(head, (size_t)n, t == FLYFS_BLOCK_SIZE ? tail :
	    NULL, desc, sizeof(desc)))
		return;
	if (o->force) {
		if (!o->quiet && !o->dry_run)
			printf("%s contains %s; overwriting it (-f)\n",
			    o->image, desc);
		return;
	}
	die("%s contains %s; use -f to overwrite it", o->image, desc);
}

/* ---- Main ------------------------------------------------------------- */

static void
print_summary(const struct options *o, const struct flyfs_sb_info *s)
{
	char u[37];

	format_uuid(s->uuid, u);
	printf("Creating flyfs filesystem with %" PRIu64 " 4k blocks (%"
	    PRIu64 " MiB)\n", s->block_count, s->block_count >> 8);
	printf("Filesystem UUID:   %s\n", u);
	printf("Filesystem label:  %s\n", s->label);
	printf("Block size:        %u (metadata and allocation unit)\n",
	    s->block_size);
	printf("Data block size:   %u (file data buffer, compression unit)\n",
	    s->data_block_size);
	printf("Allocation groups: %" PRIu32 " of up to %" PRIu32
	    " blocks\n", s->group_count, s->group_blocks);
	printf("Inodes:            %" PRIu64 " preallocated, %" PRIu64
	    " free; more are allocated on demand\n", s->inode_count,
	    s->free_inodes);
	printf("Journal:           %" PRIu64 " blocks (%" PRIu64 " MiB)\n",
	    s->journal_blocks, s->journal_blocks >> 8);
	if (s->default_comp == FLYFS_COMP_ZSTD)
		printf("Compression:       zstd level %u\n",
		    s->default_comp_level);
	else
		printf("Compression:       none\n");
	printf("Free blocks:       %" PRIu64 "\n", s->free_blocks);
	if (o->dry_run)
		printf("Dry run (-n): nothing was written.\n");
}

/* SOURCE_DATE_EPOCH makes timestamps reproducible (docs, golden images). */
static void
apply_source_date(struct flyfs_mkfs_params *p)
{
	const char *s = getenv("SOURCE_DATE_EPOCH");
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < 0)
		die("invalid SOURCE_DATE_EPOCH '%s'", s);
	p->time_sec = v;
	p->time_nsec = 0;
	p->have_time = true;
}

int
main(int argc, char **argv)
{
	struct options o = { 0 };
	struct blockdev_opts bo = { 0 };
	struct flyfs_sb_info sbi;
	struct blockdev *bd = NULL;
	struct stat st;
	uint64_t fsize, fs_bytes;
	bool created = false;
	char err[512];
	int fd, error;

	parse_args(argc, argv, &o);
	apply_source_date(&o.p);

	fd = open(o.image, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (o.size == 0)
			die("%s does not exist; give a SIZE to create it "
			    "(e.g. '%s %s 1G')", o.image, progname, o.image);
		fs_bytes = o.size & ~(uint64_t)(FLYFS_BLOCK_SIZE - 1);
		if (o.dry_run) {
			error = flyfs_mkfs_plan(fs_bytes, &o.p, &sbi, err,
			    sizeof(err));
			if (error != 0)
				die("%s: %s", o.image, err);
			if (!o.quiet)
				print_summary(&o, &sbi);
			return 0;
		}
		fd = open(o.image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			die("cannot create %s: %s", o.image, strerror(errno));
		created = true;
	} else if (fd < 0) {
		die("cannot open %s: %s", o.image, strerror(errno));
	}
	if (fstat(fd, &st) != 0)
		die("cannot stat %s: %s", o.image, strerror(errno));
	if (S_ISREG(st.st_mode)) {
		fsize = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0)
			die("cannot size %s: %s", o.image, strerror(errno));
		fsize = (uint64_t)end;
	} else {
		die("%s is not a regular file or a block device", o.image);
	}
	if (!created)
		refuse_if_occupied(&o, fd, fsize);

	fs_bytes = o.size != 0 ? o.size : fsize;
	fs_bytes &= ~(uint64_t)(FLYFS_BLOCK_SIZE - 1);
	if (S_ISREG(st.st_mode) && fsize % FLYFS_BLOCK_SIZE != 0 &&
	    fs_bytes <= fsize)
		die("the size of %s (%" PRIu64 " bytes) is not a multiple of "
		    "4096, which O_DIRECT needs; resize it with truncate -s",
		    o.image, fsize);
	if (o.dry_run) {
		o.p.size_bytes = fs_bytes;
		error = flyfs_mkfs_plan(fs_bytes > fsize ? fs_bytes : fsize,
		    &o.p, &sbi, err, sizeof(err));
		if (error != 0)
			die("%s: %s", o.image, err);
		if (!o.quiet)
			print_summary(&o, &sbi);
		return 0;
	}
	if (fs_bytes > fsize) {
		if (!S_ISREG(st.st_mode))
			die("%s is only %" PRIu64 " bytes; it cannot hold %"
			    PRIu64, o.image, fsize, fs_bytes);
		if (ftruncate(fd, (off_t)fs_bytes) != 0) {
			error = errno;
			if (created)
				unlink(o.image);
			die("cannot size %s to %" PRIu64 " bytes: %s", o.image,
			    fs_bytes, strerror(error));
		}
		fsize = fs_bytes;
	}
	close(fd);
	o.p.size_bytes = fs_bytes;

	error = blockdev_open(o.image, &bo, &bd, err, sizeof(err));
	if (error != 0) {
		if (created)
			unlink(o.image);
		die("%s", err);
	}
	error = flyfs_mkfs(bd, &o.p, &sbi, err, sizeof(err));
	blockdev_close(bd);
	if (error != 0) {
		if (created)
			unlink(o.image);
		die("%s: %s", o.image, err);
	}
	if (!o.quiet) {
		print_summary(&o, &sbi);
		printf("Writing metadata and superblocks: done\n");
	}
	return 0;
}
