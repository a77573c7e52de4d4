/* SPDX-License-Identifier: MIT */
/* A QEMU process under supervision: spawn, adopt, pidfd watch, signal, log tail. */
#include "qemu/process.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

struct qemu_proc {
    uv_loop_t *loop;
    int pid;
    qemu_proc_exit_cb cb;
    void *data;
    uv_process_t child; /* only while we are QEMU's parent */
    bool child_active;
    int pidfd;
    uv_poll_t pidfd_poll;
    bool pidfd_active;
    struct qemu_exit how;
    uint64_t started_ms;
    bool done;        /* cb ran or release was asked: free once closed */
    unsigned closing; /* handles still closing */
};

static void maybe_free(struct qemu_proc *p)
{
    if (p->done && p->closing == 0 && !p->child_active && !p->pidfd_active)
        free(p);
}

static void handle_closed(uv_handle_t *h)
{
    struct qemu_proc *p = h->data;
    p->closing--;
    maybe_free(p);
}

static void pidfd_closed(uv_handle_t *h)
{
    struct qemu_proc *p = h->data;
    close(p->pidfd);
    p->pidfd = -1;
    handle_closed(h);
}

static void stop_pidfd(struct qemu_proc *p)
{
    if (!p->pidfd_active)
        return;
    p->pidfd_active = false;
    p->closing++;
    uv_close((uv_handle_t *)&p->pidfd_poll, pidfd_closed);
}

/* QEMU is gone: the pidfd fired and, for our child, libuv reaped it. */
static void gone(struct qemu_proc *p)
{
    p->done = true;
    p->cb(p, &p->how, p->data);
    maybe_free(p);
}

static void on_child_exit(uv_process_t *h, int64_t status, int sig)
{
    struct qemu_proc *p = h->data;
    p->how.reaped = true;
    p->how.status = status;
    p->how.signal = sig;
    p->child_active = false;
    p->closing++;
    uv_close((uv_handle_t *)h, handle_closed);
    /* If the pidfd already fired it waited for us; otherwise it fires next. */
    if (!p->pidfd_active && !p->done)
        gone(p);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    struct qemu_proc *p = h->data;
    stop_pidfd(p);
    /* Our own child is reaped by libuv; wait for its exit status to explain the end. */
    if (p->child_active || p->done)
        return;
    gone(p);
}

static int watch_pid(struct qemu_proc *p, struct ferr *e)
{
    int fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (fd < 0)
        return ferr_set(e, -errno, "pidfd_open %d: %s", p->pid, strerror(errno));
    p->pidfd = fd;
    uv_poll_init(p->loop, &p->pidfd_poll, fd);
    p->pidfd_poll.data = p;
    uv_poll_start(&p->pidfd_poll, UV_READABLE, on_pidfd);
    p->pidfd_active = true;
    return 0;
}

static struct qemu_proc *proc_new(uv_loop_t *loop, qemu_proc_exit_cb cb, void *data)
{
    struct qemu_proc *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->loop = loop;
    p->cb = cb;
    p->data = data;
    p->pidfd = -1;
    p->child.data = p;
    return p;
}

/* setpriv(1)'s options before argv for u: its user, group and groups, and no way back to
 * root's powers (capabilities gone from every set, no_new_privs). The groups are given by
 * number, not by --init-groups: a per-VM uid has no name in the user database. */
#define SETPRIV_ARGS 9
struct setpriv_buf {
    char uid[32], gid[32];
    char groups[16 + QEMU_USER_GROUPS_MAX * 11];
};
static void setpriv_args(const struct qemu_user *u, struct setpriv_buf *b,
                         const char *out[SETPRIV_ARGS])
{
    snprintf(b->uid, sizeof(b->uid), "--reuid=%u", (unsigned)u->uid);
    snprintf(b->gid, sizeof(b->gid), "--regid=%u", (unsigned)u->gid);
    if (u->ngroups == 0) {
        snprintf(b->groups, sizeof(b->groups), "--clear-groups");
    } else {
        size_t n = (size_t)snprintf(b->groups, sizeof(b->groups), "--groups=");
        for (int i = 0; i < u->ngroups && n < sizeof(b->groups); i++)
            n += (size_t)snprintf(b->groups + n, sizeof(b->groups) - n, "%s%u", i ? "," : "",
                                  (unsigned)u->groups[i]);
    }
    const char *a[SETPRIV_ARGS] = {
        "setpriv",        b->uid, b->gid, b->groups, "--inh-caps=-all", "--bounding-set=-all",
        "--no-new-privs", "--",   NULL};
    memcpy(out, a, sizeof(a));
}

