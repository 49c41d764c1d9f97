/*
 * image_util.h - an image file for the unit tests that need the libaio
 * backend instead of the RAM device.  It lives on /var/tmp: O_DIRECT
 * needs a disk filesystem (tmpfs refuses it).  The caller unlinks it.
 */
#ifndef FLYFS_TESTS_IMAGE_UTIL_H
#define FLYFS_TESTS_IMAGE_UTIL_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockdev/blockdev.h"

/* mkstemp()'s template: the Xs are where it puts the unique name. */
#define UTIL_IMAGE_TEMPLATE	"/var/tmp/flyfs-check.XXXXXX"
#define UTIL_IMAGE_PATHLEN	sizeof(UTIL_IMAGE_TEMPLATE)

/* Make a SIZE-byte image file, named into PATH, and open it. */
static inline struct blockdev *
util_image_open(char path[UTIL_IMAGE_PATHLEN], uint64_t size)
{
	struct blockdev *bd;
	char err[256];
	int fd;

	memcpy(path, UTIL_IMAGE_TEMPLATE, UTIL_IMAGE_PATHLEN);
	ck_assert_int_ge(fd = mkstemp(path), 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	ck_assert_msg(blockdev_open(path, NULL, &bd, err, sizeof(err)) == 0,
	    "%s", err);
	return bd;
}

#endif /* FLYFS_TESTS_IMAGE_UTIL_H */
