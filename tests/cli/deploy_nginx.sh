#!/usr/bin/env bash
# deploy_nginx.sh - deploy/nginx-privguide.conf in front of `privguide serve`:
# a throwaway nginx (its own prefix, conf, pid and logs in a temp dir, a
# self-signed certificate, a free loopback port, run as the current user)
# proxies TLS to serve on loopback; the shop page, the portal, /healthz and
# authenticated API calls are checked through it with curl. Both processes
# are stopped on every exit path. Also verifies deploy/privguide.service
# with systemd-analyze when that is present.
set -u
SRC=${PVG_SOURCE_DIR:?}
PVG=${PVG_CLI:?PVG_CLI is not set}
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
command -v openssl >/dev/null || { echo "SKIP: openssl is not installed"; exit 77; }
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
if [ -z "$NGINX" ]; then
    # scripts/install-deps lists nginx-light; try it once, as make test does
    if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
        SUDO=; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1
        NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
    fi
    [ -n "$NGINX" ] || { echo "SKIP: nginx is not installed and could not be installed (apt-get install nginx-light; see scripts/install-deps)"; exit 77; }
fi

T=$(mktemp -d /tmp/pvg_deploy_nginx.XXXXXX)
chmod 755 "$T"
SRV_PID= NGX_PID=
cleanup() {
    [ -n "$NGX_PID" ] && kill -TERM "$NGX_PID" 2>/dev/null && wait "$NGX_PID" 2>/dev/null
    [ -n "$SRV_PID" ] && kill -TERM "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    [ -f "$T/serve.log" ] && sed 's/^/  serve: /' "$T/serve.log"
    [ -f "$T/nginx/error.log" ] && sed 's/^/  nginx: /' "$T/nginx/error.log"
    exit 1
}
# polls "$@" until it succeeds, for at most $1 seconds
wait_for() {
    local limit=$1; shift
    local t0; t0=$(date +%s%N)
    until "$@"; do
        [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $((limit * 1000)) ] || return 1
        sleep 0.05
    done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- privguide: a store with the sample, an admin key, a shopper token ----
D=$T/data
timeout 60 "$PVG" init --data-dir "$D" >/dev/null || fail "init"
timeout 120 "$PVG" ingest --data-dir "$D" --format online-retail "$SRC/data/online-retail-sample.csv.gz" >/dev/null 2>&1 ||
    fail "ingest the sample"
ADMIN=$(timeout 30 "$PVG" apikey create --role admin --rate 0 --data-dir "$D") || fail "apikey create"
USER_ID=17850 # a shopper of the sample
TOK=$(timeout 30 "$PVG" token issue --user "$USER_ID" --data-dir "$D") || fail "token issue"

"$PVG" serve --data-dir "$D" --bind 127.0.0.1 --port 0 --port-file "$T/port" >"$T/serve.log" 2>&1 &
SRV_PID=$!
wait_for 20 test -s "$T/port" || fail "serve did not start within 20 s"
UP=$(cat "$T/port")

# ---- nginx: the example config with test paths and ports ----
N=$T/nginx
mkdir -p "$N/logs" "$N/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$N/privkey.pem" -out "$N/fullchain.pem" >/dev/null 2>&1 || fail "openssl: self-signed certificate"
USER_LINE=
[ "$(id -u)" = 0 ] && USER_LINE="user $(id -un) $(id -gn);"
started=0
for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    # the shipped example, pointed at the test's upstream, port, cert and log
    sed -e "s#127.0.0.1:8080#127.0.0.1:$UP#" \
        -e "s#listen 443 ssl http2;#listen 127.0.0.1:$PORT ssl http2;#" \
        -e "/listen \[::\]/d" -e "/listen 80;/d" -e "/return 301/d" \
        -e "s#/etc/ssl/privguide#$N#" -e "s#/var/log/nginx/privguide.log#$N/access.log#" \
        "$SRC/deploy/nginx-privguide.conf" >"$N/privguide.conf"
    grep -q "listen 127.0.0.1:$PORT ssl" "$N/privguide.conf" || fail "the example config no longer has 'listen 443 ssl http2;'"
    grep -q "127.0.0.1:$UP" "$N/privguide.conf" || fail "the example config no longer proxies to 127.0.0.1:8080"
    cat >"$N/nginx.conf" <<CONF
$USER_LINE
worker_processes 1;
pid $N/nginx.pid;
error_log $N/error.log;
events { worker_connections 64; }
http {
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
    access_log off;
    include $N/privguide.conf;
}
CONF
    "$NGINX" -t -p "$N" -c "$N/nginx.conf" -e "$N/error.log" >"$N/test.log" 2>&1 \
        || { cat "$N/test.log"; fail "nginx -t rejects the example config"; }
    "$NGINX" -p "$N" -c "$N/nginx.conf" -e "$N/error.log" -g 'daemon off;' >>"$N/error.log" 2>&1 &
    NGX_PID=$!
    up() { curl -sk -m 2 -o /dev/null "https://127.0.0.1:$PORT/healthz"; }
    if wait_for 15 up; then started=1; break; fi
    kill -0 "$NGX_PID" 2>/dev/null && kill -TERM "$NGX_PID"
    wait "$NGX_PID" 2>/dev/null
    NGX_PID=
    grep -q "Address already in use" "$N/error.log" || fail "nginx did not start"
done
[ $started = 1 ] || fail "nginx: no free port after 5 attempts"
URL=https://localhost:$PORT
C=(curl -s -m 10 --cacert "$N/fullchain.pem" --resolve "localhost:$PORT:127.0.0.1")

# ---- checks through the proxy, over verified TLS ----
code=$("${C[@]}" -o "$T/shop.html" -w '%{http_code}' "$URL/shop")
[ "$code" = 200 ] || fail "/shop through nginx: HTTP $code"
grep -q "shop demo" "$T/shop.html" || fail "/shop is not the shop page"
code=$("${C[@]}" -o "$T/portal.html" -w '%{http_code}' "$URL/portal")
[ "$code" = 200 ] || fail "/portal through nginx: HTTP $code"
grep -q "privacy portal" "$T/portal.html" || fail "/portal is not the portal page"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/static/app.css")" = 200 ] || fail "page asset through nginx"
"${C[@]}" "$URL/healthz" | grep -q '"status":"ok"' || fail "/healthz through nginx"
"${C[@]}" -D "$T/h" -o /dev/null "$URL/healthz"
grep -qi '^strict-transport-security:' "$T/h" || fail "no HSTS header from the proxy"
# authenticated calls: the admin key, then the shopper's own token
OUT=$("${C[@]}" -H "Authorization: Bearer $ADMIN" "$URL/v1/whoami")
echo "$OUT" | grep -q '"role":"admin"' || fail "whoami with the admin key through nginx: $OUT"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/v1/users/$USER_ID/consent")" = 401 ] || fail "no credential through nginx must be 401"
OUT=$("${C[@]}" -X PUT -H "Authorization: Bearer $TOK" -d '{"personalization":true,"analytics":false}' "$URL/v1/users/$USER_ID/consent")
echo "$OUT" | grep -q '"analytics":false' || fail "consent PUT through nginx: $OUT"
code=$("${C[@]}" -o "$T/export.json" -w '%{http_code}' -H "Authorization: Bearer $TOK" "$URL/v1/users/$USER_ID/data")
[ "$code" = 200 ] || fail "export through nginx: HTTP $code"
grep -q "\"$USER_ID\"" "$T/export.json" || fail "export body: $(head -c 300 "$T/export.json")"
"${C[@]}" "$URL/v1/openapi.json" | grep -q '"openapi"' || fail "openapi through nginx"
# the body limit is enforced at the proxy: 2 MiB never reaches serve
head -c $((2 << 20)) /dev/zero | tr '\0' 'x' >"$T/big"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $ADMIN" --data-binary @"$T/big" "$URL/v1/events")" = 413 ] \
    || fail "a 2 MiB body must be refused by the proxy (413)"
