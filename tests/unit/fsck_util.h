/*
 * fsck_util.h - the check the filesystem unit tests end with: fsck -n -f
 * of the unmounted image must find nothing.  Its findings go to stderr.
 * FLYFS_TEST_FSCK=0 skips it (for timing runs of the heavy tests).
 */
#ifndef FLYFS_TESTS_FSCK_UTIL_H
#define FLYFS_TESTS_FSCK_UTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/blockdev.h"
#include "fs/fsck_core.h"

static inline void
util_fsck_line(void *arg, enum flyfs_fsck_msgkind kind, const char *line)
{
	(void)arg;
	if (kind != FLYFS_FSCK_MSG_INFO)
		fprintf(stderr, "fsck: %s\n", line);
}

static inline void
util_fsck_clean(struct blockdev *bd)
{
	struct flyfs_fsck_opts o = { .mode = FLYFS_FSCK_NO, .force = true,
	    .msg = util_fsck_line };
	struct flyfs_fsck_result r;
	const char *env = getenv("FLYFS_TEST_FSCK");

	if (env != NULL && strcmp(env, "0") == 0)
		return;
	ck_assert_int_eq(flyfs_fsck(bd, &o, &r), FLYFS_FSCK_OK);
}

#endif /* FLYFS_TESTS_FSCK_UTIL_H */
