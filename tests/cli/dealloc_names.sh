#!/usr/bin/env bash
# dealloc_names.sh - one deallocator convention (include/privguide/common.h):
# every type pvg_X that a public function hands out as new (a `pvg_X *`
# return or a `pvg_X **` out parameter) has `void pvg_X_free(pvg_X *)`
# declared, and no public function is a deallocator under another name
# (*_destroy, *_close), except pvg_store_close, the former name of
# pvg_store_free kept for the documented API.
set -u
SRC=${PVG_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
python3 - "$SRC/include/privguide" <<'PY'
import glob, os, re, sys
text = ""
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.h"))):
    t = open(path).read()
    t = re.sub(r"/\*.*?\*/", " ", t, flags=re.S)
    t = re.sub(r"#ifdef __cplusplus.*?#endif", "", t, flags=re.S)  # extern "C" { and }
    t = re.sub(r"^[ \t]*#[^\n]*", "", t, flags=re.M)
    text += t
# drop struct/enum bodies, keep file-scope statements
flat, depth = [], 0
for c in text:
    if c == "{": depth += 1
    elif c == "}": depth -= 1
    elif depth == 0: flat.append(c)
decls = [" ".join(s.split()) for s in "".join(flat).split(";")]
funcs = {}
for d in decls:
    m = re.match(r"^(?!typedef)(.*?)\b(pvg_\w+)\s*\((.*)\)", d)
    if m: funcs[m.group(2)] = (m.group(1), m.group(3))
bad = []
handed_out = {}
for name, (ret, args) in funcs.items():
    for t in re.findall(r"(?<!const )\b(pvg_\w+) \*\*", args):  # const: borrowed
        handed_out.setdefault(t, name)
    m = re.match(r"^(?!const)(?:\w+ )*?(pvg_\w+) \*$", ret.replace("PVG_WARN_UNUSED", "").strip())
    if m: handed_out.setdefault(m.group(1), name)
for t, by in sorted(handed_out.items()):
    f = funcs.get(t + "_free")
    if not f or f[0].strip() != "void" or not re.match(r"^(const )?%s \*\w*$" % t, f[1].strip()):
        bad.append("%s (new from %s) has no void %s_free(%s *)" % (t, by, t, t))
for name in sorted(funcs):
    if re.search(r"_(destroy|close)$", name) and name != "pvg_store_close":
        bad.append("%s: deallocators are named *_free" % name)
if len(handed_out) < 10:
    print("FAIL: found only %d types handed out as new (parser broken?)" % len(handed_out))
    sys.exit(1)
if bad:
    print("FAIL: the deallocator convention does not hold:")
    print("\n".join("  " + b for b in bad))
    sys.exit(1)
print("dealloc_names: %d types handed out as new, each with its pvg_X_free" % len(handed_out))
PY
