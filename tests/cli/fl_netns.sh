#!/usr/bin/env bash
# fl_netns.sh - federated training between separate hosts: `privguide fl serve`
# in one network namespace, three `fl client` processes each in its own
# namespace, joined to the server's by a veth pair (10.77.N.2 -> 10.77.N.1),
# with no loopback on the path. One round of federated iALS: it ends done,
# every phase takes all three messages and all three clients are in the sum
# (as in fl_simulate.sh); each client counts its round as applied.
# Skipped (exit 77) when network namespaces cannot be created (not root, no
# CAP_NET_ADMIN, no `ip`).
set -u
P=${PVG_CLI:?PVG_CLI not set}
command -v ip >/dev/null || { echo "SKIP: no ip(8) to create network namespaces"; exit 77; }
N=pvf$$ # namespace and interface names, unique per run (ctest -j)
T=$(mktemp -d /tmp/pvg-fl-netns-XXXXXX)
SRV_PID=
NS_MADE=()
cleanup() {
  [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null
  for ns in "${NS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/serve.err" ] && sed 's/^/  serve: /' "$T/serve.err" >&2; exit 1; }

if ! ip netns add "${N}s" 2>"$T/ns.err"; then
  echo "SKIP: cannot create a network namespace: $(cat "$T/ns.err")"
  exit 77
fi
NS_MADE+=("${N}s")
for c in 1 2 3; do
  ip netns add "${N}c$c" || fail "netns ${N}c$c"
  NS_MADE+=("${N}c$c")
  ip link add "${N}a$c" type veth peer name "${N}b$c" || fail "veth $c"
  ip link set "${N}a$c" netns "${N}s" || fail "veth $c to the server's namespace"
  ip link set "${N}b$c" netns "${N}c$c" || fail "veth $c to client $c's namespace"
  ip -n "${N}s" addr add "10.77.$c.1/24" dev "${N}a$c" || fail "address 10.77.$c.1"
  ip -n "${N}c$c" addr add "10.77.$c.2/24" dev "${N}b$c" || fail "address 10.77.$c.2"
  ip -n "${N}s" link set "${N}a$c" up || fail "link up"
  ip -n "${N}c$c" link set "${N}b$c" up || fail "link up"
done
# loopback stays down in every namespace: nothing can take a 127.0.0.1 path

# 3 shoppers, 30 items, 8 purchases each
awk 'BEGIN { srand(5); for (u = 0; u < 3; u++) for (e = 0; e < 8; e++)
  printf "{\"type\":\"purchase\",\"user\":\"u%d\",\"item\":\"i%d\",\"ts\":%d}\n", u, int(rand() * 30), 1000 + e }' >"$T/ev.jsonl"
seq 0 29 | sed 's/^/i/' >"$T/items.txt"
D=$T/data
export PRIVGUIDE_KEY_FILE=$T/keys
timeout 60 "$P" init --data-dir "$D" >/dev/null || fail "init"
for u in 1 2 3; do
  TOK[$u]=$(timeout 30 "$P" token issue --user "u$((u - 1))" --data-dir "$D") || fail "token issue"
  grep "\"u$((u - 1))\"" "$T/ev.jsonl" >"$T/u$u.jsonl"
done

ip netns exec "${N}s" "$P" fl serve --data-dir "$D" --items "$T/items.txt" --bind 0.0.0.0 --port 0 \
  --factors 4 --rounds 1 --min-clients 3 --phase-seconds 60 >"$T/rounds.jsonl" 2>"$T/serve.err" &
SRV_PID=$!
PORT=
for _ in $(seq 1 300); do
  PORT=$(sed -n 's|.*federated training on http://[0-9.]*:\([0-9]*\)/v1/fl/.*|\1|p' "$T/serve.err")
  [ -n "$PORT" ] && break
  kill -0 "$SRV_PID" 2>/dev/null || fail "fl serve exited"
  sleep 0.1
done
[ -n "$PORT" ] || fail "the server did not start"

for c in 1 2 3; do
  ip netns exec "${N}c$c" "$P" fl client --server "http://10.77.$c.1:$PORT" --token "${TOK[$c]}" \
    --data "$T/u$c.jsonl" --items "$T/items.txt" --rounds 1 --timeout 120 --allow-no-dp \
    >"$T/c$c.json" 2>"$T/c$c.err" &
  CP[$c]=$!
done
for c in 1 2 3; do wait "${CP[$c]}" || { cat "$T/c$c.err" "$T/c$c.json" >&2; fail "client $c"; }; done
for c in 1 2 3; do
  [ "$(jq '.[0].rounds' "$T/c$c.json")" -eq 1 ] || fail "client $c rounds: $(cat "$T/c$c.json")"
done
wait "$SRV_PID" || fail "fl serve exit status"
SRV_PID=
# every client saw the finished state before the server stopped (none found it gone)
grep -q "fl serve: finished; 3 clients told, 0 still polling" "$T/serve.err" ||
  fail "the server stopped under polling clients: $(cat "$T/serve.err")"
R=$(head -1 "$T/rounds.jsonl")
[ "$(echo "$R" | jq -r .phase)" = done ] || fail "round not done: $R"
[ "$(echo "$R" | jq .survivors)" -eq 3 ] || fail "all 3 should be in the sum: $R"
[ "$(echo "$R" | jq -c .arrived)" = "[3,3,3,3]" ] || fail "every phase should take 3 messages: $R"
[ "$(echo "$R" | jq '.t > (.k + 1) / 2')" = true ] || fail "threshold not a majority: $R"
# a client in one namespace cannot reach another client's namespace (separate hosts)
ip netns exec "${N}c1" curl -s -m 2 -o /dev/null "http://10.77.2.2:$PORT/" &&
  fail "client 1 reached client 2's address"
echo ok
