#!/usr/bin/env bash
# build.sh - builds the WebAssembly federated client (wasm/README in
# docs/federated.md, "The browser client") with Debian's emscripten.
#
#   wasm/build.sh SOURCE_DIR OUT_DIR
#
# Writes OUT_DIR/pvg_fl_client.js and .wasm. The client core is the same C
# source as the native client (src/fl, src/crypto, src/dp, src/core); the
# cryptography is libsodium 1.0.18 and the exact sampler's integers are
# mini-gmp (GMP 6.2.1), both built from Debian's source tarballs (the same
# versions as Debian's libsodium-dev and libgmp-dev, so the primitives are
# the same code as the native client's). The build downloads nothing: the
# set-up step (`PVG_WASM=1 scripts/install-deps`, which runs
# scripts/fetch-wasm-sources) puts the tarballs of wasm/deps.txt in
# $PVG_WASM_DEPS_DIR (default ~/.cache/privguide/wasm-sources); they are
# checked against the SHA-256 of Debian's .dsc files, and the dependency
# objects are cached in OUT_DIR/deps: a rebuild compiles only privguide's
# files.
#
# Exit 0 with OUT_DIR/UNAVAILABLE (the reason) when emcc or the tarballs
# cannot be had: the browser test then skips with that reason.
set -euo pipefail
SRC=$(cd "$1" && pwd)
OUT=$2
mkdir -p "$OUT/deps"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/UNAVAILABLE"
unavailable() {
    echo "$*" >"$OUT/UNAVAILABLE"
    echo "wasm/build.sh: $*" >&2
    exit 0
}
# Debian's emscripten finds its JavaScript helpers (acorn) where Debian's nodejs
# looks; a Node.js from elsewhere (e.g. NodeSource's) needs the path
export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}
command -v emcc >/dev/null 2>&1 || unavailable "emcc is not installed (apt-get install emscripten)"

SODIUM_TGZ=libsodium_1.0.18.orig.tar.gz
GMP_TXZ=gmp_6.2.1+dfsg1.orig.tar.xz
SOURCES=${PVG_WASM_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/privguide/wasm-sources}

# the tarballs come from the set-up step (scripts/fetch-wasm-sources, run by
# `PVG_WASM=1 scripts/install-deps`); the build only copies and checks them
fetch() { # name
    local f=$OUT/deps/$1 sha
    sha=$(awk -v n="$1" '$1 == n { print $2 }' "$SRC/wasm/deps.txt")
    if [ ! -f "$f" ]; then
        [ -f "$SOURCES/$1" ] || unavailable "$1 is not in $SOURCES (run: PVG_WASM=1 scripts/install-deps)"
        cp "$SOURCES/$1" "$f"
    fi
    echo "$sha  $f" | sha256sum -c --quiet - >/dev/null 2>&1 || {
        rm -f "$f"
        unavailable "$1: SHA-256 is not the one wasm/deps.txt gives"
    }
}

