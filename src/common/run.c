/* SPDX-License-Identifier: MIT */
/* Running a helper program (qemu-img, qemu -machine help) without a shell, output captured. */
#include "common/run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void run_free(struct run *r)
{
    free(r->out);
    r->out = NULL;
}

/* Appends to buf up to cap bytes (keeping one for the NUL); beyond that the bytes are dropped. */
static void keep(char *buf, size_t *len, size_t cap, const char *data, size_t n)
{
    size_t room = cap - 1 - *len;
    if (n > room)
        n = room;
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}

int run(char *const argv[], struct run *r, struct ferr *e)
{
    int out_p[2], err_p[2], rc;
    pid_t pid;
    memset(r, 0, sizeof(*r));
    r->out = malloc(RUN_STDOUT_MAX);
    if (!r->out)
        return ferr_set(e, -ENOMEM, "%s: out of memory", argv[0]);
    r->out[0] = '\0';

    if (pipe2(out_p, O_CLOEXEC) < 0) {
        rc = ferr_set(e, -errno, "%s: pipe: %s", argv[0], strerror(errno));
        goto err_after_alloc;
    }
    if (pipe2(err_p, O_CLOEXEC) < 0) {
        rc = ferr_set(e, -errno, "%s: pipe: %s", argv[0], strerror(errno));
        close(out_p[1]);
        goto err_after_out_pipe;
    }

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_p[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_p[1], 2);
    posix_spawnattr_init(&attr);
    /* The daemon may block or ignore signals; the child starts from a clean slate. */
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out_p[1]);
    close(err_p[1]);
    if (rc != 0) {
        if (rc == ENOENT)
            rc = ferr_set(e, -ENOENT, "%s: not found in PATH (is it installed?)", argv[0]);
        else
            rc = ferr_set(e, -rc, "%s: cannot start: %s", argv[0], strerror(rc));
        goto err_after_pipes;
    }

    struct pollfd pfd[2] = {{.fd = out_p[0], .events = POLLIN}, {.fd = err_p[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break; /* cannot happen with valid fds; reap the child below anyway */
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            char buf[4096];
            ssize_t n = read(pfd[i].fd, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                pfd[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                keep(r->out, &r->out_len, RUN_STDOUT_MAX, buf, (size_t)n);
            } else {
                keep(r->err, &r->err_len, sizeof(r->err), buf, (size_t)n);
            }
        }
    }
    close(out_p[0]);
    close(err_p[0]);
    while (waitpid(pid, &r->status, 0) < 0) {
        if (errno != EINTR) {
            rc = ferr_set(e, -errno, "%s: waitpid: %s", argv[0], strerror(errno));
            goto err_after_alloc;
        }
    }
    while (r->err_len && (r->err[r->err_len - 1] == '\n' || r->err[r->err_len - 1] == ' '))
        r->err[--r->err_len] = '\0';
    return 0;

err_after_pipes:
    close(err_p[0]);
err_after_out_pipe:
    close(out_p[0]);
err_after_alloc:
    run_free(r);
    return rc;
}

const char *run_why(const struct run *r, char *buf, size_t size)
{
    if (r->err_len)
        return r->err;
    if (WIFEXITED(r->status))
        snprintf(buf, size, "exit status %d", WEXITSTATUS(r->status));
    else if (WIFSIGNALED(r->status))
        snprintf(buf, size, "killed by signal %d", WTERMSIG(r->status));
    else
        snprintf(buf, size, "status 0x%x", (unsigned)r->status);
    return buf;
}

bool run_ok(const struct run *r)
{
    return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}
