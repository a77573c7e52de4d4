/* SPDX-License-Identifier: MIT */
/* A node's file of VM histories (STATE_DIR/vm-history.json) as a restart reads it, and a
 * peer's answer to POST /v1/internal/vm-history as a VM's new node merges it: any bytes.
 * Properties: a refused file leaves the histories as they were, with FERR_INVALID and a
 * message; an accepted one saves to text that loads back with the same VMs and points; a
 * merged history has rings within their sizes, times increasing. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "vm/vmhist.h"

#define NOW 2000000000ull

/* The ring's points are in time order, within the ring. */
static void check_rings(const struct vmhist *h)
{
    FUZZ_ASSERT(h->fine_n <= VMHIST_FINE_N && h->coarse_n <= VMHIST_COARSE_N);
    for (int day = 0; day < 2; day++) {
        json_t *j = vmhist_json(h, day, NOW + VMHIST_SKEW_S);
        json_t *pts = json_object_get(j, "points");
        for (size_t i = 1; i < json_array_size(pts); i++)
            FUZZ_ASSERT(json_integer_value(json_object_get(json_array_get(pts, i), "t")) >
                        json_integer_value(json_object_get(json_array_get(pts, i - 1), "t")));
        json_decref(j);
    }
}

static bool count_points(const char *name, struct vmhist *h, uint64_t departed_s, void *data)
{
    check_rings(h);
    *(size_t *)data += h->fine_n + h->coarse_n;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmhist_set *s;
    static struct vmhist node, mine, theirs;
    if (vmhist_set_new(&s) < 0)
        return 0;
    vmhist_init(&node);
    struct vmhist *here = vmhist_set_get(s, "here", true);
    struct ferr e = {0};
    int rc = vmhist_file_load(s, &node, (const char *)data, size, NOW, &e);
    if (rc < 0) {
        FUZZ_ASSERT(rc == FERR_INVALID && e.msg[0]);
        FUZZ_ASSERT(vmhist_set_count(s) == 1 && vmhist_set_get(s, "here", false) == here);
    } else {
        size_t n1 = 0, n2 = 0, len = 0;
        vmhist_set_each(s, count_points, &n1);
        check_rings(&node);
        char *text = vmhist_file_text(s, &node, NOW, &len);
        struct vmhist_set *t;
        if (text && vmhist_set_new(&t) == 0) {
            struct vmhist node2;
            FUZZ_ASSERT(vmhist_file_load(t, &node2, text, len, NOW, &e) == 0);
            FUZZ_ASSERT(vmhist_set_count(t) == vmhist_set_count(s));
            vmhist_set_each(t, count_points, &n2);
            FUZZ_ASSERT(n1 == n2 && node2.fine_n == node.fine_n);
            vmhist_set_free(t);
        }
        free(text);
    }
    vmhist_set_free(s);
    /* The same bytes as a peer's history of one VM, merged into a history of our own. */
    json_t *j = json_loadb((const char *)data, size, 0, NULL);
    if (j && vmhist_undump(&theirs, j, NOW, &e) == 0) {
        struct vmhist_counters c = {0};
        vmhist_init(&mine);
        for (uint64_t t = NOW - 600; t <= NOW; t += 10)
            vmhist_sample(&mine, t, &c);
        vmhist_merge(&mine, &theirs);
        check_rings(&mine);
    }
    json_decref(j);
    return 0;
}
