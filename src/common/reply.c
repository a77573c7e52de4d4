/* SPDX-License-Identifier: MIT */
#include "common/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void reply_err(reply_cb cb, void *data, int code, const char *fmt, ...)
{
    struct ferr e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    cb(0, NULL, &e, data);
}

int reply_failed(int status, const json_t *body, const struct ferr *e, struct ferr *out)
{
    if (e) {
        *out = *e;
        return out->code ? out->code : FERR_INTERNAL;
    }
    if (status >= 200 && status < 300)
        return 0;
    const json_t *err = json_object_get(body, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    int code = ferr_from_name(json_string_value(json_object_get(err, "code")));
    if (!code)
        code = ferr_from_http_status(status);
    if (msg)
        return ferr_set(out, code, "%s", msg);
    return ferr_set(out, code, "HTTP %d without an error message", status);
}
