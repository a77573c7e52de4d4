/* SPDX-License-Identifier: MIT */
/* The field checks and message words for JSON from outside. */
#include "common/jsonfield.h"

#include <stdio.h>
#include <string.h>

const char *jfield_type(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a fractional number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

const char *jfield_quote(const char *s, char *buf, size_t size)
{
    size_t n = 0, limit = size - 10; /* room for one escape, "...", '"' and NUL */
    buf[n++] = '"';
    for (; *s && n < limit; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    if (*s) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

const char *jfield_text(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

const char *jfield_unknown(const json_t *obj, const char *const *accepted)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;
        while (accepted[i] && strcmp(key, accepted[i]) != 0)
            i++;
        if (!accepted[i])
            return key;
    }
    return NULL;
}

int jfield_int(const json_t *v, const char *field, json_int_t min, json_int_t max, json_int_t *out,
               struct ferr *e)
{
    if (!json_is_integer(v))
        return ferr_set(e, FERR_INVALID, "%s: expected an integer, not %s", field, jfield_type(v));
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return ferr_set(e, FERR_INVALID,
                        "%s: %" JSON_INTEGER_FORMAT " is out of range %" JSON_INTEGER_FORMAT
                        "..%" JSON_INTEGER_FORMAT,
                        field, i, min, max);
    *out = i;
    return 0;
}

int jfield_str(const json_t *v, const char *field, const char **out, struct ferr *e)
{
    if (!json_is_string(v))
        return ferr_set(e, FERR_INVALID, "%s: expected a string, not %s", field, jfield_type(v));
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return ferr_set(e, FERR_INVALID, "%s: contains a NUL character", field);
    *out = s;
    return 0;
}
