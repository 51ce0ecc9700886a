#!/usr/bin/env bash
# he_basic.sh - the he commands end to end: keygen (pheutil files, 0600),
# encrypt / add / multiply / decrypt round trips, the plain list form, and
# clear errors (exit 1 runtime, 2 usage) for bad input and wrong keys.
# Where python3 is present, an independent decoder written from
# python-paillier's formats (base64url p, q; CRT decryption; EncodedNumber
# decode) checks our files and ciphertexts.
set -u
P=${PVG_CLI:?PVG_CLI not set}
T=$(mktemp -d /tmp/pvg-he-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$P" he keygen --bits 2048 --out "$T/k" >/dev/null || fail "keygen"
[ "$(stat -c %a "$T/k/private.json")" = 600 ] || fail "private.json mode"
grep -q '"kty": "DAJ", "alg": "PAI-GN1"' "$T/k/public.json" || fail "public key format"
"$P" he keygen --bits 2048 --out "$T/k" 2>/dev/null && fail "keygen overwrote a key"
"$P" he keygen --bits 1024 --out "$T/small" 2>/dev/null; [ $? -eq 2 ] || fail "1024 bits accepted"
"$P" he keygen --bits 2048 --out "$T/k2" >/dev/null || fail "second keygen"

printf '12.35\n-4.99\n\n100\n0.01\n' | "$P" he encrypt --pub "$T/k/public.json" >"$T/enc" || fail "encrypt"
[ "$(wc -l <"$T/enc")" -eq 4 ] || fail "expected 4 ciphertexts"
grep -q '"e": -32}$' "$T/enc" || fail "pheutil exponent -32"
out=$("$P" he decrypt --priv "$T/k/private.json" <"$T/enc" | tr '\n' ' ')
[ "$out" = "12.35 -4.99 100.0 0.01 " ] || fail "decrypt: got '$out'"
sum=$("$P" he add --pub "$T/k/public.json" <"$T/enc" | "$P" he decrypt --priv "$T/k/private.json")
[ "$sum" = "107.37" ] || fail "add: got '$sum'"
prod=$("$P" he multiply --pub "$T/k/public.json" --scalar 3 <"$T/enc" | "$P" he decrypt --priv "$T/k/private.json" | tr '\n' ' ')
[ "$prod" = "37.05 -14.97 300.0 0.03 " ] || fail "multiply: got '$prod'"
# integers keep exponent 0 with --exponent 0
int=$(printf -- '-42\n7\n' | "$P" he encrypt --pub "$T/k/public.json" --exponent 0 --obfuscator fresh |
      "$P" he add --pub "$T/k/public.json" | "$P" he decrypt --priv "$T/k/private.json")
[ "$int" = "-35" ] || fail "integer sum: got '$int'"

# errors
printf '1\n12,5\n' | "$P" he encrypt --pub "$T/k/public.json" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'stdin:2' "$T/err" || fail "bad number: rc $rc, $(cat "$T/err")"
# a number whose sums could not decrypt is refused at encryption, not at decryption
big=$(python3 -c 'print(2**1000)')
echo "$big" | "$P" he encrypt --pub "$T/k/public.json" --exponent 0 >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'at most 992 bits' "$T/err" || fail "huge number: rc $rc, $(cat "$T/err")"
ok=$(python3 -c 'print(2**990)')
[ "$(echo "$ok" | "$P" he encrypt --pub "$T/k/public.json" --exponent 0 |
     "$P" he decrypt --priv "$T/k/private.json")" = "$ok" ] || fail "largest range round trip"
printf '5\n6\n' | "$P" he encrypt --pub "$T/k/public.json" --list >"$T/list" || fail "encrypt --list"
grep -q '^{"public_key": {"g": [0-9]*, "n": [0-9]*}, "values": \[\["[0-9]*", -32\], \["' "$T/list" || fail "list form"
[ "$("$P" he add <"$T/list" | "$P" he decrypt --priv "$T/k/private.json")" = "11.0" ] || fail "list sum"
"$P" he decrypt --priv "$T/k2/private.json" <"$T/list" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'key does not match' "$T/err" || fail "wrong key: rc $rc, $(cat "$T/err")"
# lines name no key: decrypting key 1's ciphertexts with key 2 prints no number and exits 1
for v in 12.35 100 -4.99 0.01 7 1000000; do
    echo "$v" | "$P" he encrypt --pub "$T/k/public.json" |
        "$P" he decrypt --priv "$T/k2/private.json" >"$T/out" 2>"$T/err"; rc=$?
    [ $rc -eq 1 ] && [ ! -s "$T/out" ] && grep -q 'another key' "$T/err" ||
        fail "decrypt $v with the wrong key: rc $rc, out $(head -c 80 "$T/out"), err $(cat "$T/err")"
done
"$P" he add <"$T/enc" >/dev/null 2>&1; [ $? -eq 2 ] || fail "add without --pub"
echo '{"v": "0", "e": 0}' | "$P" he add --pub "$T/k/public.json" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || fail "zero ciphertext accepted"
echo '{"v": "12", "e":' | "$P" he decrypt --priv "$T/k/private.json" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'stdin:1' "$T/err" || fail "malformed JSON: $(cat "$T/err")"
echo '{"kty": "DAJ"}' >"$T/bad.json"
echo 1 | "$P" he encrypt --pub "$T/bad.json" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'PAI-GN1' "$T/err" || fail "bad key: $(cat "$T/err")"

if command -v python3 >/dev/null 2>&1; then
  # The plain list form of python-paillier's docs, built from our ciphertexts,
  # with n and g as JSON integers; then an independent decryption.
  python3 - "$T" <<'PY' || fail "python list form / independent decoder"
import base64, json, subprocess, sys, os
T = sys.argv[1]
P = os.environ["PVG_CLI"]
def b64int(s):
    return int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")
priv = json.load(open(T + "/k/private.json"))
p, q = b64int(priv["p"]), b64int(priv["q"])
n = b64int(priv["pub"]["n"]); assert p * q == n
cts = [json.loads(l) for l in open(T + "/enc")]
doc = {"public_key": {"g": n + 1, "n": n}, "values": [[c["v"], c["e"]] for c in cts]}
r = subprocess.run([P, "he", "add"], input=json.dumps(doc), capture_output=True, text=True)
assert r.returncode == 0, r.stderr
s = json.loads(r.stdout)
# python-paillier's raw_decrypt (CRT) and EncodedNumber.decode, from its formats
def L(x, m): return (x - 1) // m
def h(x): return pow(L(pow(n + 1, x - 1, x * x), x), -1, x)
c = int(s["v"])
mp = L(pow(c, p - 1, p * p), p) * h(p) % p
mq = L(pow(c, q - 1, q * q), q) * h(q) % q
m = mp + ((mq - mp) * pow(p, -1, q) % q) * p
max_int = n // 3 - 1
mant = m if m <= max_int else m - n
val = mant * 16 ** s["e"] if s["e"] >= 0 else mant / 16 ** -s["e"]
assert repr(val) == "107.37", val
PY
fi
echo "he_basic: ok"
