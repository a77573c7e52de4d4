/* SPDX-License-Identifier: MIT */
/* qemu-img conversions of an import plan (convert.h). */
#include "import/convert.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "storage/vhd.h"

/* The source as qemu-img opens it: the file with -f vmdk, or an OVA's member via json:. */
static int source_arg(const struct import_conv *c, char *out, size_t cap, bool *json_src,
                      struct ferr *e)
{
    *json_src = c->ova_size != 0;
    if (!*json_src) {
        if ((size_t)snprintf(out, cap, "%s", c->src) >= cap)
            return ferr_set(e, FERR_INVALID, "%s: path too long", c->src);
        return 0;
    }
    json_t *j = json_pack("{s:s, s:{s:s, s:I, s:I, s:{s:s, s:s}}}", "driver", "vmdk", "file",
                          "driver", "raw", "offset", (json_int_t)c->ova_offset, "size",
                          (json_int_t)c->ova_size, "file", "driver", "file", "filename", c->src);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return ferr_set(e, -ENOMEM, "out of memory");
    int n = snprintf(out, cap, "json:%s", s);
    free(s);
    if (n < 0 || (size_t)n >= cap)
        return ferr_set(e, FERR_INVALID, "%s: path too long", c->src);
    return 0;
}

/* The last "(NN.NN/100%)" in buf, in permille; -1 if none. */
static int last_progress(const char *buf)
{
    const char *p = NULL, *s = buf;
    while ((s = strchr(s, '(')))
        p = s++;
    if (!p)
        return -1;
    double v;
    if (sscanf(p, "(%lf/100%%)", &v) != 1 || v < 0 || v > 100)
        return -1;
    return (int)(v * 10);
}

