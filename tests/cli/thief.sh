#!/usr/bin/env bash
# thief.sh - the stolen-disk test. With the key file kept elsewhere (the
# per-user config dir), build a data dir the way an operator would: ingest the
# bundled Online Retail sample, train a model into the data dir, run `serve`
# and make a few requests (WAL, audit entries, a server log in DATA/logs),
# ingest a file with rejects. Then copy the whole data dir while the server
# still runs (databases, WAL and shm files, the model, rejects, logs) and play
# the thief on the copy:
#   (a) every 32-byte string at every offset of every file (all of privguide's
#       keys are 32 bytes), and every base64 / hex token that decodes to 32
#       bytes, is tried as the pepper: the pseudonym of one known CustomerID
#       (BLAKE2b-128 keyed with the pepper, as src/store/store.c computes it)
#       must not be among the copied store's pseudonyms;
#   (b) no shopper's item list (>= 3 distinct items) appears in any file: as
#       store item row ids and as model item indices, each as contiguous
#       little-endian u32 and i64 and as a comma-separated string, and as the
#       stock codes joined by ',' or NUL;
#   (c) no CustomerID appears right after a field marker (user, customer,
#       shopper, subject, uid ...).
# A positive control runs the same attack on the real key file and must find
# the pepper there, so (a) cannot pass vacuously.
#
# `bash thief.sh --check DATA_DIR [KEY_FILE]` runs only the thief's part on an
# existing data dir (for instance one made by an older privguide with its
# master.key inside, where (a) fails).
set -u
PVG=${PVG_CLI:-}
SRC=${PVG_SOURCE_DIR:?PVG_SOURCE_DIR not set}
SAMPLE="$SRC/data/online-retail-sample.csv.gz"
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg-thief-XXXXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$T/thief.py" <<'PY'
import base64, binascii, csv, gzip, hashlib, io, os, re, sqlite3, struct, sys

copy, sample = sys.argv[1], sys.argv[2]
control = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
problems = []

def norm(cid):
    cid = cid.strip()
    m = re.fullmatch(r"(\d+)\.0+", cid)
    return m.group(1) if m else cid

# The shoppers and their items, from the CSV the thief may well have too.
items_of = {}
with gzip.open(sample, "rb") as f:
    for row in csv.DictReader(io.TextIOWrapper(f, encoding="latin-1")):
        cid = norm(row.get("CustomerID") or "")
        if not cid:
            continue
        items_of.setdefault(cid, set()).add(row["StockCode"].strip())
ids = sorted(items_of)
files = []
for root, _, names in os.walk(copy):
    for n in names:
        files.append(os.path.join(root, n))
files.sort()
blobs = {p: open(p, "rb").read() for p in files}
total = sum(len(b) for b in blobs.values())

db = sqlite3.connect(os.path.join(copy, "privguide.db"))
pseudonyms = {bytes(r[0]) for r in db.execute("SELECT pseudonym FROM users")}
row_id = {ext: rid for rid, ext in db.execute("SELECT id, ext_id FROM items")}
db.close()
if len(pseudonyms) < 100:
    sys.exit("the copied store holds only %d users: the set-up went wrong" % len(pseudonyms))

# ---- (a) every key-sized string as the pepper --------------------------------
KEY = 32
probe = None  # one CustomerID the store holds (checked by the control when it runs)

def pseudonym(key, cid):
    return hashlib.blake2b(cid.encode(), key=key, digest_size=16).digest()

def tokens(data):
    for m in re.finditer(rb"[A-Za-z0-9+/_-]{42,44}={0,2}", data):
        for dec in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                k = dec(m.group(0) + b"=" * (-len(m.group(0)) % 4))
            except (binascii.Error, ValueError):
                continue
            if len(k) == KEY:
                yield k
    for m in re.finditer(rb"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])", data):
        yield binascii.unhexlify(m.group(0))

def find_pepper(data, cid):
    b2 = hashlib.blake2b
    want = pseudonyms
    msg = cid.encode()
    prev = None
    for o in range(len(data) - KEY + 1):
        k = data[o:o + KEY]
        if k == prev:  # tried at the offset before (runs of one byte: free pages)
            continue
        prev = k
        if b2(msg, key=k, digest_size=16).digest() in want:
            return "raw bytes at offset %d" % o
    for k in tokens(data):
        if b2(msg, key=k, digest_size=16).digest() in want:
            return "an encoded key"
    return None

