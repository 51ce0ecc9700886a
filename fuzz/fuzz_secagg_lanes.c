/*
 * fuzz_secagg_lanes.c - fuzz_secagg.c's harness for the modes of wire
 * version 4 (PVG_SECAGG_WIRE_VERSION_LANES): the input's first byte picks the session's mode (byte
 * % 4: 16-bit words with ChaCha20, ChaCha8 or ChaCha12 masks, or 32-bit words with ChaCha8 masks),
 * the rest is fuzz_secagg's program. An honest session must still sum exactly (mod 2^16 for a
 * 16-bit lane). Seeds: fuzz/corpus/secagg_lanes/ (fuzz_secagg's seeds behind each mode byte).
 */
#define FUZZ_SECAGG_LANES 1
#include "fuzz_secagg.c"
