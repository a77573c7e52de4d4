/* SPDX-License-Identifier: MIT */
/* A QEMU process under supervision: spawned detached, or adopted after a ferryd restart, and
 * watched until it is gone. */
#ifndef FERRY_QEMU_PROCESS_H
#define FERRY_QEMU_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "qemu/user.h"

/*
 * QEMU runs in a session of its own (UV_PROCESS_DETACHED) with stdout and stderr in a log
 * file, never a pipe: a ferryd that dies must not take QEMU with it (SIGPIPE), and QEMU's last
 * words explain a failed start. Its end is seen through a pidfd (pidfd_open), which works for
 * a QEMU another ferryd started too; for our own child libuv also reaps it, and the exit
 * status (which names a signal) waits for that.
 */
struct qemu_proc;

/* How a QEMU ended. */
struct qemu_exit {
    bool reaped;    /* our child: status and signal are known */
    int64_t status; /* exit status when reaped and signal is 0 */
    int signal;     /* the signal that ended it, 0 if none or not known */
};

/* Called once when QEMU is gone. p frees itself after the callback returns; do not use it
 * again (the callback may not release it either). */
typedef void (*qemu_proc_exit_cb)(struct qemu_proc *p, const struct qemu_exit *how, void *data);

#define QEMU_SPAWN_MAX_FDS 8

/* How a QEMU starts beyond its argv; every field may be 0. */
struct qemu_spawn_opts {
    /* Run as this user (setpriv(1): its uid, gid and groups, no capabilities, no new
     * privileges); NULL or one without drop: as ferryd. */
    const struct qemu_user *user;
    /* Descriptors QEMU finds open as 3, 4, ... (borrowed; the caller closes its own copies):
     * taps ferryd opened, which QEMU's user could not open itself. */
    const int *fds;
    unsigned nfds;
};

/* Starts argv (argv[0] the binary; borrowed) detached, stdout and stderr appended to a new
 * log_path (truncated; never through a symlink). opts may be NULL. On 0, *out watches it and
 * cb reports its end (its pid is QEMU's: setpriv execs it); on failure nothing is left running
 * and *out is untouched. */
int qemu_proc_spawn(uv_loop_t *loop, char *const *argv, const char *log_path,
                    const struct qemu_spawn_opts *opts, qemu_proc_exit_cb cb, void *data,
                    struct qemu_proc **out, struct ferr *e);

/* Adopts the QEMU whose pid pid_path holds, if it still runs and its command line names guest
 * (its -name guest=NAME, argument): a recycled pid is never adopted. FERR_NOTFOUND when there
 * is no pid file, FERR_STATE when the process is gone or is not that guest's QEMU (the file is
 * left for the caller). On 0, *out watches it as for qemu_proc_spawn (no exit status then). */
int qemu_proc_adopt(uv_loop_t *loop, const char *pid_path, const char *guest, qemu_proc_exit_cb cb,
                    void *data, struct qemu_proc **out, struct ferr *e);

int qemu_proc_pid(const struct qemu_proc *p);
/* When QEMU started (wall clock, ms): when we spawned it, or for an adopted one when the
 * kernel says the process started; 0 if unknown. */
uint64_t qemu_proc_started_ms(const struct qemu_proc *p);
/* Sends sig to QEMU (SIGKILL to end it now); cb follows once it is gone. */
void qemu_proc_signal(struct qemu_proc *p, int sig);
/* Stops watching; QEMU keeps running (a later qemu_proc_adopt finds it again) and cb is never
 * called. p frees itself once its handles closed. */
void qemu_proc_release(struct qemu_proc *p);

/* The last non-empty line of log_path (QEMU's last words: usually why it failed), "" if none. */
void qemu_log_tail(const char *log_path, char *out, size_t size);

/* pid is a live (not zombie) process whose command line has an argument starting with
 * "guest=NAME," (how ferry names a VM's QEMU). */
bool qemu_pid_is_guest(int pid, const char *guest);
/* pid's command line has an argument that starts with prefix (false if it cannot be read). */
bool qemu_pid_has_arg(int pid, const char *prefix);

#endif
