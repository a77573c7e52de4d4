/* SPDX-License-Identifier: MIT */
/* What a user types on the command line for a disk (--disk), a NIC (--nic) and a join address:
 * the input as one NUL-terminated argument. Property: every refusal says why. */
#include <jansson.h>
#include <string.h>

#include "cli/parse.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *arg = malloc(size + 1), why[512];
    FUZZ_ASSERT(arg);
    memcpy(arg, data, size);
    arg[size] = '\0';
    json_t *out = NULL;
    why[0] = '\0';
    if (cli_parse_disk(arg, &out, why, sizeof(why)) == 0)
        FUZZ_ASSERT(json_is_object(out));
    else
        FUZZ_ASSERT(why[0] && !out);
    json_decref(out);
    out = NULL;
    why[0] = '\0';
    if (cli_parse_nic(arg, &out, why, sizeof(why)) == 0)
        FUZZ_ASSERT(json_is_object(out));
    else
        FUZZ_ASSERT(why[0] && !out);
    json_decref(out);
    why[0] = '\0';
    if (cli_check_address(arg, why, sizeof(why)) != 0)
        FUZZ_ASSERT(why[0]);
    uint64_t v;
    (void)cli_parse_u64(arg, 1, 1000, &v);
    (void)cli_parse_size_mib(arg, &v);
    free(arg);
    return 0;
}
