/*
 * fuzz_policy.c - libFuzzer harness for the retention policy parser
 * (pvg_policy_parse, src/store/policy.c). The input is the policy file.
 * Seeds: fuzz/corpus/policy/ (the default policy and variants).
 */
#include "fuzz_common.h"

#include "store/store_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    pvg_policy pol;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_policy_parse(text, "fuzz", &pol, &err);
    fuzz_check_error(st, &err);
    if (st == PVG_OK) pvg_policy_free(&pol);
    free(text);
    return 0;
}
