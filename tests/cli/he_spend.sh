#!/usr/bin/env bash
# he_spend.sh - `privguide he spend-total` on the first 3,000 lines of Online
# Retail: the decrypted per-country totals add up to the decrypted grand
# total to the cent, a DP release is charged to the ledger, and a release
# over budget is refused. Skips (77) when the dataset is absent.
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

"$P" he spend-total --pub "$T/k/public.json" --group-by country >"$T/by" || fail "spend-total"
[ "$(wc -l <"$T/by")" -ge 2 ] || fail "expected several countries"
grep -q '"unit": "cents", "v": "' "$T/by" || fail "output form"
"$P" he decrypt --priv "$T/k/private.json" <"$T/by" >"$T/plain" || fail "decrypt"
grep -q $'^United Kingdom\t[0-9]*\\.[0-9][0-9]$' "$T/plain" || fail "UK line: $(head -3 "$T/plain")"
total=$("$P" he spend-total --pub "$T/k/public.json" | "$P" he decrypt --priv "$T/k/private.json" | cut -f2)
# amounts print with exactly two decimals: drop the point to add cents
sum=$(awk -F'\t' '{ v = $2; sub(/\./, "", v); c += v } END { s = c < 0 ? "-" : ""; if (c < 0) c = -c;
      printf "%s%d.%02d", s, int(c / 100), c % 100 }' "$T/plain")
[ "$total" = "$sum" ] || fail "grand total $total != sum of countries $sum"

# DP: needs a budget; charged; refused when over
"$P" he spend-total --pub "$T/k/public.json" --group-by category --epsilon 0.5 --dataset he 2>"$T/err" >/dev/null
[ $? -eq 1 ] && grep -qi 'budget' "$T/err" || fail "DP release without a budget: $(cat "$T/err")"
# the budget command belongs to the DP commands; the library test covers the
# ledger when no such command is present
BUDGET=
for cmd in "dp budget set" "budget set"; do
  if $P $cmd --help >/dev/null 2>&1; then BUDGET=$cmd; break; fi
done
if [ -n "$BUDGET" ]; then
  $P $BUDGET --dataset he --epsilon 1 --delta 1e-5 >/dev/null || fail "$BUDGET"
  "$P" he spend-total --pub "$T/k/public.json" --group-by category --epsilon 0.5 --dataset he >"$T/dp" || fail "DP release"
  grep -q '"noise_scale_cents": ' "$T/dp" || fail "DP output"
  grep -q '"users"' "$T/dp" && fail "DP output releases user counts"
  "$P" he spend-total --pub "$T/k/public.json" --epsilon 0.6 --dataset he >/dev/null 2>"$T/err"
  [ $? -eq 1 ] && grep -qiE 'budget|overspend' "$T/err" || fail "overspend not refused: $(cat "$T/err")"
fi
echo "he_spend: ok"
