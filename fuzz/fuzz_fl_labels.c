/*
 * fuzz_fl_labels.c - libFuzzer harness for the category-label prior's parser
 * (pvg_fl_item_prior_from_labels, src/fl/fedcf.c): the input is one item's
 * label list per line ('\n'), at most 64 items, each item keeping its top 3.
 * A failure must say why and where (err.line is an item's index + 1, its
 * offset a byte inside that item's list); a success must be a well-formed
 * sparse prior: rows non-decreasing, at most top_l columns per row, each
 * column in range, not the row itself, ascending, each value in (0, 1].
 * Seeds: fuzz/corpus/fl_labels/.
 */
#include "fuzz_common.h"

#include <privguide/fl.h>

enum { MAX_ITEMS = 64, TOP = 3 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *t = fuzz_text(data, size);
    const char *items[MAX_ITEMS];
    size_t len[MAX_ITEMS];
    uint32_t n = 0;
    for (char *p = t; n < MAX_ITEMS;) {
        char *nl = strchr(p, '\n');
        items[n] = p;
        len[n] = nl ? (size_t)(nl - p) : strlen(p);
        n++;
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    pvg_fl_item_prior pr;
    size_t linked = 0;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_fl_item_prior_from_labels(items, n, TOP, &pr, &linked, &err);
    fuzz_check_error(st, &err);
    if (st != PVG_OK) {
        if (st == PVG_ERR_INVALID && (err.line < 1 || err.line > (long)n || err.offset < 0 ||
                                      (size_t)err.offset > len[err.line - 1])) {
            fprintf(stderr, "bad position: line %ld offset %lld (%u items)\n", err.line, err.offset,
                    n);
            abort();
        }
        if (pr.row_ptr || pr.col || pr.val) abort(); /* zeroed on error */
        free(t);
        return 0;
    }
    size_t with = 0;
    if (pr.n_items != n || pr.row_ptr[0] != 0) abort();
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a = pr.row_ptr[i], b = pr.row_ptr[i + 1];
        if (b < a || b - a > TOP) abort();
        with += b > a;
        for (uint64_t q = a; q < b; q++) {
            if (pr.col[q] >= n || pr.col[q] == i) abort();
            if (q > a && pr.col[q] <= pr.col[q - 1]) abort();
            if (!(pr.val[q] > 0.0f && pr.val[q] <= 1.0f + 1e-6f)) abort();
        }
    }
    if (with != linked) abort();
    pvg_fl_item_prior_free(&pr);
    free(t);
    return 0;
}
