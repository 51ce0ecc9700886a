#!/usr/bin/env bash
# gate_check.sh - front-ends reach personal data only through the access gate
# (include/privguide/access.h). Fails when a front-end file (cli/ and
# src/server/, every .c and .h, sub-directories included) names a gated
# function or the raw storage backend at all: calls, function pointers
# (&fn), macros aliasing them, calls split over lines. Usage:
# gate_check.sh [TREE] (default $PVG_SOURCE_DIR), so it can be run against
# any checkout.
set -u
ROOT="${1:-${PVG_SOURCE_DIR:?PVG_SOURCE_DIR or a tree argument is required}}"
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
exec python3 - "$ROOT" <<'PY'
import os, re, sys

root = sys.argv[1]

# The gated names, declared once: every read or use of a shopper's personal
# data (store reads and changes of one or all shoppers, consent, the model's
# per-user answers and pseudonym lookups, training selection, DP data reads,
# encrypted spend totals), every audit write about such an access, and the
# raw storage backend (its ops table reaches every table). Only src/access/
# and the library parts below use them on a front-end's behalf. The deferred
# gate's commit report (pvg_access_rec_committed) says an audit entry is
# durable: only the audit writer's sink may say it.
GATED = """
  pvg_store_user_export pvg_store_user_events pvg_store_foreach_user
  pvg_store_user_delete pvg_store_user_exists pvg_store_consent_get pvg_store_consent_set
  pvg_dataset_load_store
  pvg_model_recommend pvg_model_recommend_batch pvg_model_recommend_history pvg_model_user_key
  pvg_model_recommend_many
  pvg_model_explain
  pvg_query_run pvg_paillier_spend_total
  pvg_audit_append pvg_audit_append_many
  pvg_srv_audit_log pvg_srv_audit_log_async
  pvg_access_rec_committed
  pvg_store_backend
""".split()

# Headers only the library may include (they expose the backend and the
# store's private state).
PRIVATE_HEADERS = ["store/backend.h", "store/store_priv.h", "store/sqlite/"]

# Files of src/server/ that are library parts, not front-end code: the audit
# API and its group-commit writer, the gate's server-side sink, the
# credential store (no shopper data), and the server's internal header
# (declarations only).
LIBRARY_FILES = {
    "src/server/audit.c", "src/server/audit_writer.c", "src/server/access_sink.c",
    "src/server/auth.c", "src/server/server_internal.h",
}

# Names that stay, each with its reason and how many times it may appear
# (one more fails the check: a new use needs a reason here).
EXEMPT = {
    # credential management (apikey create, token issue, revoke) is audited
    # but reads no shopper's data
    ("cli/cmd_server.c", "pvg_audit_append"): 3,
    # the dashboard's operator actions (revoke a credential, rotate the
    # master key) are audited like the CLI's and read no shopper's data
    ("src/server/routes.c", "pvg_srv_audit_log"): 2,
    # the DP popular list: released, charged and audited by the model holder
    ("src/server/model_holder.c", "pvg_audit_append"): 1,
    # the model holder keeps DP releases in the backend's release cache
    ("src/server/model_holder.c", "pvg_store_backend"): 1,
}

def strip(text):
    """Comments and string/char literals blanked, line numbers kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)

name_re = re.compile(r"\b(" + "|".join(map(re.escape, GATED)) + r")\b")
include_re = re.compile(r'#\s*include\s*"([^"]+)"')
bad = 0
files = []
for top in ("cli", "src/server"):
    for d, _, names in os.walk(os.path.join(root, top)):
        for f in names:
            if f.endswith((".c", ".h")):
                files.append(os.path.relpath(os.path.join(d, f), root))
for rel in sorted(files):
    if rel in LIBRARY_FILES:
        continue
    raw = open(os.path.join(root, rel), encoding="utf-8", errors="replace").read()
    for m in include_re.finditer(raw):
        if any(m.group(1).startswith(h) for h in PRIVATE_HEADERS) and not (
            rel == "src/server/model_holder.c" and m.group(1) == "store/backend.h"):
            line = raw.count("\n", 0, m.start()) + 1
            print(f"gate_check: {rel}:{line}: includes {m.group(1)}, which only the library may use", file=sys.stderr)
            bad = 1
    code = strip(raw)
    seen = {}
    for m in name_re.finditer(code):
        seen.setdefault(m.group(1), []).append(code.count("\n", 0, m.start()) + 1)
    for fn, lines in seen.items():
        allowed = EXEMPT.get((rel, fn), 0)
        if len(lines) > allowed:
            extra = lines[allowed:] if allowed else lines
            for line in extra:
                print(f"gate_check: {rel}:{line}: uses {fn}"
                      f"{' beyond its ' + str(allowed) + ' exempt use(s)' if allowed else ''}; "
                      "go through the access gate (privguide/access.h)", file=sys.stderr)
            bad = 1
if bad:
    print("gate_check: FAIL", file=sys.stderr)
    sys.exit(1)
print(f"gate_check: ok ({len(files)} front-end files name no gated function or backend directly)")
PY
