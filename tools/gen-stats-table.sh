#!/bin/sh
# gen-stats-table.sh - print the buffer cache's registry of counters and
# tunables (cache/bufstats.c) as a markdown table: name, rw/ro, kind,
# range, meaning.  docs/cache.md embeds its output; regenerate it after
# changing the registry:
#
#     tools/gen-stats-table.sh > /tmp/table.md
#
# It compiles a tiny C program that walks the registry (bufstat_at) and
# links it with the sources of cache/ and blockdev/ (the registry points
# at variables all over the cache), so it needs a C compiler and libaio,
# not a configured build directory.  CC defaults to cc.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

cat > "$tmp/gen.c" <<'EOC'
#include <limits.h>
#include <stdio.h>

#include "cache/bufstats.h"

static void
range(const struct bufstat *bs, char *out, size_t len)
{
	if ((bs->bs_flags & BUFSTAT_RW) == 0)
		snprintf(out, len, "-");
	else if (bs->bs_max == LONG_MAX)
		snprintf(out, len, "%ld ..", bs->bs_min);
	else
		snprintf(out, len, "%ld .. %ld", bs->bs_min, bs->bs_max);
}

int
main(void)
{
	const struct bufstat *bs;
	char r[64];
	int i;

	printf("| name | rw/ro | kind | range | meaning |\n");
	printf("|---|---|---|---|---|\n");
	for (i = 0; i < bufstat_count(); i++) {
		bs = bufstat_at(i);
		range(bs, r, sizeof(r));
		printf("| `%s` | %s | %s | %s | %s |\n", bs->bs_name,
		    (bs->bs_flags & BUFSTAT_RW) ? "rw" : "ro",
		    (bs->bs_flags & BUFSTAT_COUNTER) ? "counter" :
		    (bs->bs_flags & BUFSTAT_RW) ? "tunable" : "state",
		    r, bs->bs_descr);
	}
	return 0;
}
EOC

${CC:-cc} -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I"$top" \
    -o "$tmp/gen" "$tmp/gen.c" "$top"/cache/*.c "$top"/blockdev/*.c \
    -laio -lpthread
"$tmp/gen"
