/* SPDX-License-Identifier: MIT */
/* An OVA: any bytes as the whole archive, indexed in place. Properties: reads stay inside the
 * archive; every indexed member's data lies inside it, under a name that stays in the folder,
 * and is found by that name. */
#include <string.h>

#include "fuzz.h"
#include "import/ova.h"
#include "import/text.h"

struct img {
    const uint8_t *data;
    size_t size;
};

static int rd(void *ctx, uint64_t offset, void *buf, size_t len, struct ferr *e)
{
    const struct img *im = ctx;
    FUZZ_ASSERT(offset <= im->size && len <= im->size - offset); /* ova_index_read's promise */
    memcpy(buf, im->data + offset, len);
    (void)e;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ova_index idx;
    struct img im = {data, size};
    struct ferr e;
    if (ova_index_read("f.ova", size, rd, &im, &idx, &e) != 0) {
        FUZZ_ASSERT(strncmp(e.msg, "f.ova", 5) == 0);
        return 0;
    }
    FUZZ_ASSERT(idx.n >= 1);
    for (unsigned i = 0; i < idx.n; i++) {
        const struct ova_member *m = &idx.members[i];
        FUZZ_ASSERT(m->offset <= size && m->size <= size - m->offset);
        FUZZ_ASSERT(text_path_inside(m->name));
        FUZZ_ASSERT(ova_find(&idx, m->name) == m);
    }
    return 0;
}