int qemu_proc_spawn(uv_loop_t *loop, char *const *argv, const char *log_path,
                    const struct qemu_spawn_opts *opts, qemu_proc_exit_cb cb, void *data,
                    struct qemu_proc **out, struct ferr *e)
{
    const struct qemu_spawn_opts none = {0};
    if (!opts)
        opts = &none;
    if (opts->nfds > QEMU_SPAWN_MAX_FDS)
        return ferr_set(e, FERR_INVALID, "spawn %s: %u descriptors is more than %d", argv[0],
                        opts->nfds, QEMU_SPAWN_MAX_FDS);
    size_t argc = 0;
    while (argv[argc])
        argc++;
    bool drop = opts->user && opts->user->drop;
    const char *pre[SETPRIV_ARGS] = {NULL};
    struct setpriv_buf sb;
    if (drop)
        setpriv_args(opts->user, &sb, pre);
    size_t npre = drop ? SETPRIV_ARGS - 1 : 0;
    char **args = calloc(npre + argc + 1, sizeof(*args));
    struct qemu_proc *p = args ? proc_new(loop, cb, data) : NULL;
    if (!p) {
        free(args);
        return ferr_set(e, -ENOMEM, "spawn %s: out of memory", argv[0]);
    }
    memcpy(args, pre, npre * sizeof(*args));
    memcpy(args + npre, argv, argc * sizeof(*args));
    /* The run dir is QEMU's user's: a name there may have been replaced by a symlink. */
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (logfd < 0) {
        int rc = ferr_set(e, -errno, "open %s: %s", log_path, strerror(errno));
        free(args);
        free(p);
        return rc;
    }
    uv_stdio_container_t stdio[3 + QEMU_SPAWN_MAX_FDS] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = logfd},
        {.flags = UV_INHERIT_FD, .data.fd = logfd},
    };
    for (unsigned i = 0; i < opts->nfds; i++)
        stdio[3 + i] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = opts->fds[i]};
    uv_process_options_t opt = {
        .file = args[0],
        .args = args,
        .exit_cb = on_child_exit,
        .flags = UV_PROCESS_DETACHED, /* own session: QEMU outlives a ferryd restart */
        .stdio_count = 3 + (int)opts->nfds,
        .stdio = stdio,
    };
    int rc = uv_spawn(loop, &p->child, &opt);
    close(logfd);
    free(args);
    if (rc < 0) {
        ferr_set(e, rc, "spawn %s: %s", opt.file, uv_strerror(rc));
        /* uv_spawn initialised the handle even on failure: it must be closed. */
        p->done = true;
        p->closing++;
        uv_close((uv_handle_t *)&p->child, handle_closed);
        return rc;
    }
    p->child_active = true;
    p->pid = p->child.pid;
    p->started_ms = now_wall_ms();
    struct ferr we = {0};
    if (watch_pid(p, &we) < 0)
        log_warn("qemu pid %d: %s; relying on the exit status alone", p->pid, we.msg);
    *out = p;
    return 0;
}

bool qemu_pid_has_arg(int pid, const char *prefix)
{
    char path[64], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    if (file_read_all(path, 1 << 20, &text, &len, NULL) < 0)
        return false;
    bool ok = false;
    for (size_t i = 0; i < len && !ok; i += strlen(text + i) + 1)
        ok = strncmp(text + i, prefix, strlen(prefix)) == 0;
    free(text);
    return ok;
}

