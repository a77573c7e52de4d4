/* SPDX-License-Identifier: MIT */
/* A qemu-storage-daemon per volume on its coordinator (storaged.h). */
#include "storage/storaged.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "qemu/process.h"
#include "qemu/qmp.h"

#define QMP_RETRY_MS 50
#define READY_WITHIN_MS 10000 /* the daemon's QMP answers within this, or it is ended */
#define KILL_AFTER_MS 5000    /* SIGTERM, then SIGKILL */
#define OP_LIMIT_MS 15000     /* an export or unexport longer than this: the daemon is hung */

struct req {
    struct req *next;
    bool unexport;
    unsigned tries;
    char name[512];
    char path[1024];
    storaged_cb cb;
    void *data;
};

struct exp {
    struct exp *next;
    char name[512];
    char path[1024];
    unsigned n; /* node "n<n>", export "e<n>" */
};

struct storaged {
    uv_loop_t *loop;
    char binary[256], dir[512], host[64], label[128];
    unsigned port;
    struct qemu_user user;
    void (*on_gone)(struct storaged *s, const char *why, void *data);
    void *data;
    struct qemu_proc *proc;
    struct qmp_conn *qmp;
    bool ready, stopping, gone;
    uint64_t started_ms;
    uv_timer_t timer; /* QMP connect retries, then the SIGKILL deadline */
    uv_timer_t retry; /* an unexport's blockdev-del, tried again while the export closes */
    uv_timer_t watch; /* the request under way must end within OP_LIMIT_MS */
    struct req *queue, *current;
    unsigned seq;      /* counts the requests that became current */
    unsigned giving;   /* give jobs in the thread pool (s is freed only once they are back) */
    unsigned give_seq; /* the request the last give job was for */
    struct exp *exps;
    unsigned next_n;
    void (*stop_done)(void *data);
    void *stop_data;
    unsigned closing; /* handles not closed yet */
};

static void maybe_free(struct storaged *s)
{
    if (!s->gone || s->closing > 0 || s->giving > 0)
        return;
    while (s->exps) {
        struct exp *x = s->exps;
        s->exps = x->next;
        free(x);
    }
    free(s);
}

static void timer_closed(uv_handle_t *h)
{
    struct storaged *s = h->data;
    s->closing--;
    maybe_free(s);
}

static void close_timers(struct storaged *s)
{
    s->closing = 3;
    uv_close((uv_handle_t *)&s->timer, timer_closed);
    uv_close((uv_handle_t *)&s->retry, timer_closed);
    uv_close((uv_handle_t *)&s->watch, timer_closed);
}

static void fail_queue(struct storaged *s, const struct ferr *e)
{
    struct req *all = s->current;
    if (all)
        all->next = s->queue;
    else
        all = s->queue;
    s->current = s->queue = NULL;
    while (all) {
        struct req *r = all;
        all = r->next;
        r->cb(e->code, e, r->data);
        free(r);
    }
}

static void proc_exited(struct qemu_proc *p, const struct qemu_exit *how, void *data)
{
    (void)p;
    struct storaged *s = data;
    s->proc = NULL;
    s->ready = false;
    s->gone = true;
    if (s->qmp) {
        qmp_conn_close(s->qmp);
        s->qmp = NULL;
    }
    char logp[700], tail[300], why[400];
    snprintf(logp, sizeof(logp), "%s/qsd.log", s->dir);
    qemu_log_tail(logp, tail, sizeof(tail));
    if (how && how->signal)
        snprintf(why, sizeof(why), "qemu-storage-daemon ended by signal %d%s%s", how->signal,
                 tail[0] ? ": " : "", tail);
    else
        snprintf(why, sizeof(why), "qemu-storage-daemon exited%s%s", tail[0] ? ": " : "", tail);
    struct ferr e;
    ferr_set(&e, FERR_UNAVAIL, "volume %s: %s", s->label, why);
    fail_queue(s, &e);
    close_timers(s);
    if (s->stopping) {
        log_info("volume %s: storage daemon stopped", s->label);
        if (s->stop_done)
            s->stop_done(s->stop_data);
    } else {
        log_warn("volume %s: %s", s->label, why);
        if (s->on_gone)
            s->on_gone(s, why, s->data);
    }
    maybe_free(s);
}

