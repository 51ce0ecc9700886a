#!/usr/bin/env bash
# warn_unused.sh - every public function whose result can signal a failure
# carries PVG_WARN_UNUSED (include/privguide/common.h), so the compiler
# (-Werror) refuses a caller that drops the result:
#   - every function declared in include/privguide/*.h that returns
#     pvg_status, except pvg_error_set and pvg_error_set_at (they return the
#     code they are given, so `return pvg_error_set(err, ...)` and a plain
#     `pvg_error_set(err, ...);` are both right);
#   - every constructor returning a pointer (`pvg_<x>_new...`, NULL on
#     failure);
#   - every function whose contract comment says it returns NULL on/if a
#     failure, or a negative status.
# usage: warn_unused.sh [include-dir]   (default: $PVG_SOURCE_DIR/include/privguide)
set -u
SRC=${PVG_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DIR=${1:-$SRC/include/privguide}
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
[ -d "$DIR" ] || { echo "FAIL: $DIR is missing"; exit 1; }
python3 - "$DIR" <<'EOF'
import glob, os, re, sys

EXEMPT = {"pvg_error_set", "pvg_error_set_at"}
MIN_STATUS = 150  # the API has more: fewer means the parser broke

def declarations(text):
    """(return type, name, attribute present, contract comment) of each
    function declared at file scope in a header."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", "", text, flags=re.M)
    text = text.replace('extern "C" {', "")
    out, depth, stmt, comment, i, last_semi = [], 0, [], "", 0, 0
    while i < len(text):
        if text.startswith("/*", i):
            j = text.index("*/", i) + 2
            if depth == 0 and "".join(stmt).strip():
                comment += text[i:j]  # inside a declaration: part of its contract
            elif depth == 0 and "\n" in text[last_semi:i]:
                comment = text[i:j]  # before a declaration: its contract
            # else: trailing the previous declaration (`...; /* NULL ok */`)
            i = j
            continue
        c = text[i]
        i += 1
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth == 0 and c == ";":
            s = " ".join("".join(stmt).split())
            stmt, last_semi = [], i
            m = re.match(r"^(.*?)\b(pvg_\w+)\s*\((.*)\)\s*(.*)$", s)
            if m and not s.startswith("typedef") and "(*" not in m.group(1):
                ret, name, _, tail = m.groups()
                attr = "PVG_WARN_UNUSED" in ret or "PVG_WARN_UNUSED" in tail
                ret = ret.replace("PVG_WARN_UNUSED", "").strip()
                out.append((ret, name, attr, " ".join(comment.split())))
            comment = ""
        elif depth == 0:
            stmt.append(c)
    return out

bad, n_status, n_attr, n_all = [], 0, 0, 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.h"))):
    for ret, name, attr, comment in declarations(open(path).read()):
        n_all += 1
        n_attr += attr
        why = None
        if ret == "pvg_status":
            n_status += 1
            if name not in EXEMPT:
                why = "returns pvg_status"
        elif ret.endswith("*") and re.search(r"_new(_|$)", name):
            why = "a constructor returning a pointer (NULL on failure)"
        elif re.search(r"\bNULL (on|if) (out of memory|failure|error)", comment):
            why = "its contract returns NULL on failure"
        elif re.search(r"\bnegative (pvg_)?status\b", comment):
            why = "its contract returns a negative status"
        if why and not attr:
            bad.append("%s: %s %s() %s but lacks PVG_WARN_UNUSED" %
                       (os.path.basename(path), ret, name, why))
if n_status < MIN_STATUS:
    print("FAIL: found only %d functions returning pvg_status in %s (parser broken?)"
          % (n_status, sys.argv[1]))
    sys.exit(1)
if bad:
    print("FAIL: %d public functions can fail but let the caller drop the result:" % len(bad))
    print("\n".join("  " + b for b in bad))
    sys.exit(1)
print("warn_unused: %d public functions, %d return pvg_status, %d carry PVG_WARN_UNUSED"
      % (n_all, n_status, n_attr))
EOF
