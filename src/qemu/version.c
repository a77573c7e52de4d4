/* SPDX-License-Identifier: MIT */
/* Which QEMU this host runs. */
#include "qemu/version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/run.h"

static int number(const char **p, unsigned *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long v = 0;
    while (*s >= '0' && *s <= '9' && v < 100000)
        v = v * 10 + (unsigned long)(*s++ - '0');
    if (v >= 100000)
        return -1;
    *out = (unsigned)v;
    *p = s;
    return 0;
}

int qemu_version_parse(const char *text, struct qemu_version *out, struct ferr *e)
{
    static const char lead[] = "QEMU emulator version ";
    memset(out, 0, sizeof(*out));
    const char *p = text ? strstr(text, lead) : NULL;
    if (!p)
        return ferr_set(e, FERR_INVALID, "--version does not say \"%s...\"", lead);
    p += sizeof(lead) - 1;
    const char *start = p;
    if (number(&p, &out->major) < 0 || *p++ != '.' || number(&p, &out->minor) < 0)
        return ferr_set(e, FERR_INVALID, "--version: no MAJOR.MINOR after \"%s\"", lead);
    if (*p == '.') {
        const char *q = p + 1;
        if (number(&q, &out->micro) == 0)
            p = q;
    }
    size_t n = strcspn(start, "\r\n");
    if (n > QEMU_VERSION_TEXT_MAX)
        n = QEMU_VERSION_TEXT_MAX;
    memcpy(out->text, start, n);
    out->text[n] = '\0';
    return 0;
}

int qemu_version_probe(const char *qemu_binary, struct qemu_version *out, struct ferr *e)
{
    char *argv[] = {(char *)qemu_binary, "--version", NULL};
    struct run r;
    int rc = run(argv, &r, e);
    if (rc < 0)
        return rc;
    char buf[64];
    if (!run_ok(&r))
        rc = ferr_set(e, FERR_QEMU, "%s --version: %s", qemu_binary, run_why(&r, buf, sizeof(buf)));
    else if ((rc = qemu_version_parse(r.out, out, e)) < 0)
        ferr_prefix(e, "%s", qemu_binary);
    run_free(&r);
    return rc;
}

bool qemu_version_at_least(const struct qemu_version *v, unsigned major, unsigned minor)
{
    return v->major > major || (v->major == major && v->minor >= minor);
}

bool qemu_version_tcg_migration_safe(const struct qemu_version *v)
{
    return qemu_version_at_least(v, QEMU_TCG_MIGRATION_MAJOR, QEMU_TCG_MIGRATION_MINOR);
}