static void kill_now(uv_timer_t *t)
{
    struct storaged *s = t->data;
    if (s->proc)
        qemu_proc_signal(s->proc, SIGKILL);
}

static void end_daemon(struct storaged *s, const char *why)
{
    if (why)
        log_warn("volume %s: %s: ending the storage daemon", s->label, why);
    if (s->proc) {
        qemu_proc_signal(s->proc, SIGTERM);
        uv_timer_start(&s->timer, kill_now, KILL_AFTER_MS, 0);
    }
}

static void run_queue(struct storaged *s);

static void step_done(struct storaged *s, int status, const char *msg)
{
    struct req *r = s->current;
    s->current = NULL;
    uv_timer_stop(&s->watch);
    if (!r)
        return;
    struct ferr e = {0};
    if (status < 0)
        ferr_set(&e, FERR_UNAVAIL, "volume %s: cannot export %s: %s", s->label, r->name, msg);
    r->cb(status < 0 ? e.code : 0, status < 0 ? &e : NULL, r->data);
    free(r);
    run_queue(s);
}

static void export_added(struct qmp_conn *c, int status, json_t *result, const char *err,
                         void *data)
{
    (void)result;
    struct storaged *s = data;
    struct req *r = s->current;
    if (status < 0 || !r) {
        /* The node goes again: it holds the file's lock, and the next attempt adds a new
         * node for the same file. */
        char node[32];
        snprintf(node, sizeof(node), "n%u", s->next_n - 1);
        qmp_conn_execute(c, "blockdev-del", json_pack("{ss}", "node-name", node), NULL, NULL);
        step_done(s, status < 0 ? status : FERR_INTERNAL, err ? err : "no request");
        return;
    }
    struct exp *x = calloc(1, sizeof(*x));
    if (!x) {
        step_done(s, -ENOMEM, "out of memory");
        return;
    }
    snprintf(x->name, sizeof(x->name), "%s", r->name);
    snprintf(x->path, sizeof(x->path), "%s", r->path);
    x->n = s->next_n - 1;
    x->next = s->exps;
    s->exps = x;
    log_info("volume %s: exporting %s over NBD on %s:%u", s->label, r->path, s->host, s->port);
    step_done(s, 0, NULL);
}

static void node_added(struct qmp_conn *c, int status, json_t *result, const char *err, void *data)
{
    (void)result;
    struct storaged *s = data;
    if (status < 0 || !s->current) {
        step_done(s, status < 0 ? status : FERR_INTERNAL, err ? err : "no request");
        return;
    }
    char node[32], id[32];
    snprintf(node, sizeof(node), "n%u", s->next_n - 1);
    snprintf(id, sizeof(id), "e%u", s->next_n - 1);
    json_t *args = json_pack("{ss ss ss ss sb}", "type", "nbd", "id", id, "node-name", node, "name",
                             s->current->name, "writable", 1);
    if (qmp_conn_execute(c, "block-export-add", args, export_added, s) < 0)
        step_done(s, FERR_UNAVAIL, "QMP connection closing");
}

static const struct exp *find_exp(const struct storaged *s, const char *name)
{
    for (const struct exp *x = s->exps; x; x = x->next)
        if (strcmp(x->name, name) == 0)
            return x;
    return NULL;
}

static void forget_exp(struct storaged *s, const char *name)
{
    for (struct exp **p = &s->exps; *p; p = &(*p)->next)
        if (strcmp((*p)->name, name) == 0) {
            struct exp *x = *p;
            *p = x->next;
            free(x);
            return;
        }
}

