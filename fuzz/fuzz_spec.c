/* SPDX-License-Identifier: MIT */
/* A VM spec as POST /v1/vms and the cluster database receive it: any bytes, parsed as JSON and
 * validated. Property: a spec that is accepted prints (vm_spec_to_json) to JSON that parses
 * back to the same spec, printed the same. */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "vm/spec.h"

static bool yes(const char *s, void *data)
{
    (void)data;
    return s && strlen(s) % 3 != 0; /* some names "exist", some not */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!j)
        return 0;
    struct vm_spec_env env = {4096, yes, yes, yes, yes, NULL};
    struct vm_spec *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    struct ferr e;
    FUZZ_ASSERT(a && b);
    if (vm_spec_from_json(j, &env, a, &e) == 0) {
        json_t *out = vm_spec_to_json(a);
        FUZZ_ASSERT(out);
        FUZZ_ASSERT(vm_spec_from_json(out, &env, b, &e) == 0);
        json_t *again = vm_spec_to_json(b);
        FUZZ_ASSERT(again && json_equal(out, again));
        json_decref(again);
        json_decref(out);
    } else {
        FUZZ_ASSERT(e.code == FERR_INVALID && e.msg[0]);
    }
    struct vm_ha ha;
    if (vm_ha_from_json(json_object_get(j, "ha"), &ha, &e) == 0 && ha.enabled) {
        json_t *h = vm_ha_to_json(&ha);
        struct vm_ha ha2;
        FUZZ_ASSERT(h && vm_ha_from_json(h, &ha2, &e) == 0);
        json_t *h2 = vm_ha_to_json(&ha2);
        FUZZ_ASSERT(h2 && json_equal(h, h2));
        json_decref(h2);
        json_decref(h);
    }
    free(a);
    free(b);
    json_decref(j);
    return 0;
}