/* Runs one qemu-img convert into tmp; weight/base: this disk's share of the progress. */
static int run_convert(const char *qemu_img, const struct import_conv *c, const char *tmp,
                       struct import_progress *p, unsigned base, unsigned weight, struct ferr *e)
{
    char src[VM_PATH_MAX * 2 + 256], opts[64];
    bool json_src;
    int rc = source_arg(c, src, sizeof src, &json_src, e);
    if (rc < 0)
        return rc;
    snprintf(opts, sizeof opts, "subformat=%s,force_size=on", c->dynamic ? "dynamic" : "fixed");
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)qemu_img;
    argv[n++] = "convert";
    argv[n++] = "-p";
    if (!json_src) {
        argv[n++] = "-f";
        argv[n++] = "vmdk";
    }
    argv[n++] = "-O";
    argv[n++] = "vpc";
    argv[n++] = "-o";
    argv[n++] = opts;
    argv[n++] = src;
    argv[n++] = (char *)tmp;
    argv[n] = NULL;
    int out_p[2], err_p[2];
    if (pipe2(out_p, O_CLOEXEC) < 0)
        return ferr_set(e, -errno, "pipe: %s", strerror(errno));
    if (pipe2(err_p, O_CLOEXEC) < 0) {
        rc = ferr_set(e, -errno, "pipe: %s", strerror(errno));
        close(out_p[0]);
        close(out_p[1]);
        return rc;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out_p[1], 1) < 0 || dup2(err_p[1], 2) < 0)
            _exit(127);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(out_p[1]);
    close(err_p[1]);
    if (pid < 0) {
        close(out_p[0]);
        close(err_p[0]);
        return ferr_set(e, -errno, "fork: %s", strerror(errno));
    }
    char out[512] = "", err[1024] = "";
    size_t err_len = 0;
    bool cancelled = false;
    struct pollfd fds[2] = {{out_p[0], POLLIN, 0}, {err_p[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (atomic_load(&p->cancel) && !cancelled) {
            cancelled = true;
            kill(pid, SIGTERM);
        }
        if (poll(fds, 2, 200) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[512];
            ssize_t got = read(fds[i].fd, buf, sizeof buf - 1);
            if (got <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            buf[got] = 0;
            if (i == 0) {
                snprintf(out, sizeof out, "%s", buf);
                int pm = last_progress(out);
                if (pm >= 0)
                    atomic_store(&p->permille,
                                 base + (unsigned)((uint64_t)weight * (unsigned)pm / 1000));
            } else if (err_len + (size_t)got < sizeof err) {
                memcpy(err + err_len, buf, (size_t)got);
                err_len += (size_t)got;
                err[err_len] = 0;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (cancelled)
        return ferr_set(e, -ECANCELED, "disk %s: the import was cancelled", c->label);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        while (err_len && (err[err_len - 1] == '\n' || err[err_len - 1] == ' '))
            err[--err_len] = 0;
        return ferr_set(e, FERR_QEMU, "disk %s: qemu-img convert failed: %s", c->label,
                        err_len ? err : "no message");
    }
    return 0;
}

/* A fixed VHD owns its space from the start (docs/architecture.md, "VHD files"): what qemu-img
 * left sparse is reserved, without a zero-writing fallback where the file system cannot. */
static int reserve(const char *path, uint64_t bytes, struct ferr *e)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ferr_set(e, -errno, "%s: %s", path, strerror(errno));
    int rc = 0;
    if (fallocate(fd, 0, 0, (off_t)bytes) < 0) {
        if (errno == ENOSPC || errno == EDQUOT)
            rc = ferr_set(e, FERR_LIMIT, "%s: no room for a fixed VHD of %llu MiB (%s)", path,
                          (unsigned long long)(bytes >> 20), strerror(errno));
        else if (errno != EOPNOTSUPP && errno != ENOSYS)
            rc = ferr_set(e, -errno, "reserve %s: %s", path, strerror(errno));
    }
    close(fd);
    return rc;
}

void import_convert_undo(const struct import_plan *plan)
{
    for (unsigned i = 0; i < plan->nconv; i++)
        unlink(plan->conv[i].dst);
}

int import_convert(const char *qemu_img, const struct import_plan *plan, struct import_progress *p,
                   struct ferr *e)
{
    uint64_t total = 0, done = 0;
    for (unsigned i = 0; i < plan->nconv; i++)
        total += plan->conv[i].size_bytes;
    unsigned linked = 0;
    int rc = 0;
    for (unsigned i = 0; i < plan->nconv && rc == 0; i++) {
        const struct import_conv *c = &plan->conv[i];
        atomic_store(&p->disk, i);
        char tmp[VM_PATH_MAX + 64];
        const char *slash = strrchr(c->dst, '/');
        snprintf(tmp, sizeof tmp, "%.*s/.%s.ferry-import-XXXXXX", (int)(slash - c->dst), c->dst,
                 slash + 1);
        int fd = mkstemp(tmp);
        if (fd < 0) {
            rc = ferr_set(e, -errno, "%s: %s", tmp, strerror(errno));
            break;
        }
        close(fd);
        unsigned base = total ? (unsigned)(done * 1000 / total) : 0;
        unsigned weight = total ? (unsigned)(c->size_bytes * 1000 / total) : 1000;
        if ((rc = run_convert(qemu_img, c, tmp, p, base, weight, e)) == 0 &&
            (c->dynamic || (rc = reserve(tmp, c->size_bytes, e)) == 0) &&
            (rc = vhd_check_file(tmp, NULL, e)) == 0) {
            if (link(tmp, c->dst) < 0)
                rc = ferr_set(e, errno == EEXIST ? FERR_EXISTS : -errno,
                              "%s: %s (it appeared during the import; nothing was overwritten)",
                              c->dst, strerror(errno));
            else
                linked++;
        }
        unlink(tmp);
        done += c->size_bytes;
        if (rc == 0 && atomic_load(&p->cancel))
            rc = ferr_set(e, -ECANCELED, "the import was cancelled");
    }
    if (rc < 0) {
        for (unsigned i = 0; i < linked; i++)
            unlink(plan->conv[i].dst);
        return rc;
    }
    atomic_store(&p->permille, 1000);
    return 0;
}
