/* SPDX-License-Identifier: MIT */
/* What a QEMU (or something on its QMP socket) sends: any bytes, fed to the QMP line parser in
 * pieces whose sizes come from the input, every message classified. Property: the parser
 * never reports more messages than there are newlines. */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "qemu/qmp.h"

static int on_msg(json_t *msg, void *data)
{
    long long id = 0;
    enum qmp_msg_kind k = qmp_msg_classify(msg, &id);
    FUZZ_ASSERT(k <= QMP_MSG_BAD);
    /* an answer's id is its integer "id", or -1 when it has none */
    if (k == QMP_MSG_RETURN || k == QMP_MSG_ERROR) {
        json_t *j = json_object_get(msg, "id");
        FUZZ_ASSERT(id == (json_is_integer(j) ? (long long)json_integer_value(j) : -1));
    }
    (*(size_t *)data)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 64 + 1, msgs = 0, newlines = 0;
    data++;
    size--;
    for (size_t i = 0; i < size; i++)
        newlines += data[i] == '\n';
    struct qmp_parser *p = qmp_parser_new(4096);
    FUZZ_ASSERT(p);
    struct ferr e;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (qmp_parser_feed(p, (const char *)data + off, n, on_msg, &msgs, &e) != 0) {
            FUZZ_ASSERT(e.code == FERR_PROTO && e.msg[0]);
            break; /* the connection is closed on a protocol error */
        }
    }
    FUZZ_ASSERT(msgs <= newlines);
    qmp_parser_free(p);
    return 0;
}
