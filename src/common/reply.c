/* SPDX-License-Identifier: MIT */
#include "common/reply.h"

#include <stdarg.h>
#include <stdio.h>

void reply_err(reply_cb cb, void *data, int code, const char *fmt, ...)
{
    struct ferr e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    cb(0, NULL, &e, data);
}
