/*
 * test_paillier_noinit.c - the pheutil JSON parsers in a process that never
 * called pvg_init (a program that only reads keys): they must initialise
 * what they need, not abort in sodium_malloc. One process per case, so
 * nothing else initialises the library first.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <privguide/paillier.h>

/* A seed of the fuzz corpus: selector byte, then the JSON text. */
static char *read_seed(const char *name)
{
    const char *src = getenv("PVG_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/fuzz/corpus/paillier/%s", src ? src : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 1 ? strdup(buf + 1) : NULL;
}

static void pub_from_jwk_before_init(void **state)
{
    (void)state;
    char *json = read_seed("pub_jwk");
    assert_non_null(json);
    pvg_paillier_pub *pub = NULL;
    pvg_error err;
    assert_int_equal(pvg_paillier_pub_from_jwk(json, "pub_jwk", &pub, &err), PVG_OK);
    assert_int_equal(pvg_paillier_pub_bits(pub), 2048);
    pvg_paillier_pub_free(pub);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pub_from_jwk_before_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
