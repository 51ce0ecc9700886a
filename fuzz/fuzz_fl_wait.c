/*
 * fuzz_fl_wait.c - libFuzzer harness for the long poll's query value
 * GET /v1/fl/state?wait=VERSION.ROUND.PHASE.MS (pvg_srv_fl_wait_parse of
 * src/server/fl_route.c, docs/fl-protocol.md).
 *
 * Two oracles. The input as a string (cut at its first NUL, as the query
 * string reaches the parser): accepted only in its one canonical form
 * ("1.%llu.%d.%u" printed back equals it, so no leading zero, sign, space or
 * trailing byte passes), and a refusal names a byte offset inside the value
 * and what was expected there. The input's first 13 bytes as numbers
 * (round, phase, ms) printed canonically: always accepted, with those values
 * (so a field at its limit, 2^64-1 or 2^32-1, is never refused).
 * Seeds: fuzz/corpus/fl_wait/.
 */
#include "fuzz_common.h"

#include "server/server_internal.h"

#include <inttypes.h>

static void check_canonical(uint64_t round, int phase, uint32_t ms)
{
    char v[64];
    snprintf(v, sizeof v, "1.%" PRIu64 ".%d.%" PRIu32, round, phase, ms);
    uint64_t r = 0;
    int p = -1;
    uint32_t m = 0;
    size_t at = 0;
    const char *what = NULL, *then = NULL;
    if (pvg_srv_fl_wait_parse(v, &r, &p, &m, &at, &what, &then) != 0) abort();
    if (r != round || p != phase || m != ms) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = fuzz_text(data, size);
    uint64_t round = 0;
    int phase = -1;
    uint32_t ms = 0;
    size_t at = (size_t)-1;
    const char *what = NULL, *then = NULL;
    if (pvg_srv_fl_wait_parse(v, &round, &phase, &ms, &at, &what, &then) == 0) {
        char back[64];
        snprintf(back, sizeof back, "1.%" PRIu64 ".%d.%" PRIu32, round, phase, ms);
        if (phase < 0 || phase > 7 || strcmp(back, v) != 0) abort();
    } else if (at > strlen(v) || !what || !then || !*what) {
        abort();
    }
    free(v);
    if (size >= 13) {
        uint64_t r;
        uint32_t m;
        memcpy(&r, data, 8);
        memcpy(&m, data + 9, 4);
        check_canonical(r, data[8] & 7, m);
    }
    return 0;
}
