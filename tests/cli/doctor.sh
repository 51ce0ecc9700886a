#!/usr/bin/env bash
# doctor.sh - `privguide doctor` names each planted misconfiguration, one at
# a time, with its fix, exits 1 for it, and exits 0 on the healthy
# deployment: no budget, a data dir open to others, a database file open to
# others, a key file open to others, a key file inside the data dir, the
# model missing, the port taken by something that is not privguide, too
# little free disk. privguide serving on the port is fine.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
SRC=${PVG_SOURCE_DIR:?}
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
T=$(mktemp -d /tmp/pvg_doctor.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/out.json" ] && cat "$T/out.json"; exit 1; }
wait_for() {
    local limit=$1; shift
    local t0; t0=$(date +%s%N)
    until "$@"; do
        [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $((limit * 1000)) ] || return 1
        sleep 0.05
    done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
D=$T/data
KEY=$T/keys/store.key
mkdir -p "$T/keys"
timeout 60 "$PVG" init --data-dir "$D" --key-file "$KEY" >/dev/null || fail "init"
export PRIVGUIDE_KEY_FILE=$KEY
timeout 120 "$PVG" ingest --data-dir "$D" --format online-retail "$SRC/data/online-retail-sample.csv.gz" >/dev/null 2>&1 || fail "ingest"
timeout 120 "$PVG" train --model popularity --data-dir "$D" --out "$D/model.pvgm" --json >/dev/null || fail "train"
PORT=$(free_port)

# doctor EXPECT [flags...]: EXPECT is "" (healthy: exit 0, no problem) or the
# one check that must be a problem (exit 1, exactly that one, with a fix)
doctor() {
    local want=$1; shift
    "$PVG" doctor --data-dir "$D" --port "$PORT" --json "$@" >"$T/out.json"
    local rc=$?
    python3 - "$T/out.json" "$want" "$rc" <<'PY' || fail "doctor, expecting '${want:-healthy}' (flags: $*)"
import json, sys
d = json.load(open(sys.argv[1])); want = sys.argv[2]; rc = int(sys.argv[3])
bad = [f for f in d["findings"] if not f["ok"]]
checks = {f["check"] for f in d["findings"]}
if checks != {"data_dir", "data_files", "key_file", "budget", "model", "port", "disk"}:
    print("checks run:", sorted(checks)); sys.exit(1)
if not want:
    if rc != 0 or bad: print("healthy deployment: rc", rc, bad); sys.exit(1)
    sys.exit(0)
if rc != 1: print("exit status", rc, "want 1"); sys.exit(1)
if [f["check"] for f in bad] != [want]: print("problems", [f["check"] for f in bad], "want only", want); sys.exit(1)
if not bad[0]["fix"]: print("no fix given"); sys.exit(1)
print("  planted %-10s -> %s | fix: %s" % (want, bad[0]["what"], bad[0]["fix"]))
PY
}

echo "doctor names each planted misconfiguration:"
# 1. no budget set (a fresh store)
doctor budget
timeout 30 "$PVG" budget set --epsilon 4 --delta 1e-6 --data-dir "$D" >/dev/null || fail "budget set"
doctor ""
# 2. the data dir open to others
chmod 755 "$D"; doctor data_dir; chmod 700 "$D"
# 2b. (as root) the data dir owned by another user than the service's
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    chown nobody "$D"; doctor data_dir; chown root "$D"
fi
# 3. a database open to others
chmod 644 "$D/keystore.db"; doctor data_files; chmod 600 "$D/keystore.db"
# 4. the key file open to others
chmod 640 "$KEY"; doctor key_file; chmod 600 "$KEY"
# 5. the key file inside the data dir
cp "$KEY" "$D/store.key"
doctor key_file --key-file "$D/store.key"
grep -q "inside the data dir" "$T/out.json" || fail "key file inside the data dir: not named as such"
rm -f "$D/store.key"
# 6. the model missing
mv "$D/model.pvgm" "$T/model.pvgm"; doctor model; mv "$T/model.pvgm" "$D/model.pvgm"
# 7. the port taken by something else
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); print("up", flush=True)
while True:
    c, _ = s.accept(); c.recv(1024); c.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello\n"); c.close()
' "$PORT" >"$T/squatter.out" 2>&1 & PIDS+=($!)
SQ=${PIDS[-1]}
wait_for 10 grep -q up "$T/squatter.out" || fail "the port squatter did not start"
doctor port
kill -TERM "$SQ"; wait "$SQ" 2>/dev/null
# ... and privguide serving there is fine
"$PVG" serve --data-dir "$D" --port "$PORT" --port-file "$T/port" --drain-ms 0 >"$T/serve.log" 2>&1 & PIDS+=($!)
wait_for 20 test -s "$T/port" || fail "serve did not start"
doctor ""
grep -q "privguide is serving" "$T/out.json" || fail "doctor did not see privguide serving"
# 8. too little free disk for what the operator asks
doctor disk --min-free-mb 100000000
# text output names the fix too
"$PVG" doctor --data-dir "$D" --port "$PORT" --min-free-mb 100000000 >"$T/out.txt"; [ $? = 1 ] || fail "text mode exit status"
grep -q "fix:" "$T/out.txt" || fail "text output without a fix line"
# a fix is a command to paste: a hostile file name in it is quoted, never run
mkdir -p "$D/models"
BAD="$D/models/x;touch \${HOME}pwned;#"
touch "$BAD" && chmod 644 "$BAD"
"$PVG" doctor --data-dir "$D" --port "$PORT" >"$T/out.txt" 2>&1
grep -F -q "chmod 600 '$BAD'" "$T/out.txt" || fail "the fix must quote the file name: $(grep -F 'pwned' "$T/out.txt")"
rm -f "$BAD"
echo "doctor: ok (8 misconfigurations found, each alone; healthy and serving deployments pass)"
