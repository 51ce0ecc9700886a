/*
 * gmp.h (WebAssembly build only) - GMP's mpz interface for the browser
 * client, provided by mini-gmp (GMP 6.2.1's own subset, built by
 * wasm/build.sh from Debian's source). mini-gmp has every mpz function
 * src/dp/sample.c uses except the variadic mpz_inits / mpz_clears, which
 * are defined here.
 */
#ifndef PVG_WASM_GMP_H
#define PVG_WASM_GMP_H

#include "mini-gmp.h"

#include <stdarg.h>
#include <stddef.h>

static inline void pvg_wasm_mpz_inits(mpz_ptr z, ...)
{
    va_list ap;
    va_start(ap, z);
    for (; z; z = va_arg(ap, mpz_ptr))
        mpz_init(z);
    va_end(ap);
}

static inline void pvg_wasm_mpz_clears(mpz_ptr z, ...)
{
    va_list ap;
    va_start(ap, z);
    for (; z; z = va_arg(ap, mpz_ptr))
        mpz_clear(z);
    va_end(ap);
}

#define mpz_inits pvg_wasm_mpz_inits
#define mpz_clears pvg_wasm_mpz_clears

#endif
