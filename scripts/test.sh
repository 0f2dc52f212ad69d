#!/usr/bin/env bash
# Installs dependencies, builds quill twice (plain and ASan+UBSan) and runs the
# tests: every test in build/ (with the fuzz targets' short runs, label fuzz, when
# clang can build them), the unit and 'san' tests in build-san/. Exits non-zero if any
# step fails; the last line says which.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
# One test per core: the cluster tests hold a lock (quill_cluster) so that only one of
# them runs at a time, beside single-node tests. QUILL_TEST_JOBS=1 runs them one by one.
jobs="${QUILL_TEST_JOBS:-$(nproc)}"

failed=()
passed=()

step() {
	local name="$1"
	shift
	echo "==> $name"
	if "$@"; then
		passed+=("$name")
		return 0
	fi
	echo "==> FAILED: $name" >&2
	failed+=("$name")
	return 1
}

if ! step "deps" scripts/deps.sh; then
	echo "test.sh: FAIL (deps): cannot install build dependencies" >&2
	exit 1
fi

if step "build" scripts/build.sh; then
	step "tests (build/)" bash -c "cd build && ctest --output-on-failure -j$jobs"
fi
if step "build --sanitize" scripts/build.sh --sanitize; then
	step "unit and 'san' tests under ASan+UBSan (build-san/)" \
		bash -c "cd build-san && ctest --output-on-failure -j$jobs -L 'unit|san'"
fi

echo
if [ ${#failed[@]} -ne 0 ]; then
	echo "test.sh: FAIL: ${failed[*]}"
	exit 1
fi
echo "test.sh: PASS: ${#passed[@]} steps (deps, build, tests, sanitized build, sanitized unit tests)"
