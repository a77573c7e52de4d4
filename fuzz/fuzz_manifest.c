/* SPDX-License-Identifier: MIT */
/* The .mf manifest of an OVF package: any bytes. Properties: every accepted entry is found by
 * its name, has a digest of its algorithm's length, and checking the input itself against it
 * either matches or says which file and line disagree. */
#include <string.h>

#include "fuzz.h"
#include "import/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mf m;
    struct ferr e;
    if (mf_parse("f.mf", (const char *)data, size, &m, &e) != 0) {
        FUZZ_ASSERT(strncmp(e.msg, "f.mf:", 5) == 0 || strncmp(e.msg, "f.mf: ", 6) == 0);
        return 0;
    }
    for (unsigned i = 0; i < m.n; i++) {
        const struct mf_entry *en = &m.entries[i];
        FUZZ_ASSERT(mf_find(&m, en->file) == en);
        FUZZ_ASSERT(en->digest_len == (en->algo == MF_SHA1     ? 20u
                                       : en->algo == MF_SHA256 ? 32u
                                                               : 64u));
    }
    if (m.n) {
        struct mf_hash *h;
        FUZZ_ASSERT(mf_hash_new(&m.entries[0], &h, &e) == 0);
        mf_hash_update(h, data, size);
        if (mf_hash_finish(h, "f.mf", &e) != 0)
            FUZZ_ASSERT(strstr(e.msg, m.entries[0].file));
    }
    return 0;
}
