/* SPDX-License-Identifier: MIT */
/* What other nodes write on a shared volume and this node reads: a lease slot (the first
 * LEASE_SLOT bytes of the input) and the writers' audit (the input as JSON records, one per
 * line, as audit_read returns them), judged by audit_check. Property: a decoded lease
 * re-encodes to a slot that decodes to the same node and counter. */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "storage/audit.h"
#include "storage/lease.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char node[64], node2[64], slot[LEASE_SLOT];
    uint64_t counter, counter2;
    struct ferr e;
    size_t n = size < LEASE_SLOT ? size : LEASE_SLOT;
    if (lease_decode((const char *)data, n, node, &counter, &e) == 0) {
        FUZZ_ASSERT(lease_encode(node, counter, 1, slot) == 0);
        FUZZ_ASSERT(lease_decode(slot, LEASE_SLOT, node2, &counter2, &e) == 0);
        FUZZ_ASSERT(strcmp(node, node2) == 0 && counter == counter2);
    }
    json_t *records = json_array();
    FUZZ_ASSERT(records);
    for (size_t off = 0; off < size;) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        json_t *r = json_loadb((const char *)data + off, len, 0, NULL);
        if (json_is_object(r))
            json_array_append(records, r);
        json_decref(r);
        off += len + 1;
    }
    json_t *verdict = audit_check(records);
    FUZZ_ASSERT(verdict);
    json_decref(verdict);
    json_decref(records);
    return 0;
}
