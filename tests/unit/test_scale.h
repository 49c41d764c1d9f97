/*
 * test_scale.h - loop counts for the heavy unit tests.
 *
 * ThreadSanitizer runs this code about ten times slower, and CI has two
 * cores.  The behaviour a big test checks (a directory that splits many
 * times, an inode file that grows through many extents, hundreds of crash
 * points) shows at a tenth of the count, and the race detector gains
 * nothing from repeating the same paths ten times more.  So under TSan the
 * counts shrink; the plain and ASan builds run them in full.
 */
#ifndef FLYFS_TEST_SCALE_H
#define FLYFS_TEST_SCALE_H

#if defined(__SANITIZE_THREAD__)
#define TEST_SCALE(n)	((n) / 10)
#else
#define TEST_SCALE(n)	(n)
#endif

#endif /* FLYFS_TEST_SCALE_H */