# plain HTTP on the TLS port is refused
[ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" = 400 ] || fail "plain HTTP on the TLS port"
# the access log keeps no user ids or paths
[ -s "$N/access.log" ] || fail "nginx wrote no access log"
grep -q "$USER_ID" "$N/access.log" && fail "the access log records user ids"
grep -q "/v1/" "$N/access.log" && fail "the access log records request paths"

# ---- the systemd unit parses (when systemd-analyze is here) ----
if command -v systemd-analyze >/dev/null; then
    sed "s#/usr/local/bin/privguide#$(readlink -f "$PVG")#" "$SRC/deploy/privguide.service" >"$T/privguide.service"
    systemd-analyze verify "$T/privguide.service" >"$T/verify.log" 2>&1 || { cat "$T/verify.log"; fail "systemd-analyze verify deploy/privguide.service"; }
    grep -v -e "^$" "$T/verify.log" | grep -i -e "unknown" -e "ignoring" && fail "systemd-analyze: unknown settings in deploy/privguide.service"
    echo "systemd unit: systemd-analyze verify ok"
else
    echo "systemd unit: not verified (no systemd-analyze)"
fi

kill -TERM "$NGX_PID"; wait "$NGX_PID"; NGX_PID=
kill -TERM "$SRV_PID"; wait "$SRV_PID" || fail "serve did not exit 0 on SIGTERM"; SRV_PID=
echo "deploy_nginx: ok (nginx $("$NGINX" -v 2>&1 | sed 's#.*/##'), TLS on 127.0.0.1:$PORT -> serve on 127.0.0.1:$UP)"
