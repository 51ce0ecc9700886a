#!/usr/bin/env bash
# gate_check.sh - front-ends reach personal data only through the access gate
# (include/privguide/access.h). Fails when a file of a front-end (cli/*.c,
# src/server/*.c) calls a gated function directly. Usage: gate_check.sh [TREE]
# (default $PVG_SOURCE_DIR), so it can be run against any checkout.
set -u
ROOT="${1:-${PVG_SOURCE_DIR:?PVG_SOURCE_DIR or a tree argument is required}}"

# The gated functions, declared once: every read or use of a shopper's
# personal data (store reads and changes of one or all shoppers, consent,
# the model's per-user answers, training selection, DP data reads) and
# every audit write about such an access. Only src/access/ calls them on a
# front-end's behalf.
GATED=(
  pvg_store_user_export pvg_store_user_events pvg_store_foreach_user
  pvg_store_user_delete pvg_store_user_exists pvg_store_consent_get pvg_store_consent_set
  pvg_dataset_load_store
  pvg_model_recommend pvg_model_recommend_batch pvg_model_recommend_history
  pvg_query_run pvg_paillier_spend_total
  pvg_audit_append pvg_audit_append_many
  pvg_srv_audit pvg_srv_audit_then_answer pvg_srv_audit_log pvg_srv_audit_log_async
)

# Files of src/server/ that are library parts, not front-end code: the audit
# API itself, its group-commit writer, and the gate's server-side sink.
LIBRARY_FILES=(src/server/audit.c src/server/audit_writer.c src/server/access_sink.c)

# Direct calls that stay, each with its reason ("file function").
EXEMPT=(
  # credential management (apikey create, token issue, revoke) is audited
  # but reads no shopper's data
  "cli/cmd_server.c pvg_audit_append"
  # the DP popular list: released and charged by the model holder from the
  # model's item counts (no shopper's events are read); its audit entry is
  # written with the ledger charge
  "src/server/model_holder.c pvg_audit_append"
  # inside http.c's pvg_srv_audit / pvg_srv_audit_then_answer helpers, which
  # no route calls any more (a call to them fails this check)
  "src/server/http.c pvg_srv_audit_log"
  "src/server/http.c pvg_srv_audit_log_async"
)

GATED_RE="(^|[^A-Za-z0-9_])($(IFS='|'; echo "${GATED[*]}"))[[:space:]]*\("

is_library() { local f; for f in "${LIBRARY_FILES[@]}"; do [ "$1" = "$f" ] && return 0; done; return 1; }
is_exempt() { local e; for e in "${EXEMPT[@]}"; do [ "$1 $2" = "$e" ] && return 0; done; return 1; }

bad=0
cd "$ROOT" || exit 1
for f in cli/*.c src/server/*.c; do
  is_library "$f" && continue
  code=$(sed -e 's://.*$::' -e 's:/\*.*\*/::g' "$f" | grep -n -E "$GATED_RE" || true)
  [ -z "$code" ] && continue
  for fn in "${GATED[@]}"; do
    # calls only: the name followed by "(", outside // and /* */ line comments
    # (a definition or prototype starts in column 0 and is not a call)
    hits=$(printf '%s\n' "$code" | grep -E "^[0-9]+:(.*[^A-Za-z0-9_])?$fn[[:space:]]*\(" |
           grep -v -E '^[0-9]+:[^[:space:]]' || true)
    [ -z "$hits" ] && continue
    is_exempt "$f" "$fn" && continue
    while IFS= read -r h; do
      echo "gate_check: $f:${h%%:*}: calls $fn directly; go through the access gate (privguide/access.h)" >&2
    done <<<"$hits"
    bad=1
  done
done
[ "$bad" -eq 0 ] || { echo "gate_check: FAIL" >&2; exit 1; }
echo "gate_check: ok (front-ends call no gated function directly)"
