/* SPDX-License-Identifier: MIT */
/* A VHD file on a shared volume, written by anyone with access to it: any bytes as the whole
 * file, checked by vhd_check before ferry hands it to QEMU, and its last 512 bytes as a footer.
 * Property: what vhd_check accepts has a footer vhd_footer_parse accepts with the same type
 * and size, and a dynamic disk's blocks fit in the file. */
#include <string.h>

#include "fuzz.h"
#include "storage/vhd.h"

struct img {
    const uint8_t *data;
    size_t size;
};

static int rd(void *ctx, uint64_t offset, void *buf, size_t len, struct ferr *e)
{
    const struct img *im = ctx;
    FUZZ_ASSERT(offset <= im->size && len <= im->size - offset); /* vhd_check's promise */
    memcpy(buf, im->data + offset, len);
    (void)e;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct img im = {data, size};
    struct vhd_layout l;
    struct ferr e;
    int rc = vhd_check("fuzz.vhd", size, rd, &im, &l, &e);
    if (rc == 0) {
        char sub[16];
        uint64_t cur;
        FUZZ_ASSERT(size >= VHD_FOOTER_SIZE);
        FUZZ_ASSERT(vhd_footer_parse(data + size - VHD_FOOTER_SIZE, sub, &cur, &e) == 0);
        FUZZ_ASSERT(strcmp(sub, l.subformat) == 0 && cur == l.current_size);
        if (strcmp(l.subformat, "dynamic") == 0)
            FUZZ_ASSERT(l.used_blocks <= l.max_table_entries &&
                        (uint64_t)l.used_blocks * l.block_size <= size);
    } else {
        FUZZ_ASSERT(e.msg[0]);
    }
    if (size >= VHD_FOOTER_SIZE) {
        char sub[16];
        uint64_t cur;
        (void)vhd_footer_parse(data, sub, &cur, &e);
    }
    return 0;
}
