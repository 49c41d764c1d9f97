/*
 * flyfs-stat - a live, vmstat-like view of a mounted flyfs's buffer cache.
 *
 *   flyfs-stat [-m] [-c COUNT] MOUNTPOINT [INTERVAL]
 *
 * This program owns nothing but presentation: every figure comes from the
 * flyfs.stats virtual xattr of the mount root ("name value" per line; the
 * names are docs/xattrs.md's).  Gauges (bufspace, dirty, running) are shown
 * as they are; counters as a rate per second over the interval -- except
 * on the first line, which, as vmstat's, shows the totals since mount.
 * -m prints every figure of every sample as one "name=value ..." line.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MAXSTATS	512
#define MiB		(1024.0 * 1024.0)

struct sample {
	double		t;			/* CLOCK_MONOTONIC seconds */
	int		n;
	char		*name[MAXSTATS];
	uint64_t	val[MAXSTATS];
	char		*text;			/* owns the names */
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read flyfs.stats of MNT into S.  0 or an errno. */
static int
sample_read(const char *mnt, struct sample *s)
{
	ssize_t size, len;
	char *p, *line, *sp, *end;

	for (;;) {
		if ((size = getxattr(mnt, "flyfs.stats", NULL, 0)) < 0)
			return errno;
		if ((s->text = malloc((size_t)size + 1)) == NULL)
			return ENOMEM;
		len = getxattr(mnt, "flyfs.stats", s->text, (size_t)size);
		if (len >= 0)
			break;
		free(s->text);
		if (errno != ERANGE)		/* ERANGE: it grew; again */
			return errno;
	}
	s->text[len] = '\0';
	s->t = now();
	s->n = 0;
	for (line = strtok_r(s->text, "\n", &sp); line && s->n < MAXSTATS;
	    line = strtok_r(NULL, "\n", &sp)) {
		if ((p = strchr(line, ' ')) == NULL)
			continue;
		*p++ = '\0';
		s->name[s->n] = line;
		s->val[s->n] = strtoull(p, &end, 10);
		s->n++;
	}
	return 0;
}

static void
sample_free(struct sample *s)
{
	free(s->text);
	s->text = NULL;
	s->n = 0;
}

static bool
get(const struct sample *s, const char *name, uint64_t *v)
{
	int i;

	for (i = 0; i < s->n; i++) {
		if (strcmp(s->name[i], name) == 0) {
			*v = s->val[i];
			return true;
		}
	}
	return false;
}

static double
gauge(const struct sample *s, const char *name)
{
	uint64_t v = 0;

	get(s, name, &v);
	return (double)v;
}

/* Counter NAME per second since PREV, or its total without PREV. */
static double
rate(const struct sample *s, const struct sample *prev, const char *name)
{
	uint64_t a = 0, b = 0;
	double dt;

	get(s, name, &a);
	if (prev == NULL)
		return (double)a;
	get(prev, name, &b);
	dt = s->t - prev->t;
	return dt > 0 && a >= b ? (double)(a - b) / dt : 0.0;
}

static void
header(void)
{
	printf("%s\n%s\n",
	    "------- cache MiB -------- -daemons/s- ------getblk/s------ "
	    "-device MiB/s- -sleeps/s- --zstd--",
	    "   buf  dirty dirtyhw  run  flush flshw    hits   miss hit% "
	    "   read  write  bdw  runw  MiB sav");
}

static void
print_human(const struct sample *s, const struct sample *prev)
{
	double hits = rate(s, prev, "vfs.cachehits");
	double miss = rate(s, prev, "vfs.cachemisses");
	double saved;
	uint64_t v;

	if (get(s, "fs.bytes_saved", &v))
		saved = (double)v / MiB;
	else
		saved = -1;
	printf("%6.0f %6.1f %7.1f %4.1f %6.0f %5.0f %7.0f %6.0f %4.0f "
	    "%7.1f %6.1f %4.0f %5.0f ",
	    gauge(s, "vfs.bufspace") / MiB,
	    gauge(s, "vfs.dirtybufspace") / MiB,
	    gauge(s, "vfs.dirtybufspacehw") / MiB,
	    gauge(s, "vfs.runningbufspace") / MiB,
	    rate(s, prev, "vfs.flushes"), rate(s, prev, "vfs.flushes_hw"),
	    hits, miss, hits + miss > 0 ? 100.0 * hits / (hits + miss) : 0.0,
	    rate(s, prev, "vfs.bytesread") / MiB,
	    rate(s, prev, "vfs.byteswritten") / MiB,
	    rate(s, prev, "vfs.bdwaits"), rate(s, prev, "vfs.runningwaits"));
	if (saved >= 0)
		printf("%8.1f\n", saved);
	else
		printf("%8s\n", "-");
}

static void
print_machine(const struct sample *s)
{
	struct timespec ts;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	printf("time=%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
	for (i = 0; i < s->n; i++)
		printf(" %s=%" PRIu64, s->name[i], s->val[i]);
	putchar('\n');
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: flyfs-stat [-m] [-c COUNT] MOUNTPOINT [INTERVAL]\n"
	    "  -m        machine-readable: one line of name=value per sample\n"
	    "  -c COUNT  stop after COUNT samples (default: 1 without\n"
	    "            INTERVAL, else until interrupted)\n"
	    "  INTERVAL  seconds between samples (may be fractional)\n");
}

int
main(int argc, char **argv)
{
	struct sample a = { 0 }, b = { 0 }, *cur = &a, *prev = NULL, *tmp;
	double interval = 0;
	long count = -1, i;
	bool machine = false;
	char *end;
	int c, err;

	while ((c = getopt(argc, argv, "mc:h")) != -1) {
		switch (c) {
		case 'm':
			machine = true;
			break;
		case 'c':
			count = strtol(optarg, &end, 10);
			if (*end || count <= 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc || argc - optind > 2) {
		usage(stderr);
		return 2;
	}
	if (argc - optind == 2) {
		interval = strtod(argv[optind + 1], &end);
		if (*end || interval <= 0) {
			usage(stderr);
			return 2;
		}
	}
	if (count < 0)
		count = interval > 0 ? -1 : 1;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (i = 0; !stop && (count < 0 || i < count); i++) {
		if ((err = sample_read(argv[optind], cur)) != 0) {
			fprintf(stderr, "flyfs-stat: %s: %s%s\n", argv[optind],
			    strerror(err), err == ENODATA || err == ENOTSUP ?
			    " (not a flyfs mount?)" : "");
			if (prev)
				sample_free(prev);
			return 1;
		}
		if (machine) {
			print_machine(cur);
		} else {
			if (i % 20 == 0)
				header();
			print_human(cur, prev);
		}
		if (prev)
			sample_free(prev);
		tmp = prev ? prev : &b;
		prev = cur;
		cur = tmp;
		if (count < 0 || i + 1 < count)
			usleep((useconds_t)(interval * 1e6));
	}
	if (prev)
		sample_free(prev);
	return 0;
}
