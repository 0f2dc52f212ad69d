#!/usr/bin/env bash
# Usage: scripts/build.sh [--sanitize]
# Configures and builds quill into build/ (or build-san/ with ASan+UBSan).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/build"
flags=(-DQUILL_SANITIZE=OFF)

case "${1:-}" in
"") ;;
--sanitize)
	dir="$root/build-san"
	flags=(-DQUILL_SANITIZE=ON)
	;;
-h | --help)
	echo "usage: scripts/build.sh [--sanitize]"
	exit 0
	;;
*)
	echo "build.sh: unknown argument '$1' (usage: scripts/build.sh [--sanitize])" >&2
	exit 2
	;;
esac

cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${flags[@]}"
cmake --build "$dir" -- -j"$(nproc)"