static void node_deleted(struct qmp_conn *c, int status, json_t *result, const char *err,
                         void *data);

static void del_node(struct storaged *s)
{
    const struct exp *x = s->current ? find_exp(s, s->current->name) : NULL;
    if (!x) {
        step_done(s, 0, NULL);
        return;
    }
    char node[32];
    snprintf(node, sizeof(node), "n%u", x->n);
    if (qmp_conn_execute(s->qmp, "blockdev-del", json_pack("{ss}", "node-name", node), node_deleted,
                         s) < 0)
        step_done(s, FERR_UNAVAIL, "QMP connection closing");
}

static void retry_del(uv_timer_t *t)
{
    struct storaged *s = t->data;
    if (s->current && s->qmp)
        del_node(s);
}

/* The export closes its clients' connections first; its node is deleted once nothing uses
 * it any more (tried every 100 ms for up to 5 s). */
static void node_deleted(struct qmp_conn *c, int status, json_t *result, const char *err,
                         void *data)
{
    (void)c;
    (void)result;
    struct storaged *s = data;
    struct req *r = s->current;
    if (!r)
        return;
    if (status == FERR_QEMU && ++r->tries < 50) {
        uv_timer_start(&s->retry, retry_del, 100, 0);
        return;
    }
    if (status == 0) {
        log_info("volume %s: %s not exported any more", s->label, r->name);
        forget_exp(s, r->name);
    }
    step_done(s, status, err);
}

static void export_deleted(struct qmp_conn *c, int status, json_t *result, const char *err,
                           void *data)
{
    (void)c;
    (void)result;
    (void)err;
    struct storaged *s = data;
    if (!s->current)
        return;
    if (status < 0 && status != FERR_QEMU) { /* an error answer: gone already */
        step_done(s, status, err);
        return;
    }
    del_node(s);
}

static void hung(uv_timer_t *t)
{
    struct storaged *s = t->data;
    if (!s->current)
        return;
    /* Its file's hand-over hangs, not the daemon: only this request fails (give_start). */
    if (s->giving > 0 && s->give_seq == s->seq)
        step_done(s, FERR_UNAVAIL,
                  "giving the file to the storage daemon's user did not finish in 15 s: does "
                  "the volume's file server answer?");
    else
        end_daemon(s, "its QMP did not answer an export request in 15 s"); /* fails the queue */
}

/* The current request's file opened by the daemon (blockdev-add, then node_added exports it). */
static void add_node(struct storaged *s)
{
    char node[32];
    snprintf(node, sizeof(node), "n%u", s->next_n++);
    /* The file's page cache and flushes as QEMU's default (writeback, flush honoured):
     * a guest's flush reaches the disk through NBD_CMD_FLUSH. */
    json_t *args = json_pack("{ss ss s{ss ss}}", "driver", "vpc", "node-name", node, "file",
                             "driver", "file", "filename", s->current->path);
    if (!s->qmp) {
        json_decref(args);
        step_done(s, FERR_UNAVAIL, "QMP connection closing");
    } else if (qmp_conn_execute(s->qmp, "blockdev-add", args, node_added, s) < 0) {
        step_done(s, FERR_UNAVAIL, "QMP connection closing");
    }
}

/* An export's file handed to the daemon's user (0600) in the thread pool: chown and the
 * reach check's stats may wait for a network volume's server. The job touches only itself. */
struct give_job {
    uv_work_t w;
    struct storaged *s;
    unsigned seq; /* the request it is for (s->seq then) */
    struct qemu_user user;
    char path[1024];
    int rc;
    struct ferr e;
};

static void give_work(uv_work_t *w)
{
    struct give_job *j = w->data;
    /* The file a symlink names is what the daemon opens: its directory must be passable. */
    char dir[PATH_MAX];
    if (!realpath(j->path, dir)) {
        j->rc = ferr_set(&j->e, -errno, "%s: %s", j->path, strerror(errno));
        return;
    }
    if ((j->rc = qemu_user_check_reach(&j->user, dirname(dir), &j->e)) == 0)
        j->rc = qemu_user_give_file(&j->user, j->path, &j->e);
}

