/* SPDX-License-Identifier: MIT */
/* A .vmx a user points ferry vm import at: any bytes. Properties: an accepted file gives
 * NUL-terminated UTF-8 names, disks with a file (CD-ROMs aside), MACs of 17 characters and a
 * CPU topology that divides; a refusal names the file. */
#include <string.h>

#include "fuzz.h"
#include "import/text.h"
#include "import/vmx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct vmx v;
    struct ferr e;
    if (vmx_parse("f.vmx", (const char *)data, size, &v, &e) == 0) {
        FUZZ_ASSERT(text_utf8_valid(v.display_name, strlen(v.display_name)));
        FUZZ_ASSERT(v.numvcpus >= 1 && v.cores_per_socket >= 1 &&
                    v.numvcpus % v.cores_per_socket == 0);
        FUZZ_ASSERT(v.ndisks <= VMX_MAX_DISKS && v.nnics <= VMX_MAX_NICS);
        for (unsigned i = 0; i < v.ndisks; i++)
            FUZZ_ASSERT(v.disks[i].cdrom || v.disks[i].file[0]);
        for (unsigned i = 0; i < v.nnics; i++)
            FUZZ_ASSERT(v.nics[i].mac[0] == 0 || strlen(v.nics[i].mac) == 17);
        FUZZ_ASSERT(!strcmp(v.firmware, "bios") || !strcmp(v.firmware, "efi"));
    } else {
        FUZZ_ASSERT(strncmp(e.msg, "f.vmx", 5) == 0);
    }
    return 0;
}