if control:
    text = open(control, "rb").read()
    m = re.search(rb"^pepper (\S+)", text, re.M)
    pepper = base64.b64decode(m.group(1))
    held = [c for c in ids if pseudonym(pepper, c) in pseudonyms]
    if len(held) < len(pseudonyms) - 5:  # a few users come from other imports
        sys.exit("control: the real pepper maps %d CSV ids onto the %d stored pseudonyms" % (len(held), len(pseudonyms)))
    probe = held[0]
    if not find_pepper(text, probe):
        sys.exit("control: the attack does not find the pepper in the real key file")
    print("control: the attack finds the pepper in the real key file; it names all %d shoppers" % len(held))
if probe is None:
    probe = ids[0]
for p, data in blobs.items():
    where = find_pepper(data, probe)
    if where:
        problems.append("(a) %s holds the pepper (%s): every pseudonym reverses" % (os.path.relpath(p, copy), where))
print("(a) tried %d key-sized windows of %d files (%d bytes) as the pepper" % (
    sum(max(0, len(b) - KEY + 1) for b in blobs.values()), len(files), total))

# ---- (b) item lists ------------------------------------------------------
def model_items(data):
    """index -> item id of a privguide model file (its item sections are plain)."""
    if not data.startswith(b"PVGMODL\0"):
        return None
    table = [struct.unpack_from("<QQ", data, 512 + 16 * s) for s in range(18)]
    (ooff, olen), (soff, slen) = table[6], table[7]
    n = olen // 8 - 1
    offs = struct.unpack_from("<%dQ" % (n + 1), data, ooff)
    strs = data[soff:soff + slen]
    return [strs[offs[i]:strs.index(b"\0", offs[i])].decode() for i in range(n)]

index_of = {}
models = []
for p, data in blobs.items():
    names = model_items(data)
    if names is not None:
        models.append(p)
        index_of = {name: i for i, name in enumerate(names)}
if not models:
    problems.append("(b) no model file in the copy: the set-up went wrong")

def consecutive(v):
    return all(b == a + 1 for a, b in zip(v, v[1:]))

patterns, skipped, shoppers = [], 0, 0
for cid in ids:
    codes = sorted(items_of[cid])
    if len(codes) < 3:
        continue
    shoppers += 1
    for space in (row_id, index_of):
        v = sorted(space[c] for c in codes if c in space)
        if len(v) < 3:
            continue
        # runs of consecutive numbers are in every identity or order array
        # of the file (and whole catalog tables): not evidence of a shopper
        if consecutive(v):
            skipped += 1
            continue
        patterns.append((cid, "u32", struct.pack("<%dI" % len(v), *v)))
        patterns.append((cid, "i64", struct.pack("<%dq" % len(v), *v)))
        patterns.append((cid, "text", ",".join(map(str, v)).encode()))
    by_index = sorted((c for c in codes if c in index_of), key=index_of.get)
    if len(by_index) >= 3 and not consecutive([index_of[c] for c in by_index]):
        for sep in (b",", b"\0"):
            patterns.append((cid, "codes", sep.join(c.encode() for c in by_index)))
    for sep in (b",", b"\0"):
        patterns.append((cid, "codes", sep.join(c.encode() for c in codes)))
# One pass over each file finds every pattern (the same hits as searching for
# each of the ~8000 patterns in turn, several times faster): at every offset
# the next 16 bytes pick the patterns of 16 bytes or more that start so, the
# next 8 the shorter ones (every pattern has at least 8).
by8, by16 = {}, {}
for i, (_, _, pat) in enumerate(patterns):
    assert len(pat) >= 8, pat
    (by16 if len(pat) >= 16 else by8).setdefault(pat[:16 if len(pat) >= 16 else 8], []).append(i)
found = {}
for p, data in blobs.items():
    hit, get8, get16 = set(), by8.get, by16.get
    for o in range(len(data) - 7):
        c = get8(data[o:o + 8])
        if c is not None:
            hit.update(i for i in c if data.startswith(patterns[i][2], o))
        c = get16(data[o:o + 16])
        if c is not None:
            hit.update(i for i in c if data.startswith(patterns[i][2], o))
    for i in sorted(hit):
        cid, kind, _ = patterns[i]
        found.setdefault((os.path.relpath(p, copy), kind), []).append(cid)
for (p, kind), who in sorted(found.items()):
    problems.append("(b) %s holds the item lists of %d shoppers as %s (e.g. shopper %s)" % (p, len(who), kind, who[0]))
print("(b) searched %d files for the item lists of %d shoppers (%d patterns; %d lists of consecutive ids not searched)" % (
    len(files), shoppers, len(patterns), skipped))

# ---- (c) ids next to a field marker -------------------------------------------
# Stock codes are also 5-digit numbers (and the catalog is plaintext), so a
# bare number proves nothing: only an id right after a marker counts.
marker = re.compile(rb"(?i)(?:customer_?id|customer|user_?id|user|shopper|subject|uid|ext_?id)"
                    rb"[\"'\s:=,\x00]{1,4}\"?(\d{1,12})(?:\.0+)?(?![0-9])")
