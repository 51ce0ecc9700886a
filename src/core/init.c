/*
 * init.c - one-time library initialisation and the version string.
 *
 * libsodium's sodium_init() is itself thread-safe and idempotent; we only
 * remember a failure so that later constructors can report it.
 */
#include <privguide/common.h>

#include <pthread.h>
#include <sodium.h>

#include "pvg_version.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_failed; /* written once under pthread_once, then read-only */

static void init_run(void)
{
    if (sodium_init() < 0) init_failed = 1;
}

pvg_status pvg_init(void)
{
    pthread_once(&init_once, init_run);
    return init_failed ? PVG_ERR_INTERNAL : PVG_OK;
}

const char *pvg_version(void)
{
    return PVG_VERSION_STRING;
}
