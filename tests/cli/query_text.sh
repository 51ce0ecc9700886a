#!/usr/bin/env bash
# query_text.sh - what the analyst reads, on the bundled sample: the text
# output of `query` states each shopper's contribution cap; the README's
# query examples (run as written, in order) answer, top-items with rows; an
# error of the library is not prefixed twice ("privguide: query: query:");
# `he spend-total` prints the summary its --help promises on stderr (and
# none with --json); `audit show` prints ISO-8601 UTC times (JSON keeps the
# Unix time beside them).
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR is not set}
T=$(mktemp -d /tmp/pvg_query_text.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export PRIVGUIDE_KEY_FILE="$T/key"
cd "$T" || fail cd
timeout 60 "$PVG" init --data-dir shop >/dev/null || fail init
# the shop's catalogue, as the README does: DP releases take their candidates from it alone
gzip -dc "$SRC/data/online-retail-catalogue.tsv.gz" >catalogue.tsv || fail gunzip
timeout 60 "$PVG" catalog import catalogue.tsv --data-dir shop >/dev/null || fail "catalog import"
timeout 120 "$PVG" ingest --data-dir shop --format online-retail "$SRC/data/online-retail-sample.csv.gz" \
    >/dev/null 2>&1 || fail ingest

# the README's DP section, run as written
grep -E '^privguide (budget|query) ' "$SRC/README.md" >"$T/readme_cmds"
[ "$(grep -c '^privguide query' "$T/readme_cmds")" -ge 3 ] || fail "README query examples not found"
grep -q '^privguide query top-items' "$T/readme_cmds" || fail "README has no top-items example"
while read -r _ rest; do
    # shellcheck disable=SC2086
    out=$(eval timeout 60 "\"$PVG\"" $rest 2>&1) || fail "README example 'privguide $rest': $out"
    case "$rest" in
    "query top-items"*)
        echo "$out" | grep -q '"rows":\[{"group":' || fail "README top-items shows nothing: $out" ;;
    esac
done <"$T/readme_cmds"

# the cap in the text output
out=$(timeout 60 "$PVG" query count --data-dir shop --event purchase --epsilon 0.1 2>&1) || fail "count: $out"
echo "$out" | grep -q "each shopper's contribution capped at 10 events" || fail "count text lacks the cap: $out"
out=$(timeout 60 "$PVG" query count --data-dir shop --event purchase --group-by country --max-contributions 3 \
    --epsilon 0.1 --delta 1e-7 2>&1) || fail "grouped count: $out"
echo "$out" | grep -q "capped at 3 events per group in at most 5 groups" || fail "grouped text lacks the cap: $out"

# one prefix
out=$(timeout 60 "$PVG" query sum --data-dir shop --value amount --epsilon 0.1 2>&1) && fail "sum without clamp accepted"
echo "$out" | grep -q "^privguide: query: --clamp" || fail "error text: $out"
echo "$out" | grep -q "query: query:" && fail "duplicated prefix: $out"

# he spend-total: the promised summary on stderr, none with --json
timeout 120 "$PVG" he keygen --bits 2048 --out k >/dev/null || fail keygen
timeout 120 "$PVG" he spend-total --data-dir shop --pub k/public.json --epsilon 0.1 >tot 2>err || fail "spend-total: $(cat err)"
[ "$(wc -l <tot)" -eq 1 ] || fail "one total expected: $(cat tot)"
grep -q "1 encrypted group total on stdout (epsilon 0.1 delta 0 charged" err || fail "no summary on stderr: $(cat err)"
timeout 120 "$PVG" he spend-total --data-dir shop --pub k/public.json --epsilon 0.1 --json >tot 2>err ||
    fail "spend-total --json: $(cat err)"
[ -s err ] && fail "--json printed a summary: $(cat err)"
"$PVG" he spend-total --help 2>&1 | grep -q "summary on stderr" || fail "help lacks the summary"

# audit show: ISO-8601 UTC
out=$(timeout 60 "$PVG" audit show --data-dir shop --limit 3) || fail "audit show"
[ "$(echo "$out" | grep -Ec '^ +[0-9]+ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z ')" -eq 3 ] ||
    fail "audit show times: $out"
j=$(timeout 60 "$PVG" audit show --data-dir shop --limit 1 --json) || fail "audit show --json"
echo "$j" | grep -Eq '"ts":[0-9]+,"time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"' || fail "audit show --json: $j"
echo "query text: ok"