static void give_done(uv_work_t *w, int status)
{
    struct give_job *j = w->data;
    struct storaged *s = j->s;
    s->giving--;
    /* Still the request under way (not failed by hung or a stop meanwhile)? */
    if (s->current && s->seq == j->seq && !s->gone && !s->stopping) {
        if (status < 0) {
            step_done(s, status, "the file's hand-over was cancelled");
        } else if (j->rc < 0) {
            step_done(s, j->rc, j->e.msg); /* names the user, the file and what to do */
        } else {
            add_node(s);
        }
    }
    free(j);
    maybe_free(s);
}

static void give_start(struct storaged *s)
{
    /* One hand-over at a time: one that hung (hung() failed its request) still holds a
     * thread of the pool, and each retry of the clients would hold another. */
    if (s->giving > 0) {
        step_done(s, FERR_UNAVAIL,
                  "an earlier file's hand-over to the storage daemon's user has not returned "
                  "(does the volume's file server answer?); try again");
        return;
    }
    struct give_job *j = calloc(1, sizeof(*j));
    if (!j) {
        step_done(s, -ENOMEM, "out of memory");
        return;
    }
    j->w.data = j;
    j->s = s;
    j->seq = s->seq;
    j->user = s->user;
    snprintf(j->path, sizeof(j->path), "%s", s->current->path);
    int rc = uv_queue_work(s->loop, &j->w, give_work, give_done);
    if (rc < 0) {
        free(j);
        step_done(s, rc, "the thread pool refused the file's hand-over");
        return;
    }
    s->giving++;
    s->give_seq = s->seq;
}

static void run_queue(struct storaged *s)
{
    while (s->ready && !s->current && s->queue) {
        struct req *r = s->queue;
        s->queue = r->next;
        r->next = NULL;
        const struct exp *x = find_exp(s, r->name);
        if (r->unexport) {
            if (!x) {
                r->cb(0, NULL, r->data);
                free(r);
                continue;
            }
            s->current = r;
            s->seq++;
            uv_timer_start(&s->watch, hung, OP_LIMIT_MS, 0);
            char id[32];
            snprintf(id, sizeof(id), "e%u", x->n);
            if (qmp_conn_execute(s->qmp, "block-export-del",
                                 json_pack("{ss ss}", "id", id, "mode", "hard"), export_deleted,
                                 s) < 0)
                step_done(s, FERR_UNAVAIL, "QMP connection closing");
            continue;
        }
        if (x) {
            if (strcmp(x->path, r->path) == 0) {
                r->cb(0, NULL, r->data);
            } else {
                struct ferr e;
                ferr_set(&e, FERR_EXISTS, "volume %s: export %s serves %s, not %s", s->label,
                         r->name, x->path, r->path);
                r->cb(e.code, &e, r->data);
            }
            free(r);
            continue;
        }
        s->current = r;
        s->seq++;
        uv_timer_start(&s->watch, hung, OP_LIMIT_MS, 0);
        if (s->user.drop)
            give_start(s); /* then add_node */
        else
            add_node(s);
    }
}

static void connect_qmp(struct storaged *s);
static void connect_timer(uv_timer_t *t);

static void qmp_ready(struct qmp_conn *c, void *data)
{
    (void)c;
    struct storaged *s = data;
    s->ready = true;
    uv_timer_stop(&s->timer);
    log_info("volume %s: storage daemon pid %d ready, NBD on %s:%u", s->label,
             qemu_proc_pid(s->proc), s->host, s->port);
    run_queue(s);
}

