#!/usr/bin/env bash
# format_check.sh - every tracked C source and header is formatted as
# .clang-format says: `clang-format --dry-run -Werror` over
# `git ls-files '*.c' '*.h'` (fix with `make format`).
# Skips (77) with a message when clang-format or the git checkout is missing.
# Registered in ctest as cli_format_check with the label `format`; DISABLED
# in CMakeLists.txt until the tree has been formatted once.
set -u
SRC=${PVG_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || {
    echo "SKIP: $CF is not installed (Debian: apt-get install clang-format; scripts/install-deps)"
    exit 77
}
command -v git >/dev/null || { echo "SKIP: git is not installed"; exit 77; }
cd "$SRC" || exit 1
git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    { echo "SKIP: $SRC is not a git checkout (no file list)"; exit 77; }
[ -f .clang-format ] || { echo "FAIL: $SRC/.clang-format is missing"; exit 1; }
mapfile -t files < <(git ls-files '*.c' '*.h')
[ ${#files[@]} -gt 0 ] || { echo "FAIL: git ls-files lists no C files"; exit 1; }
present=()
for f in "${files[@]}"; do [ -f "$f" ] && present+=("$f"); done # skip deletions not yet committed
# one run over every file; each offending file is named in its diagnostics
out=$("$CF" --dry-run -Werror "${present[@]}" 2>&1)
rc=$?
mapfile -t bad < <(printf '%s\n' "$out" | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: .*clang-format.*/\1/p' | sort -u)
if [ $rc -ne 0 ] && [ ${#bad[@]} -eq 0 ]; then
    echo "FAIL: $CF failed:"
    printf '%s\n' "$out" | head -20
    exit 1
fi
if [ ${#bad[@]} -gt 0 ]; then
    echo "FAIL: ${#bad[@]} of ${#files[@]} files differ from .clang-format (fix: make format):"
    printf '  %s\n' "${bad[@]}"
    exit 1
fi
echo "format_check: ${#present[@]} files match .clang-format ($("$CF" --version | head -1))"
