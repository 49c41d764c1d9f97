/*
 * fsck.c - fsck.flyfs, check and repair a flyfs image file.
 *
 * This file owns the command line: options, opening the image (read-only
 * for -n, always O_DIRECT through blockdev/, as the filesystem reads it),
 * and printing.  The checker itself is fs/fsck_core.c.
 *
 * Exit status, as e2fsck: 0 no errors, 1 errors corrected, 4 errors left
 * uncorrected, 8 operational error, 16 usage error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/blockdev.h"
#include "fs/fsck_core.h"
#include "fs/ondisk.h"

#ifndef FLYFS_VERSION
#define FLYFS_VERSION "unknown"
#endif

#define EXIT_USAGE	16

static const char *progname = "fsck.flyfs";

static void
usage(FILE *out)
{
	fprintf(out,
"Usage: %s [-n|-p|-y] [-f] [-v] IMAGE\n"
"Check the flyfs filesystem in the image file IMAGE and, with -p or -y,\n"
"repair it.  The image must not be mounted.\n"
"\n"
"  -n      check only (the default): open the image read-only and\n"
"          never write; a journal to replay is replayed in memory only\n"
"  -p, -a  preen: replay the journal, reclaim orphans and repair what is\n"
"          safe without asking; leave anything else (exit 4)\n"
"  -y      repair everything that can be repaired, dropping damaged data\n"
"          where there is no other way\n"
"  -f      check even if the filesystem is marked clean\n"
"  -v      verbose: name each pass\n"
"  -V      print the version and exit\n"
"  --help  print this help and exit\n"
"\n"
"Exit status: 0 no errors, 1 errors corrected, 4 errors left uncorrected,\n"
"8 operational error, 16 usage error.\n", progname);
}

static void
print_line(void *arg, enum flyfs_fsck_msgkind kind, const char *line)
{
	(void)arg;
	if (kind == FLYFS_FSCK_MSG_ERROR) {
		fflush(stdout);
		fprintf(stderr, "%s: %s\n", progname, line);
	} else {
		printf("%s\n", line);
	}
}

static void __attribute__((noreturn))
usage_error(const char *msg)
{
	fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n",
	    progname, msg, progname);
	exit(EXIT_USAGE);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct flyfs_fsck_opts o = { .msg = print_line };
	struct flyfs_fsck_result r;
	struct blockdev_opts bo = { 0 };
	struct blockdev *bd = NULL;
	char err[512];
	int c, nmodes = 0, error, code;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "napyfvV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o.mode = FLYFS_FSCK_NO;
			nmodes++;
			break;
		case 'a':
		case 'p':
			o.mode = FLYFS_FSCK_PREEN;
			nmodes++;
			break;
		case 'y':
			o.mode = FLYFS_FSCK_YES;
			nmodes++;
			break;
		case 'f':
			o.force = true;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'V':
			printf("%s %s (flyfs format %d.%d)\n", progname,
			    FLYFS_VERSION, FLYFS_VERSION_MAJOR,
			    FLYFS_VERSION_MINOR);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage_error("unknown option");
		}
	}
	if (nmodes > 1)
		usage_error("only one of -n, -p and -y may be given");
	if (optind + 1 != argc)
		usage_error(optind == argc ? "no IMAGE given" :
		    "too many arguments");
	bo.o_readonly = o.mode == FLYFS_FSCK_NO;
	error = blockdev_open(argv[optind], &bo, &bd, err, sizeof(err));
	if (error != 0) {
		fprintf(stderr, "%s: %s\n", progname, err);
		return 8;
	}
	code = flyfs_fsck(bd, &o, &r);
	blockdev_close(bd);
	return code;
}