idset = set(ids)
for p, data in blobs.items():
    hits = sorted({m.group(1).decode() for m in marker.finditer(data)} & idset)
    if hits:
        problems.append("(c) %s names %d shoppers by CustomerID after a field marker (e.g. %s)" % (
            os.path.relpath(p, copy), len(hits), hits[0]))
print("(c) searched %d files for %d CustomerIDs after a field marker" % (len(files), len(ids)))

for p in problems:
    print("THIEF WINS: " + p)
sys.exit(1 if problems else 0)
PY

if [ "${1:-}" = "--check" ]; then
    [ -n "${2:-}" ] || fail "usage: thief.sh --check DATA_DIR [KEY_FILE]"
    exec python3 "$T/thief.py" "$2" "$SAMPLE" "${3:-}"
fi

[ -n "$PVG" ] || fail "PVG_CLI not set"
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
export XDG_CONFIG_HOME="$T/home/.config" # the key file's place: not the data dir
unset PRIVGUIDE_KEYS PRIVGUIDE_KEY_FILE PRIVGUIDE_MASTER_KEY
D=$T/data
timeout 60 "$PVG" init --data-dir "$D" >"$T/init.out" || fail "init"
KF=$("$PVG" keys where --data-dir "$D") || fail "keys where"
case "$KF" in "$XDG_CONFIG_HOME"/privguide/*.key) ;; *) fail "key file not in the config dir: $KF" ;; esac
grep -qF "$KF" "$T/init.out" || fail "init does not say where the key file went"
timeout 300 "$PVG" ingest --data-dir "$D" --format online-retail "$SAMPLE" >/dev/null || fail "ingest"
timeout 300 "$PVG" train --data-dir "$D" --model ials --out "$D/model.pvgm" >/dev/null || fail "train"
ADMIN=$(timeout 30 "$PVG" apikey create --role admin --rate 0 --data-dir "$D") || fail "apikey create"
TOK=$(timeout 30 "$PVG" token issue --user 17850 --data-dir "$D") || fail "token issue"

mkdir -p "$D/logs"
"$PVG" serve --data-dir "$D" --model "$D/model.pvgm" --port 0 --port-file "$T/port" \
    >"$D/logs/serve.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 1 600); do [ -s "$T/port" ] && break; kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
[ -s "$T/port" ] || fail "server did not start within 60 s: $(cat "$D/logs/serve.log")"
URL=http://127.0.0.1:$(cat "$T/port")
C="curl -s -m 10"
$C -H "Authorization: Bearer $TOK" "$URL/v1/users/17850/recommendations?k=5" | grep -q '"items"' ||
    fail "recommendations"
$C -H "Authorization: Bearer $TOK" "$URL/v1/users/17850/data" >/dev/null || fail "export"
$C -H "Authorization: Bearer $ADMIN" "$URL/v1/users/12583/recommendations?k=5" >/dev/null || fail "admin recs"
OUT=$($C -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d '{"events":[{"type":"view","user":"12583","item":"85123A","ts":1300000000}]}' "$URL/v1/events")
echo "$OUT" | grep -q '"stored"' || fail "post events: $OUT"

# an import with rejects (a bad CustomerID, a bad quantity), while serving
{
    echo "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    echo "581587,22613,PACK OF 20 SPACEBOY NAPKINS,12,2011-12-09 12:50:00,0.85,12680.0,France"
    echo "581588,22613,PACK OF 20 SPACEBOY NAPKINS,12,2011-12-09 12:50:00,0.85,alice.smith@example.com,France"
    echo "581589,22899,CHILDREN'S APRON DOLLY GIRL,lots,2011-12-09 12:50:00,2.10,12681.0,France"
} >"$T/more.csv"
timeout 60 "$PVG" ingest --data-dir "$D" --format online-retail "$T/more.csv" --json >"$T/more.json" ||
    fail "ingest with rejects"
grep -q '"rejected":2' "$T/more.json" || fail "expected 2 rejects: $(cat "$T/more.json")"
ls "$D"/rejects/*.rejects.tsv >/dev/null 2>&1 || fail "no reject file in the data dir"

# the theft: a copy of everything in the data dir, taken while the server runs
cp -a "$D" "$T/stolen"
ls "$T/stolen"/*-wal >/dev/null 2>&1 || fail "the copy holds no WAL file: the test would miss the logs"
kill -TERM "$SRV_PID"
wait "$SRV_PID" 2>/dev/null # its drain is bounded; never leave it running
SRV_PID=

python3 "$T/thief.py" "$T/stolen" "$SAMPLE" "$KF" || fail "the copy of the data dir gives the thief something"
echo "thief: nothing found"
