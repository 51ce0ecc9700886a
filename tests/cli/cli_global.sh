#!/usr/bin/env bash
# cli_global.sh - global options work before the command as well as after
# it (as in git and docker): `privguide --data-dir DIR init`,
# `privguide --data-dir=DIR user consent ID ...`; a global option without a
# command is a usage error.
set -u
PVG=${PVG_CLI:?PVG_CLI is not set}
T=$(mktemp -d /tmp/pvg_cli_global.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
timeout 60 "$PVG" --data-dir "$T/d" init >"$T/out" 2>&1 || fail "--data-dir before init: $(cat "$T/out")"
[ -f "$T/d/privguide.db" ] || fail "init before the command did not create the store"
timeout 60 "$PVG" --data-dir="$T/d" user consent 4242 --personalization off >"$T/out" 2>&1 ||
    fail "--data-dir= before a two-word command: $(cat "$T/out")"
timeout 60 "$PVG" user consent 4242 --data-dir "$T/d" --analytics off >/dev/null 2>&1 ||
    fail "--data-dir after the command"
timeout 30 "$PVG" --data-dir "$T/d" >/dev/null 2>&1
[ $? -eq 2 ] || fail "a global option without a command must be a usage error (exit 2)"
timeout 30 "$PVG" --data-dir >/dev/null 2>&1
[ $? -eq 2 ] || fail "--data-dir without a value must be a usage error (exit 2)"
echo "global options: ok"