static void qmp_closed(struct qmp_conn *c, int status, const char *msg, void *data)
{
    (void)c;
    (void)status;
    struct storaged *s = data;
    s->qmp = NULL;
    if (s->gone || s->stopping)
        return;
    if (s->ready) {
        s->ready = false;
        end_daemon(s, msg); /* a daemon we cannot steer serves nobody safely */
        return;
    }
    if (now_mono_ms() - s->started_ms > READY_WITHIN_MS) {
        end_daemon(s, "its QMP socket did not answer in time");
        return;
    }
    uv_timer_start(&s->timer, connect_timer, QMP_RETRY_MS, 0);
}

static void connect_qmp(struct storaged *s)
{
    if (s->gone || s->stopping)
        return;
    char sock[700];
    snprintf(sock, sizeof(sock), "%s/qmp.sock", s->dir);
    struct qmp_callbacks cb = {
        .on_ready = qmp_ready, .on_event = NULL, .on_closed = qmp_closed, .data = s};
    struct ferr e = {0};
    if (qmp_conn_open(s->loop, sock, &cb, &s->qmp, &e) < 0)
        end_daemon(s, e.msg);
}

static void connect_timer(uv_timer_t *t)
{
    connect_qmp(t->data);
}

/* The pid in the pid file at path, 0 if none. The directory is the daemon's user's: a
 * symlink or a FIFO put at that name is neither followed nor waited on. */
static int read_pid(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[32];
    struct stat st;
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, buf, sizeof(buf) - 1) : -1;
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return atoi(buf);
}

/* A daemon a previous ferryd left in dir (its pid file, and its command line names our QMP
 * socket) serves nobody now: it is ended so that its file locks go. */
static void end_stale(const char *dir, const char *qmp_arg)
{
    char pidp[700];
    snprintf(pidp, sizeof(pidp), "%s/qsd.pid", dir);
    int pid = read_pid(pidp);
    if (pid > 1 && qemu_pid_has_arg(pid, qmp_arg)) {
        log_warn("ending the storage daemon pid %d a previous ferryd left in %s", pid, dir);
        kill(pid, SIGKILL);
        for (int i = 0; i < 100 && kill(pid, 0) == 0 && qemu_pid_has_arg(pid, qmp_arg); i++)
            usleep(10000);
    }
    unlink(pidp);
}

int storaged_start(uv_loop_t *loop, const struct storaged_cfg *cfg, struct storaged **out,
                   struct ferr *e)
{
    /* dir is the daemon's user's (it makes qmp.sock and qsd.pid there itself); ferryd opens
     * qsd.log and reads qsd.pid without following a symlink. */
    const struct qemu_user as_ferryd = {0}, *u = cfg->user ? cfg->user : &as_ferryd;
    int rc;
    if ((rc = mkdir_p(cfg->dir, 0700, e)) < 0 || (rc = qemu_user_give(u, cfg->dir, 0700, e)) < 0 ||
        (rc = qemu_user_check_reach(u, cfg->dir, e)) < 0) {
        ferr_prefix(e, "volume %s: storage daemon", cfg->label);
        return rc;
    }
    struct storaged *s = calloc(1, sizeof(*s));
    if (!s)
        return ferr_set(e, -ENOMEM, "out of memory");
    s->loop = loop;
    snprintf(s->binary, sizeof(s->binary), "%s", cfg->binary);
    snprintf(s->dir, sizeof(s->dir), "%s", cfg->dir);
    snprintf(s->host, sizeof(s->host), "%s", cfg->host);
    snprintf(s->label, sizeof(s->label), "%s", cfg->label);
    s->port = cfg->port;
    s->user = *u;
    s->on_gone = cfg->on_gone;
    s->data = cfg->data;
    char chardev[800], nbd[200], pidf[700], logp[700];
    snprintf(chardev, sizeof(chardev), "socket,id=ferry-qmp,path=%s/qmp.sock,server=on,wait=off",
             s->dir);
    end_stale(s->dir, chardev);
    snprintf(nbd, sizeof(nbd), "addr.type=inet,addr.host=%s,addr.port=%u", s->host, s->port);
    snprintf(pidf, sizeof(pidf), "%s/qsd.pid", s->dir);
    snprintf(logp, sizeof(logp), "%s/qsd.log", s->dir);
    /* The daemon dies with this ferryd (setpriv --pdeathsig, util-linux): a coordinator
     * whose ferryd crashed stops renewing its lease, another node takes the volume once the
     * lease is stale, and no daemon of the old one may still hold the files then (two daemons
     * caching one VHD's metadata would corrupt it; the image lock would block the new one).
     * This setpriv runs inside qemu_proc_spawn's, after the drop to the user: a change of
     * credentials clears the parent-death signal (prctl(2)), so it must be set after. The
     * kernel sends it to another uid only if the dying ferryd may signal it (CAP_KILL). */
    char *argv[] = {
        "setpriv",           "--pdeathsig",  "KILL", s->binary,   "--chardev", chardev, "--monitor",
        "chardev=ferry-qmp", "--nbd-server", nbd,    "--pidfile", pidf,        NULL};
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->retry);
    uv_timer_init(loop, &s->watch);
    s->timer.data = s->retry.data = s->watch.data = s;
    /* As the user, with no capabilities and no new privileges (qemu_proc_spawn's setpriv).
     * qemu-storage-daemon has no -sandbox option (QEMU 10.0), so no seccomp filter. */
    const struct qemu_spawn_opts opts = {.user = &s->user};
    rc = qemu_proc_spawn(loop, argv, logp, &opts, proc_exited, s, &s->proc, e);
    if (rc < 0) {
        s->gone = true;
        close_timers(s);
        return rc;
    }
    s->started_ms = now_mono_ms();
    uv_timer_start(&s->timer, connect_timer, QMP_RETRY_MS, 0);
    *out = s;
    return 0;
}

