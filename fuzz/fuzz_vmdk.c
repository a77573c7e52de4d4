/* SPDX-License-Identifier: MIT */
/* A VMDK an import reads: any bytes, as a sparse extent (its header and the descriptor it
 * embeds) when they begin with KDMV, else as a text descriptor. Properties: an embedded
 * descriptor lies inside the file; an accepted descriptor has extents whose files stay in the
 * folder and whose sizes add up to its capacity. */
#include <string.h>

#include "fuzz.h"
#include "import/text.h"
#include "import/vmdk.h"

static void descriptor(const char *text, size_t len)
{
    static struct vmdk_desc d;
    struct ferr e;
    if (vmdk_desc_parse("f.vmdk", text, len, &d, &e) != 0) {
        FUZZ_ASSERT(strncmp(e.msg, "f.vmdk", 6) == 0);
        return;
    }
    uint64_t sum = 0;
    FUZZ_ASSERT(d.nextents >= 1 && d.nextents <= VMDK_MAX_EXTENTS);
    for (unsigned i = 0; i < d.nextents; i++) {
        const struct vmdk_extent *x = &d.extents[i];
        FUZZ_ASSERT(x->type == VMDK_EXTENT_ZERO ? x->file[0] == 0 : text_path_inside(x->file));
        sum += x->sectors;
    }
    FUZZ_ASSERT(sum == d.capacity_sectors);
    FUZZ_ASSERT(!d.parent_hint[0] || text_path_inside(d.parent_hint));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vmdk_is_sparse(data, size)) {
        descriptor((const char *)data, size);
        return 0;
    }
    if (size < VMDK_SPARSE_HEADER_SIZE)
        return 0;
    struct vmdk_sparse s;
    struct ferr e;
    if (vmdk_sparse_parse("f.vmdk", data, size, &s, &e) != 0) {
        FUZZ_ASSERT(e.msg[0]);
        return 0;
    }
    if (s.desc_sectors) {
        FUZZ_ASSERT(s.desc_offset <= size / VMDK_SECTOR &&
                    s.desc_sectors <= size / VMDK_SECTOR - s.desc_offset);
        descriptor((const char *)data + s.desc_offset * VMDK_SECTOR, s.desc_sectors * VMDK_SECTOR);
    }
    return 0;
}
