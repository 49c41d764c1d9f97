#!/usr/bin/env bash
# test.sh - install what is missing, build, and run the whole flyfs test
# suite: the plain build (INVARIANTS on), AddressSanitizer + UBSan over every
# test, and ThreadSanitizer over the unit tests.  Exits non-zero if any test
# fails.  Ends with one line "tests: N passed, N failed".
#
#   scripts/test.sh            everything
#   FLYFS_BUILDS="plain" scripts/test.sh    a subset of: plain asan tsan
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

BUILDS=${FLYFS_BUILDS:-"plain asan tsan"}
total_pass=0
total_fail=0
status=0

# setup DIR ARGS... : configure once, reconfigure when it already exists.
setup() {
	local dir=$1; shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

# count DIR : add the results of DIR's last "meson test" to the totals.
count() {
	local log=$1/meson-logs/testlog.json p f
	p=$(grep -c '"result": "OK"' "$log" || true)
	f=$(grep -cE '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)
	# Each check suite prints "NN%: Checks: N, Failures: N, Errors: N".
	grep -o '"name": "[^"]*"\|[0-9]*%: Checks: [0-9]*, Failures: [0-9]*, Errors: [0-9]*' "$log" |
		paste - - 2>/dev/null | sed "s/^/  $1: /" || true
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
}

run() {
	local name=$1 dir=$2 suites=$3; shift 3
	echo "== $name build ($dir)"
	setup "$dir" "$@"
	meson compile -C "$dir" >/dev/null
	# shellcheck disable=SC2086
	if ! meson test -C "$dir" --print-errorlogs $suites; then
		status=1
	fi
	count "$dir"
}

for b in $BUILDS; do
	case $b in
	plain) run plain build "" ;;
	asan)  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	       run "asan+ubsan" build-asan "" -Dsanitizer=address ;;
	tsan)  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	       run tsan build-tsan "--suite unit" -Dsanitizer=thread ;;
	*) echo "test.sh: unknown build '$b'" >&2; exit 2 ;;
	esac
done

echo "tests: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ "$status" -eq 0 ]
