/*
 * fuzz_content.c - libFuzzer harness for the catalogue-text similarity
 * (pvg_content_similarity, src/model/content.c), the titles DP-EASE's prior
 * is built from. The input's lines are the titles (an empty line: an item
 * without text; at most 64 items); the result must be a symmetric matrix
 * in [0, 1] with a zero diagonal, and the linked count at most the items.
 * Seeds: fuzz/corpus/content/.
 */
#include "fuzz_common.h"

#include "model/model_internal.h"

#include <math.h>

#define MAX_ITEMS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    const char *titles[MAX_ITEMS];
    size_t n = 0;
    for (char *line = text, *next; line && n < MAX_ITEMS; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        titles[n++] = *line ? line : NULL;
    }
    float *S = malloc((n ? n * n : 1) * sizeof *S);
    if (!S) abort();
    size_t linked = 0;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_content_similarity(titles, n, S, &linked, &err);
    if (st != PVG_OK && st != PVG_ERR_NOMEM) abort();
    if (st == PVG_OK) {
        if (linked > n) abort();
        for (size_t i = 0; i < n; i++) {
            if (S[i * n + i] != 0) abort();
            for (size_t j = 0; j < n; j++) {
                float v = S[i * n + j];
                if (!(v >= 0 && v <= 1.0001f) || fabsf(v - S[j * n + i]) > 1e-5f) abort();
            }
        }
    }
    free(S);
    free(text);
    return 0;
}
