/* SPDX-License-Identifier: MIT */
/* An OVF envelope from an .ovf or an OVA: any bytes, parsed with libxml2. Properties: an
 * accepted envelope has a CPU and memory, its disks point at listed files, its attached disks
 * at listed disks, its hrefs stay in the folder; a refusal names the file. */
#include <string.h>

#include "fuzz.h"
#include "import/ovf.h"
#include "import/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ovf o;
    struct ferr e;
    static int ready;
    if (!ready) {
        ovf_init();
        ready = 1;
    }
    if (ovf_parse("f.ovf", (const char *)data, size, &o, &e) != 0) {
        FUZZ_ASSERT(strncmp(e.msg, "f.ovf", 5) == 0);
        return 0;
    }
    FUZZ_ASSERT(o.vcpus >= 1 && o.memory_mib >= 1 && o.vcpus % o.cores_per_socket == 0);
    for (unsigned i = 0; i < o.nfiles; i++)
        FUZZ_ASSERT(text_path_inside(o.files[i].href));
    for (unsigned i = 0; i < o.ndisks; i++)
        FUZZ_ASSERT(o.disks[i].file < (int)o.nfiles && o.disks[i].capacity_bytes > 0);
    FUZZ_ASSERT(o.nattached <= o.ndisks);
    for (unsigned i = 0; i < o.nattached; i++)
        FUZZ_ASSERT(o.attached[i] < o.ndisks && o.disks[o.attached[i]].attached);
    return 0;
}
