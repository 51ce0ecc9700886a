/*
 * error.c - result-code names and the optional pvg_error struct.
 */
#include <privguide/common.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *pvg_strerror(pvg_status code)
{
    switch (code) {
    case PVG_OK:
        return "success";
    case PVG_ERR_INVALID:
        return "invalid input";
    case PVG_ERR_NOMEM:
        return "out of memory";
    case PVG_ERR_IO:
        return "input/output error";
    case PVG_ERR_NOT_FOUND:
        return "not found";
    case PVG_ERR_EXISTS:
        return "already exists";
    case PVG_ERR_CORRUPT:
        return "corrupt data";
    case PVG_ERR_CRYPTO:
        return "cryptographic check failed";
    case PVG_ERR_POLICY:
        return "refused by policy";
    case PVG_ERR_BUDGET:
        return "privacy budget exhausted";
    case PVG_ERR_PERMISSION:
        return "permission denied";
    case PVG_ERR_UNSUPPORTED:
        return "unsupported";
    case PVG_ERR_BUSY:
        return "busy";
    case PVG_ERR_ABORTED:
        return "aborted";
    case PVG_ERR_STATE:
        return "invalid state";
    case PVG_ERR_INTERNAL:
        return "internal error";
    case PVG_ERR_ERASED:
        return "erased (on the suppression list)";
    }
    return "unknown error";
}

void pvg_error_clear(pvg_error *err)
{
    if (!err) return;
    err->code = PVG_OK;
    err->line = 0;
    err->column = 0;
    err->offset = -1;
    err->source[0] = '\0';
    err->text[0] = '\0';
}

static void error_vset(pvg_error *err, pvg_status code, const char *fmt, va_list ap)
{
    err->code = code;
    vsnprintf(err->text, sizeof err->text, fmt, ap);
}

pvg_status pvg_error_set(pvg_error *err, pvg_status code, const char *fmt, ...)
{
    if (!err) return code;
    pvg_error_clear(err);
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

pvg_status pvg_error_set_at(pvg_error *err, pvg_status code, const char *source, long line,
                            long column, long long offset, const char *fmt, ...)
{
    if (!err) return code;
    pvg_error_clear(err);
    if (source) snprintf(err->source, sizeof err->source, "%s", source);
    err->line = line;
    err->column = column;
    err->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

const char *pvg_error_format(const pvg_error *err, char *buf, size_t len)
{
    if (!buf || len == 0) return buf;
    buf[0] = '\0';
    if (!err) return buf;
    const char *text = err->text[0] ? err->text : pvg_strerror(err->code);
    if (err->source[0] && err->line > 0 && err->column > 0)
        snprintf(buf, len, "%s:%ld:%ld: %s", err->source, err->line, err->column, text);
    else if (err->source[0] && err->line > 0)
        snprintf(buf, len, "%s:%ld: %s", err->source, err->line, text);
    else if (err->source[0] && err->offset >= 0)
        snprintf(buf, len, "%s: byte %lld: %s", err->source, err->offset, text);
    else if (err->source[0])
        snprintf(buf, len, "%s: %s", err->source, text);
    else
        snprintf(buf, len, "%s", text);
    return buf;
}
