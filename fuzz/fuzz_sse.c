/* SPDX-License-Identifier: MIT */
/* What `ferry events -f` reads from a ferryd (or whatever answers at its address): any bytes as
 * an event stream, fed in pieces. Property: every event handed over has data no longer than
 * the input; and an event ferryd writes (sse_event) with the input as data (without CR) reads
 * back with the same id, type and data. */
#include <string.h>

#include "api/sse.h"
#include "fuzz.h"

struct seen {
    size_t max;
    unsigned n;
    uint64_t id;
    char type[128];
    char *data;
};

static void on_event(uint64_t id, const char *type, const char *data, void *arg)
{
    struct seen *s = arg;
    FUZZ_ASSERT(strlen(data) <= s->max);
    s->n++;
    s->id = id;
    snprintf(s->type, sizeof(s->type), "%s", type ? type : "");
    free(s->data);
    s->data = strdup(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 32 + 1;
    struct sse_reader r;
    memset(&r, 0, sizeof(r));
    struct seen s = {.max = size};
    for (size_t off = 1; off < size; off += step)
        if (sse_reader_feed(&r, (const char *)data + off, size - off < step ? size - off : step,
                            on_event, &s) != 0)
            break;
    sse_reader_free(&r);
    free(s.data);

    /* ferryd's side: data is JSON text in practice; any text without CR or NUL must survive */
    char *text = malloc(size);
    FUZZ_ASSERT(text);
    size_t k = 0;
    for (size_t i = 1; i < size; i++)
        if (data[i] != '\r' && data[i] != '\0')
            text[k++] = (char)data[i];
    text[k] = '\0';
    size_t len;
    char *ev = sse_event(42, "vm.started", text, &len);
    FUZZ_ASSERT(ev);
    struct sse_reader r2;
    memset(&r2, 0, sizeof(r2));
    struct seen s2 = {.max = k};
    FUZZ_ASSERT(sse_reader_feed(&r2, ev, len, on_event, &s2) == 0);
    FUZZ_ASSERT(s2.n == 1 && s2.id == 42 && strcmp(s2.type, "vm.started") == 0);
    FUZZ_ASSERT(strcmp(s2.data, text) == 0);
    sse_reader_free(&r2);
    free(s2.data);
    free(ev);
    free(text);
    return 0;
}
