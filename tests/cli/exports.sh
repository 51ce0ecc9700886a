#!/usr/bin/env bash
# exports.sh - the shared library exports exactly the API: every dynamic
# symbol of libprivguide.so is declared in a public header
# (include/privguide/*.h), and every function those headers declare is
# exported. Internal functions are hidden (-fvisibility=hidden; the public
# headers push default visibility around their declarations).
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
LIB=$(dirname "$PVG")/libprivguide.so
[ -f "$LIB" ] || { echo "FAIL: $LIB not found"; exit 1; }
command -v nm >/dev/null || { echo "SKIP: nm (binutils) is not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg_exports.XXXXXX)
trap 'rm -rf "$T"' EXIT
nm -D --defined-only "$LIB" | awk '$2 == "T" { print $3 }' | sort -u >"$T/exported"
# Names of functions declared in the public headers: an identifier followed
# by "(" at the start of a declaration (return type before it on the line).
cat "$SRC"/include/privguide/*.h | grep -v '^ *\*\|^ */\*\|#define' |
    grep -o '\bpvg_[A-Za-z0-9_]*(' | tr -d '(' | sort -u >"$T/declared"
EXTRA=$(comm -23 "$T/exported" "$T/declared")
[ -z "$EXTRA" ] || { echo "FAIL: exported but declared in no public header:"; echo "$EXTRA" | sed 's/^/  /'; exit 1; }
MISSING=$(comm -13 "$T/exported" "$T/declared" | while read -r f; do
    # a declared name may be a function pointer type or a macro argument; only
    # report names that are defined somewhere in the library's sources
    grep -rqs "^[a-z].*\b$f(" "$SRC"/src && echo "$f"; done)
[ -z "$MISSING" ] || { echo "FAIL: declared in a public header but not exported:"; echo "$MISSING" | sed 's/^/  /'; exit 1; }
echo "exports: $(wc -l <"$T/exported") functions, all declared in include/privguide/"