bool qemu_pid_is_guest(int pid, const char *guest)
{
    char path[64], *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (file_read_all(path, 4096, &text, NULL, NULL) < 0)
        return false;
    char *rp = strrchr(text, ')');
    bool alive = rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
    free(text);
    if (!alive)
        return false;
    char want[128];
    snprintf(want, sizeof(want), "guest=%s,", guest);
    return qemu_pid_has_arg(pid, want);
}

/* When process pid started (wall clock, ms) as /proc says: its start time in clock ticks since
 * boot (/proc/PID/stat field 22) after the boot time (/proc/stat btime); 0 if unknown. */
static uint64_t proc_started_ms(int pid)
{
    char path[64], *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (file_read_all(path, 4096, &text, NULL, NULL) < 0)
        return 0;
    unsigned long long ticks = 0;
    char *p = strrchr(text, ')'); /* the command name may hold spaces and ')' */
    int field = 2;
    for (; p && *p && field < 22; p++)
        if (*p == ' ')
            field++;
    if (!p || sscanf(p, "%llu", &ticks) != 1)
        ticks = 0;
    free(text);
    if (file_read_all("/proc/stat", 1 << 16, &text, NULL, NULL) < 0)
        return 0;
    unsigned long long btime = 0;
    char *b = strstr(text, "\nbtime ");
    if (b)
        sscanf(b + 7, "%llu", &btime);
    free(text);
    long hz = sysconf(_SC_CLK_TCK);
    if (!btime || !ticks || hz <= 0)
        return 0;
    return btime * 1000ull + ticks * 1000ull / (unsigned long long)hz;
}

int qemu_proc_adopt(uv_loop_t *loop, const char *pid_path, const char *guest, qemu_proc_exit_cb cb,
                    void *data, struct qemu_proc **out, struct ferr *e)
{
    char *text = NULL;
    if (file_read_all(pid_path, 64, &text, NULL, NULL) < 0)
        return ferr_set(e, FERR_NOTFOUND, "%s: no pid file", pid_path);
    int pid = atoi(text);
    free(text);
    if (pid <= 0 || !qemu_pid_is_guest(pid, guest))
        return ferr_set(e, FERR_STATE, "%s: pid %d is not %s's QEMU (any more)", pid_path, pid,
                        guest);
    struct qemu_proc *p = proc_new(loop, cb, data);
    if (!p)
        return ferr_set(e, -ENOMEM, "adopt pid %d: out of memory", pid);
    p->pid = pid;
    p->started_ms = proc_started_ms(pid);
    struct ferr we = {0};
    if (watch_pid(p, &we) < 0)
        log_warn("qemu pid %d: %s", pid, we.msg);
    *out = p;
    return 0;
}

int qemu_proc_pid(const struct qemu_proc *p)
{
    return p->pid;
}

uint64_t qemu_proc_started_ms(const struct qemu_proc *p)
{
    return p->started_ms;
}

void qemu_proc_signal(struct qemu_proc *p, int sig)
{
    if (p->pid > 0 && !p->done)
        kill(p->pid, sig);
}

void qemu_proc_release(struct qemu_proc *p)
{
    p->done = true;
    if (p->child_active) {
        /* Forget our child; it runs on as its own session and is adopted again later. */
        p->child_active = false;
        p->closing++;
        uv_close((uv_handle_t *)&p->child, handle_closed);
    }
    stop_pidfd(p);
    maybe_free(p);
}

void qemu_log_tail(const char *log_path, char *out, size_t size)
{
    char *text = NULL, proc[64];
    size_t len = 0;
    out[0] = '\0';
    /* Not through a symlink: the run dir is QEMU's user's, and this line goes into the VM's
     * failure reason. The file is read again through the descriptor's /proc link. */
    int fd = open(log_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int rc = file_read_all(proc, 1 << 20, &text, &len, NULL);
    close(fd);
    if (rc < 0)
        return;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    char *line = strrchr(text, '\n');
    snprintf(out, size, "%s", line ? line + 1 : text);
    free(text);
}