static int enqueue(struct storaged *s, bool unexport, const char *name, const char *path,
                   storaged_cb cb, void *data, struct ferr *e);

int storaged_export(struct storaged *s, const char *name, const char *path, storaged_cb cb,
                    void *data, struct ferr *e)
{
    return enqueue(s, false, name, path, cb, data, e);
}

int storaged_unexport(struct storaged *s, const char *name, storaged_cb cb, void *data,
                      struct ferr *e)
{
    return enqueue(s, true, name, "", cb, data, e);
}

static int enqueue(struct storaged *s, bool unexport, const char *name, const char *path,
                   storaged_cb cb, void *data, struct ferr *e)
{
    if (s->stopping || s->gone)
        return ferr_set(e, FERR_STATE, "volume %s: the storage daemon is stopping", s->label);
    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return ferr_set(e, -ENOMEM, "out of memory");
    r->unexport = unexport;
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->cb = cb;
    r->data = data;
    struct req **p = &s->queue;
    while (*p)
        p = &(*p)->next;
    *p = r;
    run_queue(s);
    return 0;
}

void storaged_stop(struct storaged *s, void (*done)(void *data), void *data)
{
    s->stop_done = done;
    s->stop_data = data;
    if (s->stopping)
        return;
    s->stopping = true;
    s->ready = false;
    struct ferr e;
    ferr_set(&e, FERR_UNAVAIL, "volume %s: the storage daemon is stopping", s->label);
    fail_queue(s, &e);
    if (s->qmp) {
        qmp_conn_close(s->qmp);
        s->qmp = NULL;
    }
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->retry);
    uv_timer_stop(&s->watch);
    end_daemon(s, NULL);
}

unsigned storaged_port(const struct storaged *s)
{
    return s->port;
}

json_t *storaged_exports(const struct storaged *s)
{
    json_t *out = json_array();
    for (const struct exp *x = s->exps; x; x = x->next)
        json_array_append_new(out, json_pack("{ss ss}", "name", x->name, "path", x->path));
    return out;
}

int storaged_pid(const struct storaged *s)
{
    return s->proc ? qemu_proc_pid(s->proc) : 0;
}
