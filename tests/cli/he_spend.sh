#!/usr/bin/env bash
# he_spend.sh - `privguide he spend-total` on the first 3,000 lines of Online
# Retail: without --epsilon or --exact the command refuses (exit 2); with
# --exact it warns on stderr, writes an audit entry and never prints shopper
# counts; the decrypted per-country totals add up to the decrypted grand
# total to the cent, a DP release is charged to the store's budget (purpose
# spend_totals), a release over budget is refused, and the released category
# groups do not change when one shopper who bought an item missing from the
# catalog is added. Skips (77) when the dataset is absent.
set -u
P=${PVG_CLI:?PVG_CLI not set}
SRC=${PVG_SHARED_DIR:-../shared}/data/online-retail/online-retail.csv.gz
[ -r "$SRC" ] || { echo "SKIP: Online Retail not found at $SRC"; exit 77; }
T=$(mktemp -d /tmp/pvg-he-spend-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
zcat "$SRC" | head -n 3001 >"$T/retail.csv"
export PRIVGUIDE_DATA="$T/store"
"$P" init >/dev/null || fail "init"
"$P" ingest --format online-retail "$T/retail.csv" >/dev/null 2>&1 || fail "ingest"
"$P" he keygen --bits 2048 --out "$T/k" >/dev/null || fail "keygen"

# exact totals are not the default: neither --epsilon nor --exact is a usage error
"$P" he spend-total --pub "$T/k/public.json" --group-by country >"$T/by" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] || fail "spend-total without --epsilon/--exact: exit $rc, not 2"
[ ! -s "$T/by" ] || fail "spend-total without --epsilon/--exact printed totals"
grep -q -- "--exact" "$T/err" && grep -q -- "--epsilon" "$T/err" || fail "refusal does not name the flags: $(cat "$T/err")"
"$P" he spend-total --pub "$T/k/public.json" --exact --epsilon 1 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--exact with --epsilon accepted"
before=$("$P" audit show --json | grep -c he_spend_total_exact)
"$P" he spend-total --pub "$T/k/public.json" --group-by country --exact >"$T/by" 2>"$T/err" || fail "spend-total --exact"
grep -qi "warning" "$T/err" && grep -qi "exact" "$T/err" || fail "--exact printed no warning: $(cat "$T/err")"
after=$("$P" audit show --json | grep -c he_spend_total_exact)
[ "$after" -eq $((before + 1)) ] || fail "--exact not audited ($before -> $after)"
"$P" audit show --json | grep he_spend_total_exact | grep -q "group_by=country" || fail "audit entry detail"
"$P" audit verify >/dev/null 2>&1 || fail "audit chain broken"
grep -q '"users"' "$T/by" && fail "--exact printed per-group shopper counts"
grep -qi "users" "$T/err" && fail "--exact printed shopper counts on stderr: $(cat "$T/err")"
[ "$(wc -l <"$T/by")" -ge 2 ] || fail "expected several countries"
grep -q '"unit": "cents", "v": "' "$T/by" || fail "output form"
"$P" he decrypt --priv "$T/k/private.json" <"$T/by" >"$T/plain" || fail "decrypt"
grep -q $'^United Kingdom\t[0-9]*\\.[0-9][0-9]$' "$T/plain" || fail "UK line: $(head -3 "$T/plain")"
total=$("$P" he spend-total --pub "$T/k/public.json" --exact 2>/dev/null | "$P" he decrypt --priv "$T/k/private.json" | cut -f2)
# amounts print with exactly two decimals: drop the point to add cents
sum=$(awk -F'\t' '{ v = $2; sub(/\./, "", v); c += v } END { s = c < 0 ? "-" : ""; if (c < 0) c = -c;
      printf "%s%d.%02d", s, int(c / 100), c % 100 }' "$T/plain")
[ "$total" = "$sum" ] || fail "grand total $total != sum of countries $sum"

# DP: needs a budget; charged; refused when over
"$P" he spend-total --pub "$T/k/public.json" --group-by category --epsilon 0.5 --dataset he 2>"$T/err" >/dev/null
[ $? -eq 1 ] && grep -qi 'budget' "$T/err" || fail "DP release without a budget: $(cat "$T/err")"
# one budget per store: the release is charged to the purpose spend_totals
"$P" budget set --epsilon 1 --delta 1e-5 >/dev/null || fail "budget set"
"$P" he spend-total --pub "$T/k/public.json" --group-by category --epsilon 0.5 --dataset he >"$T/dp" || fail "DP release"
grep -q '"noise_scale_cents": ' "$T/dp" || fail "DP output"
grep -q '"users"' "$T/dp" && fail "DP output releases user counts"
"$P" budget show --json | grep -q '"purpose":"spend_totals","cap":null,"spent":{"epsilon":0.5' || fail "not charged to spend_totals: $("$P" budget show --json)"
"$P" he spend-total --pub "$T/k/public.json" --epsilon 0.6 --dataset he >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -qiE 'budget|overspend' "$T/err" || fail "overspend not refused: $(cat "$T/err")"

# finding 3 of issue 11: the category domain does not depend on the data.
# Two neighbouring stores: the same catalog (every item categorised) and
# shoppers; the second has one more shopper, who bought an item missing from
# the catalog (ingest adds a category-less stub row for it). The set of groups
# released must be the same.
groups_of() { # DATA_DIR -> the released group names, one a line
  "$P" he spend-total --pub "$T/k/public.json" --group-by category --epsilon 0.1 --json --data-dir "$1" \
    | grep -o '"group": "[^"]*"' | sort
}
for n in a b; do
  "$P" init --data-dir "$T/n$n" >/dev/null || fail "init $n"
  {
    echo '{"type":"item","item":"I1","title":"lamp","category":"lighting","price":10}'
    echo '{"type":"item","item":"I2","title":"mug","category":"kitchen","price":4}'
    for u in 1 2 3 4 5 6; do
      echo "{\"type\":\"purchase\",\"user\":\"s$u\",\"item\":\"I$((u % 2 + 1))\",\"ts\":1300000000,\"quantity\":1,\"amount\":$((u + 3))}"
    done
    [ $n = b ] && echo '{"type":"purchase","user":"newcomer","item":"ZZZ-secret","ts":1300000100,"quantity":1,"amount":99}'
  } >"$T/n$n.jsonl"
  "$P" ingest --format jsonl "$T/n$n.jsonl" --data-dir "$T/n$n" >/dev/null 2>&1 || fail "ingest $n"
  "$P" budget set --epsilon 1 --data-dir "$T/n$n" >/dev/null || fail "budget $n"
done
ga=$(groups_of "$T/na") || fail "release a"
gb=$(groups_of "$T/nb") || fail "release b"
[ -n "$ga" ] || fail "no groups released"
[ "$ga" = "$gb" ] || fail "the released groups depend on one shopper: [$ga] vs [$gb]"
echo "$ga" | grep -q '"(uncategorised)"' || fail "(uncategorised) not in the domain: $ga"
echo "he_spend: ok"
