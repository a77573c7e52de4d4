/* SPDX-License-Identifier: MIT */
/* The machine types this host's QEMU offers. */
#include "qemu/machines.h"

#include <stdio.h>
#include <string.h>

#include "common/run.h"

/* One line: "NAME<spaces>DESCRIPTION", the description maybe ending in "(alias of X)". */
static void parse_line(const char *line, size_t len, struct qemu_machines *out)
{
    size_t n = strcspn(line, " \t\n");
    if (n == 0 || n > QEMU_MACHINE_NAME_MAX || n > len || out->n >= QEMU_MACHINES_MAX)
        return;
    size_t end = len;
    while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\r'))
        end--;
    if (line[end - 1] == ':')
        return; /* the heading, "Supported machines are:" */
    for (size_t i = 0; i < n; i++) {
        char c = line[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return; /* something else that is no machine */
    }
    memcpy(out->names[out->n], line, n);
    out->names[out->n][n] = '\0';
    out->n++;
    static const char alias[] = "(alias of ";
    if (n == 2 && memcmp(line, "pc", 2) == 0) {
        const char *a = memmem(line, len, alias, sizeof(alias) - 1);
        if (a) {
            a += sizeof(alias) - 1;
            size_t m = strcspn(a, ") \n");
            if (m > 0 && m <= QEMU_MACHINE_NAME_MAX && a + m <= line + len) {
                memcpy(out->pc, a, m);
                out->pc[m] = '\0';
            }
        }
    }
}

int qemu_machines_parse(const char *text, struct qemu_machines *out, struct ferr *e)
{
    memset(out, 0, sizeof(*out));
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        parse_line(p, len, out);
        p = nl ? nl + 1 : NULL;
    }
    if (out->n == 0)
        return ferr_set(e, FERR_INVALID, "-machine help lists no machine types");
    if (out->pc[0] && !qemu_machines_has(out, out->pc))
        out->pc[0] = '\0';
    return 0;
}

int qemu_machines_probe(const char *qemu_binary, struct qemu_machines *out, struct ferr *e)
{
    char *argv[] = {(char *)qemu_binary, "-machine", "help", NULL};
    struct run r;
    int rc = run(argv, &r, e);
    if (rc < 0)
        return rc;
    char buf[64];
    if (!run_ok(&r))
        rc = ferr_set(e, FERR_QEMU, "%s -machine help: %s", qemu_binary,
                      run_why(&r, buf, sizeof(buf)));
    else if ((rc = qemu_machines_parse(r.out, out, e)) < 0)
        ferr_prefix(e, "%s", qemu_binary);
    run_free(&r);
    return rc;
}

bool qemu_machines_has(const struct qemu_machines *m, const char *name)
{
    for (unsigned i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0)
            return true;
    return false;
}