DEPS=$OUT/deps
if [ ! -f "$DEPS/deps.stamp" ]; then
    fetch "$SODIUM_TGZ"
    fetch "$GMP_TXZ"
    rm -rf "$DEPS/libsodium-1.0.18" "$DEPS/gmp-6.2.1" "$DEPS/obj"
    tar -xzf "$DEPS/$SODIUM_TGZ" -C "$DEPS"
    tar -xJf "$DEPS/$GMP_TXZ" -C "$DEPS" gmp-6.2.1/mini-gmp/mini-gmp.c gmp-6.2.1/mini-gmp/mini-gmp.h
    S=$DEPS/libsodium-1.0.18/src/libsodium
    sed -e 's/@VERSION@/1.0.18/' -e 's/@SODIUM_LIBRARY_VERSION_MAJOR@/10/' \
        -e 's/@SODIUM_LIBRARY_VERSION_MINOR@/3/' -e 's/@SODIUM_LIBRARY_MINIMAL_DEF@//' \
        "$S/include/sodium/version.h.in" >"$S/include/sodium/version.h"
    mkdir -p "$DEPS/obj"
    # the primitives privguide's client uses (and what sodium_init() picks
    # implementations for): X25519, XChaCha20-Poly1305, ChaCha20, BLAKE2b,
    # the BLAKE2b KDF, randombytes (crypto.getRandomValues in a browser)
    SOD_FILES="sodium/core.c sodium/utils.c sodium/runtime.c sodium/codecs.c sodium/version.c
      randombytes/randombytes.c crypto_verify/sodium/verify.c
      crypto_generichash/crypto_generichash.c crypto_generichash/blake2b/generichash_blake2.c
      crypto_generichash/blake2b/ref/blake2b-compress-ref.c
      crypto_generichash/blake2b/ref/blake2b-ref.c
      crypto_generichash/blake2b/ref/generichash_blake2b.c
      crypto_kdf/crypto_kdf.c crypto_kdf/blake2b/kdf_blake2b.c
      crypto_scalarmult/crypto_scalarmult.c crypto_scalarmult/curve25519/scalarmult_curve25519.c
      crypto_scalarmult/curve25519/ref10/x25519_ref10.c crypto_core/ed25519/ref10/ed25519_ref10.c
      crypto_aead/xchacha20poly1305/sodium/aead_xchacha20poly1305.c
      crypto_core/hchacha20/core_hchacha20.c
      crypto_stream/chacha20/stream_chacha20.c crypto_stream/chacha20/ref/chacha20_ref.c
      crypto_stream/salsa20/stream_salsa20.c crypto_stream/salsa20/ref/salsa20_ref.c
      crypto_core/salsa/ref/core_salsa_ref.c
      crypto_onetimeauth/crypto_onetimeauth.c crypto_onetimeauth/poly1305/onetimeauth_poly1305.c
      crypto_onetimeauth/poly1305/donna/poly1305_donna.c
      crypto_pwhash/argon2/argon2-core.c crypto_pwhash/argon2/argon2-fill-block-ref.c
      crypto_pwhash/argon2/blake2b-long.c"
    i=0
    pids=()
    for f in $SOD_FILES; do
        o=$DEPS/obj/sodium_$(echo "$f" | tr '/.' '__').o
        emcc -O2 -DCONFIGURED=1 -DNATIVE_LITTLE_ENDIAN=1 -DHAVE_WEAK_SYMBOLS=1 \
            -I"$S/include/sodium" -I"$S/include" -w -c "$S/$f" -o "$o" &
        pids+=($!)
        i=$((i + 1))
        if [ $((i % 2)) -eq 0 ]; then for p in "${pids[@]}"; do wait "$p"; done; pids=(); fi
    done
    for p in "${pids[@]}"; do wait "$p"; done
    emcc -O2 -w -c "$DEPS/gmp-6.2.1/mini-gmp/mini-gmp.c" -o "$DEPS/obj/mini-gmp.o"
    touch "$DEPS/deps.stamp"
fi

# privguide's client core: the same files as the native library
GEN=$OUT/gen
mkdir -p "$GEN"
sed -e 's/@PROJECT_VERSION@/wasm/' "$SRC/src/core/version.h.in" >"$GEN/pvg_version.h.new"
cmp -s "$GEN/pvg_version.h.new" "$GEN/pvg_version.h" || mv "$GEN/pvg_version.h.new" "$GEN/pvg_version.h"
PVG_FILES=$(grep -v '^#' "$SRC/wasm/sources.txt")
objs=()
for f in $PVG_FILES; do objs+=("$SRC/$f"); done
emcc -O2 -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -D_POSIX_C_SOURCE=200809L \
    -D_DEFAULT_SOURCE -DPVG_FL_CLIENT_NO_HTTP=1 \
    -I"$SRC/include" -I"$SRC/src" -I"$SRC/wasm/include" -I"$GEN" \
    -I"$DEPS/libsodium-1.0.18/src/libsodium/include" -I"$DEPS/gmp-6.2.1/mini-gmp" \
    "${objs[@]}" "$DEPS"/obj/*.o \
    -sMODULARIZE=1 -sEXPORT_NAME=PvgFlWasm -sALLOW_MEMORY_GROWTH=1 -sENVIRONMENT=web,node \
    -sEXPORTED_RUNTIME_METHODS=UTF8ToString -sEXPORTED_FUNCTIONS=_malloc,_free \
    -o "$OUT/pvg_fl_client.js"
