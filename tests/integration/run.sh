#!/bin/bash
# run.sh - the flyfs integration tests: mount real images through FUSE as
# root and run real programs on them.
#
#   tests/integration/run.sh [AREA...]      e.g. run.sh mount xattr
#
# Each t_<area>.sh prints one "PASS: area: what" or "FAIL: area: what" line
# per check ("SKIP:" lines are not counted).  A script that exits non-zero
# counts as one more failure.  The last line is the summary
# "integration: N passed, N failed"; the exit status is non-zero if
# anything failed or nothing passed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
LOG=$(mktemp /tmp/flyfs-it-log.XXXXXX)
trap 'rm -f "$LOG"' EXIT

if [ $# -gt 0 ]; then
	scripts=$(for a in "$@"; do echo "$HERE/t_$a.sh"; done)
else
	scripts=$(ls "$HERE"/t_*.sh)
fi

passed=0 failed=0
for t in $scripts; do
	name=$(basename "$t" .sh)
	echo "=== ${name#t_}"
	start=$(date +%s)
	timeout "${IT_TIMEOUT:-900}" bash "$t" 2>&1 | tee "$LOG"
	rc=${PIPESTATUS[0]}
	p=$(grep -c '^PASS: ' "$LOG")
	f=$(grep -c '^FAIL: ' "$LOG")
	if [ "$rc" != 0 ]; then
		echo "FAIL: ${name#t_}: script exited with status $rc"
		f=$((f + 1))
	fi
	passed=$((passed + p)); failed=$((failed + f))
	echo "--- ${name#t_}: $p passed, $f failed ($(( $(date +%s) - start ))s)"
done
echo "integration: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
