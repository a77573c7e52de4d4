/* SPDX-License-Identifier: MIT */
/* Moving a VM's disk while it runs (storagemove.h).
 *
 * Live: the new fixed VHD is made (qemu-img, in the thread pool), attached to the VM's QEMU
 * beside the old one (blockdev-add: file, then raw with the disk's size, as ferry attaches a
 * fixed VHD), and blockdev-mirror copies the old onto it in write-blocking mode: once the copy
 * has caught up, every guest write goes to both before it is acknowledged, so the job always
 * converges. At "ready" job-complete pivots the device onto the new node; the old nodes are
 * deleted, then the spec and the cluster record are changed. Before the pivot any failure or a
 * cancel ends the job, deletes the new nodes and the new file: the VM stays on its old disk.
 * Stopped: qemu-img convert (vhd_convert, which never leaves a half file), then the spec.
 */
#include "fleet/storagemove.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/jsonfield.h"
#include "common/log.h"
#include "common/util.h"
#include "fleet/fleet.h"
#include "storage/vhd.h"
#include "vm/vm.h"

#define POLL_MS 200
#define UNDO_POLLS_MAX 150 /* 30 s for QEMU to end a cancelled job */
#define MIB (1024ull * 1024)

struct sm {
    struct sm *next;
    struct storage_move_env env;
    struct vmset *set;
    struct vm *vm;
    char name[80];
    unsigned disk;
    char from[1024], to[1024];
    struct qemu_user user; /* the VM's QEMU's, which opens the new file (blockdev-add) */
    bool live;
    unsigned speed_mib;
    uint64_t size;
    char root[40], file[48], nroot[40], nfile[48], job[32];
    bool nodes_added, file_added, job_started, completing, cancelled, failed, file_made;
    const char *phase;
    unsigned undo_polls;
    uint64_t done, total;
    struct ferr err;
    uv_timer_t poll;
    uv_work_t work;
    struct ferr work_err;
    int work_rc;
    reply_cb cb;
    void *data;
};

static struct sm *moves;

static struct sm *find(const char *name)
{
    for (struct sm *m = moves; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

static void unlink_move(struct sm *m)
{
    for (struct sm **pp = &moves; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            return;
        }
}

static void freed(uv_handle_t *h)
{
    free(h->data);
}

/* The VM the move is for, if it is still the one it started with. */
static struct vm *vm_of(struct sm *m)
{
    struct vm *vm = vmset_find(m->set, m->name);
    return vm == m->vm ? vm : NULL;
}

/* The end: the VM's mark goes, the caller hears, m goes. */
static void finish(struct sm *m, int status, json_t *body)
{
    struct vm *vm = vm_of(m);
    if (vm)
        vm_storage_move_mark(vm, -1);
    unlink_move(m);
    uv_timer_stop(&m->poll);
    if (m->failed)
        log_warn("vm %s: storage move of disks[%u] to %s failed: %s", m->name, m->disk, m->to,
                 m->err.msg);
    else
        log_info("vm %s: disks[%u] moved from %s to %s", m->name, m->disk, m->from, m->to);
    reply_cb cb = m->cb;
    void *data = m->data;
    struct ferr err = m->err;
    bool failed = m->failed;
    uv_close((uv_handle_t *)&m->poll, freed);
    if (failed)
        cb(0, NULL, &err, data);
    else
        cb(status, body, NULL, data);
}

static void fail(struct sm *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void undo(struct sm *m);

/* Records the first failure and starts the undo (once: a second failure is the undo's). */
static void fail(struct sm *m, int code, const char *fmt, ...)
{
    if (m->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    char msg[FERR_MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ferr_set(&m->err, code, "%s", msg);
    m->failed = true;
    undo(m);
}

static int qmp(struct sm *m, const char *cmd, json_t *args, vm_qmp_cb cb)
{
    struct vm *vm = vm_of(m);
    struct ferr e = {0};
    if (!vm) {
        json_decref(args);
        if (!m->failed)
            ferr_set(&m->err, FERR_STATE, "the VM went away");
        return FERR_STATE;
    }
    int rc = vm_qmp(vm, cmd, args, cb, m, &e);
    if (rc < 0 && !m->failed)
        m->err = e;
    return rc;
}

/* ---- the undo: job ended, new nodes deleted, new file removed ---- */

static void undo_unlinked(uv_fs_t *req)
{
    struct sm *m = req->data;
    if (req->result < 0 && req->result != UV_ENOENT)
        log_warn("vm %s: storage move: %s stays: %s", m->name, m->to,
                 uv_strerror((int)req->result));
    uv_fs_req_cleanup(req);
    free(req);
    finish(m, 0, NULL);
}

static void undo_file(struct sm *m)
{
    if (!m->file_made) {
        finish(m, 0, NULL);
        return;
    }
    m->file_made = false;
    uv_fs_t *req = calloc(1, sizeof(*req));
    if (!req || uv_fs_unlink(m->env.loop, req, m->to, undo_unlinked) < 0) {
        free(req);
        log_warn("vm %s: storage move: %s stays", m->name, m->to);
        finish(m, 0, NULL);
        return;
    }
    req->data = m;
}

static void undo_deleted(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    undo(d);
}

static void undo_poll(uv_timer_t *t);

static void undo_jobs(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    if (status < 0) { /* QEMU gone or QMP broke: nothing more to ask it */
        m->job_started = m->nodes_added = m->file_added = false;
        undo(m);
        return;
    }
    size_t i;
    json_t *j;
    json_array_foreach(r, i, j)
    {
        if (strcmp(jfield_text(j, "id"), m->job) != 0)
            continue;
        const char *st = jfield_text(j, "status");
        if (strcmp(st, "concluded") == 0) {
            qmp(m, "job-dismiss", json_pack("{ss}", "id", m->job), NULL);
            m->job_started = false;
            undo(m);
        } else if (++m->undo_polls > UNDO_POLLS_MAX) {
            /* QEMU does not end the job: leave it, and the new file (the job writes it) */
            log_warn("vm %s: storage move: QEMU did not end job %s after %d s; it and %s stay",
                     m->name, m->job, UNDO_POLLS_MAX * POLL_MS / 1000, m->to);
            finish(m, 0, NULL);
        } else {
            uv_timer_start(&m->poll, undo_poll, POLL_MS, 0);
        }
        return;
    }
    m->job_started = false; /* gone */
    undo(m);
}

static void undo_poll(uv_timer_t *t)
{
    struct sm *m = t->data;
    if (qmp(m, "query-jobs", NULL, undo_jobs) < 0) {
        m->job_started = m->nodes_added = m->file_added = false;
        undo(m);
    }
}

/* One step of the undo at a time, each asking QEMU and coming back here. */
static void undo(struct sm *m)
{
    uv_timer_stop(&m->poll);
    if (m->job_started) {
        if (!m->cancelled) {
            m->cancelled = true;
            /* force: a mirror that is ready would otherwise finish (without a switch) only
             * once it caught up again */
            qmp(m, "block-job-cancel", json_pack("{ss sb}", "device", m->job, "force", 1), NULL);
        }
        undo_poll(&m->poll);
        return;
    }
    if (m->nodes_added) {
        m->nodes_added = false;
        if (qmp(m, "blockdev-del", json_pack("{ss}", "node-name", m->nroot), undo_deleted) == 0)
            return;
    }
    if (m->file_added) {
        m->file_added = false;
        if (qmp(m, "blockdev-del", json_pack("{ss}", "node-name", m->nfile), undo_deleted) == 0)
            return;
    }
    undo_file(m);
}

/* ---- after the pivot ---- */

static void published(int status, json_t *body, const struct ferr *e, void *data)
{
    struct sm *m = data;
    json_decref(body);
    struct vm *vm = vm_of(m);
    if (e)
        log_warn("vm %s: disks[%u] is %s now, but the cluster record still says %s: %s "
                 "(the owner writes it again with its next change)",
                 m->name, m->disk, m->to, m->from, e->msg);
    finish(m, 200, vm ? fleet_vm_json(m->env.fleet, vm) : json_object());
}

/* The VM runs on the new file: its spec says so, then its record. */
static void adopt_new_path(struct sm *m)
{
    struct vm *vm = vm_of(m);
    struct ferr e = {0};
    if (!vm) {
        m->failed = true;
        ferr_set(&m->err, FERR_STATE, "the VM went away after its disk moved to %s", m->to);
        finish(m, 0, NULL);
        return;
    }
    if (vm_set_disk_path(vm, m->disk, m->to, &e) < 0) {
        /* QEMU writes to the new file; a spec that says otherwise would boot the old one. */
        m->failed = true;
        ferr_set(&m->err, e.code,
                 "disks[%u] was moved to %s, but the VM's spec could not be saved (%s): stop "
                 "the VM and fix STATE/vms/%s/vm.json by hand",
                 m->disk, m->to, e.msg, m->name);
        finish(m, 0, NULL);
        return;
    }
    m->phase = "done";
    if (fleet_publish_spec(m->env.fleet, vm, published, m, &e) < 0)
        published(0, NULL, &e, m);
}

static void old_deleted(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    if (status < 0)
        log_warn("vm %s: storage move: an old node of %s stays attached: %s", m->name, m->from,
                 err ? err : "QMP closed");
    if (m->file[0]) { /* the root went; now its file */
        char file[sizeof(m->file)];
        snprintf(file, sizeof(file), "%s", m->file);
        m->file[0] = '\0';
        if (qmp(m, "blockdev-del", json_pack("{ss}", "node-name", file), old_deleted) == 0)
            return;
    }
    adopt_new_path(m);
}

static void pivot_checked(struct qmp_conn *c, int status, json_t *r, const char *err, void *d);

/* ---- the job ---- */

static void job_poll(uv_timer_t *t);

static void jobs_seen(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    if (m->failed)
        return; /* the undo owns m */
    if (status < 0) {
        fail(m, FERR_QEMU, "query-jobs: %s", err ? err : "QMP closed");
        return;
    }
    size_t i;
    json_t *j;
    json_array_foreach(r, i, j)
    {
        if (strcmp(jfield_text(j, "id"), m->job) != 0)
            continue;
        const char *st = jfield_text(j, "status");
        m->done = (uint64_t)json_integer_value(json_object_get(j, "current-progress"));
        m->total = (uint64_t)json_integer_value(json_object_get(j, "total-progress"));
        if (strcmp(st, "concluded") == 0) {
            const char *jerr = json_string_value(json_object_get(j, "error"));
            qmp(m, "job-dismiss", json_pack("{ss}", "id", m->job), NULL);
            m->job_started = false;
            if (jerr) {
                fail(m, FERR_QEMU, "the copy failed: %s", jerr);
                return;
            }
            if (!m->completing) {
                fail(m, FERR_QEMU, "the copy ended before it was complete");
                return;
            }
            /* pivoted: check that the device runs on the new node */
            m->phase = "pivot";
            if (qmp(m, "query-block", NULL, pivot_checked) < 0)
                fail(m, FERR_QEMU, "query-block: %s", m->err.msg);
            return;
        }
        if (strcmp(st, "ready") == 0 && !m->completing && !m->cancelled) {
            m->completing = true;
            m->phase = "switching";
            qmp(m, "job-complete", json_pack("{ss}", "id", m->job), NULL);
        }
        uv_timer_start(&m->poll, job_poll, POLL_MS, 0);
        return;
    }
    m->job_started = false;
    fail(m, FERR_QEMU, "the copy job %s vanished", m->job);
}

static void job_poll(uv_timer_t *t)
{
    struct sm *m = t->data;
    if (qmp(m, "query-jobs", NULL, jobs_seen) < 0)
        fail(m, FERR_QEMU, "query-jobs: %s", m->err.msg);
}

static void mirror_started(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    if (status < 0) {
        m->job_started = false;
        fail(m, FERR_QEMU, "blockdev-mirror: %s", err ? err : "QMP closed");
        return;
    }
    m->phase = "copying";
    if (m->cancelled) { /* asked while the job was being started */
        m->cancelled = false;
        fail(m, -ECANCELED, "cancelled by request");
        return;
    }
    uv_timer_start(&m->poll, job_poll, POLL_MS, 0);
}

static void root_added(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    if (status < 0) {
        m->nodes_added = false; /* not there; the file node is undone */
        fail(m, FERR_QEMU, "blockdev-add (raw): %s", err ? err : "QMP closed");
        return;
    }
    json_t *args = json_pack("{ss ss ss ss ss sb sb}", "job-id", m->job, "device", m->root,
                             "target", m->nroot, "sync", "full", "copy-mode", "write-blocking",
                             "auto-finalize", 1, "auto-dismiss", 0);
    if (m->speed_mib)
        json_object_set_new(args, "speed", json_integer((json_int_t)(m->speed_mib * MIB)));
    m->job_started = true;
    if (qmp(m, "blockdev-mirror", args, mirror_started) < 0) {
        m->job_started = false;
        fail(m, FERR_QEMU, "blockdev-mirror: %s", m->err.msg);
    }
}

static void file_added(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    if (status < 0) {
        m->file_added = false;
        fail(m, FERR_QEMU, "blockdev-add (file): %s", err ? err : "QMP closed");
        return;
    }
    /* the raw node over it, with the disk's size: the VHD's footer stays out of the guest's
     * sight, as when ferry attaches a fixed VHD at start */
    json_t *args = json_pack("{ss ss ss sI}", "driver", "raw", "file", m->nfile, "node-name",
                             m->nroot, "size", (json_int_t)m->size);
    m->nodes_added = true;
    if (qmp(m, "blockdev-add", args, root_added) < 0) {
        m->nodes_added = false;
        fail(m, FERR_QEMU, "blockdev-add (raw): %s", m->err.msg);
    }
}

/* The qdev path of disk i's device, as query-block names it: ".../disk0-dev/virtio-backend"
 * for virtio-blk, ".../disk0-dev" for a SCSI, SATA or IDE disk. */
static bool is_disk(const json_t *b, unsigned i)
{
    char want[32];
    int n = snprintf(want, sizeof(want), "/disk%u-dev/", i);
    const char *q = json_string_value(json_object_get(b, "qdev"));
    if (!q)
        return false;
    size_t len = strlen(q);
    return strstr(q, want) ||
           (len >= (size_t)n - 1 && strncmp(q + len - (size_t)(n - 1), want, (size_t)n - 1) == 0);
}

static void root_found(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    if (status < 0) {
        fail(m, FERR_QEMU, "query-block: %s", err ? err : "QMP closed");
        return;
    }
    size_t i;
    json_t *b;
    json_array_foreach(r, i, b)
    {
        const char *node =
            json_string_value(json_object_get(json_object_get(b, "inserted"), "node-name"));
        if (!is_disk(b, m->disk) || !node || strlen(node) >= sizeof(m->root) - 6)
            continue;
        snprintf(m->root, sizeof(m->root), "%s", node);
        snprintf(m->file, sizeof(m->file), "%s-file", node);
        /* the file node: raw over file, as ferry attaches a fixed VHD */
        m->phase = "attaching";
        json_t *args = json_pack("{ss ss ss s{sb sb}}", "driver", "file", "filename", m->to,
                                 "node-name", m->nfile, "cache", "direct", 0, "no-flush", 0);
        m->file_added = true;
        if (qmp(m, "blockdev-add", args, file_added) < 0) {
            m->file_added = false;
            fail(m, FERR_QEMU, "blockdev-add: %s", m->err.msg);
        }
        return;
    }
    fail(m, FERR_STATE, "QEMU has no device for disks[%u]", m->disk);
}

static void pivot_checked(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    struct sm *m = d;
    size_t i;
    json_t *b;
    bool on_new = false;
    json_array_foreach(r, i, b)
    {
        const char *node =
            json_string_value(json_object_get(json_object_get(b, "inserted"), "node-name"));
        if (is_disk(b, m->disk) && node && strcmp(node, m->nroot) == 0)
            on_new = true;
    }
    if (status < 0 || !on_new) {
        /* The job said it completed but the device is not on the new node: nothing changed
         * for the guest; undo the new nodes. */
        fail(m, FERR_QEMU, "the switch to %s did not happen", m->to);
        return;
    }
    m->nodes_added = m->file_added = false; /* they are the disk now */
    m->file_made = false;
    m->phase = "cleanup";
    if (qmp(m, "blockdev-del", json_pack("{ss}", "node-name", m->root), old_deleted) < 0)
        adopt_new_path(m);
}

/* ---- the file: made (live) or copied (stopped) in the thread pool ---- */

static void work_make(uv_work_t *w)
{
    struct sm *m = w->data;
    struct stat st;
    struct vhd_info info;
    m->work_rc = 0;
    if (stat(m->to, &st) == 0) {
        m->work_rc = ferr_set(&m->work_err, FERR_EXISTS,
                              "%s exists: give a new file (storage-move never overwrites)", m->to);
        return;
    }
    if ((m->work_rc = vhd_info_read(m->env.qemu_img, m->from, &info, &m->work_err)) < 0)
        return;
    if (strcmp(info.subformat, "fixed") != 0) {
        m->work_rc = ferr_set(&m->work_err, FERR_INVALID,
                              "%s is a %s VHD: a running VM's disk moves only from a fixed one "
                              "(stop the VM, or ferry disk convert)",
                              m->from, info.subformat);
        return;
    }
    if (info.virtual_size % MIB) {
        m->work_rc =
            ferr_set(&m->work_err, FERR_INVALID, "%s is %llu bytes, not a whole number of MiB",
                     m->from, (unsigned long long)info.virtual_size);
        return;
    }
    m->size = info.virtual_size;
    m->work_rc = vhd_create(m->env.qemu_img, m->to, "fixed", info.virtual_size / MIB, &m->work_err);
    /* qemu-img made it as root; the running QEMU opens it as its user. */
    if (m->work_rc == 0 && (m->work_rc = qemu_user_give(&m->user, m->to, 0600, &m->work_err)) < 0)
        unlink(m->to);
}

/* The pool's file work failed (it leaves no file behind): the move ends with its error. */
static bool work_failed(struct sm *m, int status)
{
    if (status >= 0 && m->work_rc >= 0)
        return false;
    if (status < 0)
        ferr_set(&m->work_err, FERR_INTERNAL, "thread pool: %s", uv_strerror(status));
    m->failed = true;
    m->err = m->work_err;
    finish(m, 0, NULL);
    return true;
}

static void work_made(uv_work_t *w, int status)
{
    struct sm *m = w->data;
    if (work_failed(m, status))
        return;
    m->file_made = true;
    m->total = m->size;
    if (m->cancelled) {
        m->cancelled = false;
        fail(m, -ECANCELED, "cancelled by request");
        return;
    }
    if (qmp(m, "query-block", NULL, root_found) < 0)
        fail(m, FERR_QEMU, "query-block: %s", m->err.msg);
}

static void work_copy(uv_work_t *w)
{
    struct sm *m = w->data;
    m->work_rc = vhd_convert(m->env.qemu_img, m->from, "vpc", m->to, "fixed", &m->work_err);
}

static void work_copied(uv_work_t *w, int status)
{
    struct sm *m = w->data;
    if (work_failed(m, status))
        return;
    if (m->cancelled) { /* too late to stop qemu-img; the copy goes */
        m->file_made = true;
        m->failed = true;
        ferr_set(&m->err, -ECANCELED, "cancelled by request");
        undo_file(m);
        return;
    }
    adopt_new_path(m);
}

/* ---- start, cancel, progress ---- */

int storage_move_start(const struct storage_move_env *env, struct vm *vm, unsigned disk,
                       const char *to, unsigned speed_mib, reply_cb cb, void *data, struct ferr *e)
{
    const struct vm_spec *spec = vm_spec(vm);
    enum vm_state st = vm_state(vm);
    if (disk >= spec->ndisks)
        return ferr_set(e, FERR_INVALID, "disk: %s has %u disk%s (0..%u)", vm_name(vm),
                        spec->ndisks, spec->ndisks == 1 ? "" : "s",
                        spec->ndisks ? spec->ndisks - 1 : 0);
    if (!to || to[0] != '/' || strlen(to) >= sizeof(((struct sm *)0)->to) ||
        strlen(to) >= VM_PATH_MAX)
        return ferr_set(e, FERR_INVALID, "to: expected an absolute path of a new .vhd file");
    if (strcmp(to, spec->disks[disk].path) == 0)
        return ferr_set(e, FERR_INVALID, "to: disks[%u] is %s already", disk, to);
    for (unsigned i = 0; i < spec->ndisks; i++)
        if (strcmp(to, spec->disks[i].path) == 0)
            return ferr_set(e, FERR_INVALID, "to: %s is disks[%u] of %s", to, i, vm_name(vm));
    if (find(vm_name(vm)) || vm_storage_moving(vm) >= 0)
        return ferr_set(e, FERR_STATE, "a storage move of %s is under way", vm_name(vm));
    if (vm_migrating(vm))
        return ferr_set(e, FERR_STATE, "%s is live-migrating; move its disk after", vm_name(vm));
    bool live = st == VM_RUNNING || st == VM_PAUSED;
    if (!live && st != VM_STOPPED)
        return ferr_set(e, FERR_STATE,
                        "%s is %s: a disk moves while the VM runs, is paused or "
                        "is stopped",
                        vm_name(vm), vm_state_name(st));
    if (live && spec->disks[disk].readonly)
        return ferr_set(e, FERR_INVALID,
                        "disks[%u] is read-only: stop the VM to move it (copied with qemu-img)",
                        disk);
    if (live && !vm_disk_fixed(vm, disk))
        return ferr_set(e, FERR_INVALID,
                        "disks[%u] is a dynamic VHD: a running VM's disk moves only from a fixed "
                        "one (stop the VM to copy it)",
                        disk);
    struct sm *m = calloc(1, sizeof(*m));
    if (!m)
        return ferr_set(e, -ENOMEM, "out of memory");
    m->env = *env;
    m->set = vm_vmset(vm);
    m->vm = vm;
    snprintf(m->name, sizeof(m->name), "%s", vm_name(vm));
    m->disk = disk;
    snprintf(m->from, sizeof(m->from), "%s", spec->disks[disk].path);
    snprintf(m->to, sizeof(m->to), "%s", to);
    m->user = *vm_qemu_user(vm);
    m->live = live;
    m->speed_mib = speed_mib;
    snprintf(m->nroot, sizeof(m->nroot), "disk%u-m%llu", disk,
             (unsigned long long)(now_mono_ms() % 100000000000ull));
    snprintf(m->nfile, sizeof(m->nfile), "%s-file", m->nroot);
    snprintf(m->job, sizeof(m->job), "move-disk%u", disk);
    m->phase = live ? "preparing" : "copying";
    m->cb = cb;
    m->data = data;
    uv_timer_init(env->loop, &m->poll);
    m->poll.data = m;
    m->work.data = m;
    int rc = uv_queue_work(env->loop, &m->work, live ? work_make : work_copy,
                           live ? work_made : work_copied);
    if (rc < 0) {
        uv_close((uv_handle_t *)&m->poll, freed);
        return ferr_set(e, -EIO, "thread pool: %s", uv_strerror(rc));
    }
    vm_storage_move_mark(vm, (int)disk);
    m->next = moves;
    moves = m;
    log_info("vm %s: moving disks[%u] from %s to %s (%s)", m->name, disk, m->from, to,
             live ? "live, blockdev-mirror" : "stopped, qemu-img convert");
    return 0;
}

int storage_move_cancel(const char *vm_name, struct ferr *e)
{
    struct sm *m = find(vm_name);
    if (!m)
        return ferr_set(e, FERR_NOTFOUND, "no storage move of %s is under way", vm_name);
    if (m->completing || m->failed || !strcmp(m->phase, "pivot") || !strcmp(m->phase, "cleanup") ||
        !strcmp(m->phase, "done"))
        return ferr_set(e, FERR_STATE, "%s's disk is switching to %s already: too late to cancel",
                        vm_name, m->to);
    m->cancelled = true;
    if (m->job_started && strcmp(m->phase, "copying") == 0) {
        m->cancelled = false;
        fail(m, -ECANCELED, "cancelled by request");
    }
    /* otherwise the step under way sees m->cancelled when it ends */
    return 0;
}

json_t *storage_move_progress(const char *vm_name)
{
    struct sm *m = find(vm_name);
    if (!m)
        return NULL;
    return json_pack("{sI ss ss ss sI sI}", "disk", (json_int_t)m->disk, "from", m->from, "to",
                     m->to, "phase", m->phase, "done_bytes", (json_int_t)m->done, "total_bytes",
                     (json_int_t)m->total);
}

/* ---- a move a previous ferryd left in a QEMU ---- */

static json_t *recovered_pids; /* VM name -> the pid of the QEMU looked at (once each) */

static void recovered(int status, json_t *body, const struct ferr *e, void *data)
{
    (void)status;
    (void)data;
    json_decref(body);
    if (e)
        log_warn("storage move left by the previous ferryd: %s", e->msg);
}

/* The filename of node name in query-named-block-nodes' answer, or NULL. */
static const char *node_file(const json_t *nodes, const char *name)
{
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        if (strcmp(jfield_text(n, "node-name"), name) == 0)
            return json_string_value(json_object_get(n, "file"));
    }
    return NULL;
}

/* Whether name is one of disk i's nodes, "diskI" (0 in *num) or "diskI-mN" (N: the
 * monotonic ms its move started, so a later move's nodes have a higher N), not a "-file"
 * child. */
static bool disk_node(const char *name, unsigned i, unsigned long long *num)
{
    char pre[32];
    int n = snprintf(pre, sizeof(pre), "disk%u", i);
    if (strncmp(name, pre, (size_t)n) != 0 || strstr(name, "-file"))
        return false;
    *num = 0;
    if (name[n] == '\0')
        return true;
    char *end;
    if (strncmp(name + n, "-m", 2) != 0 || !isdigit((unsigned char)name[n + 2]))
        return false;
    *num = strtoull(name + n + 2, &end, 10);
    return *end == '\0';
}

struct recover {
    struct storage_move_env env;
    struct vmset *set;
    struct vm *vm;
    char name[80];
    int pid;
    json_t *nodes; /* query-named-block-nodes */
};

static void recover_free(struct recover *rc)
{
    json_decref(rc->nodes);
    free(rc);
}

static struct sm *recovery_sm(struct recover *rc, struct vm *vm, unsigned disk)
{
    struct sm *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->env = rc->env;
    m->set = rc->set;
    m->vm = vm;
    snprintf(m->name, sizeof(m->name), "%s", rc->name);
    m->disk = disk;
    snprintf(m->from, sizeof(m->from), "%s", vm_spec(vm)->disks[disk].path);
    snprintf(m->job, sizeof(m->job), "move-disk%u", disk);
    m->live = true;
    m->cb = recovered;
    uv_timer_init(rc->env.loop, &m->poll);
    m->poll.data = m;
    m->work.data = m;
    m->next = moves;
    moves = m;
    vm_storage_move_mark(vm, (int)disk);
    return m;
}

/* query-block's answer: for each disk, either the switch was made (the device is on a
 * "-m" node over another file than the spec's: the old nodes go and the spec follows), or
 * "-m" nodes beside the device's are an unfinished copy (the job is cancelled, the nodes and
 * the new file go). One disk per pass; the next tick looks again. */
static void recover_blocks(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    (void)c;
    struct recover *rc = d;
    struct vm *vm = vmset_find(rc->set, rc->name);
    if (status < 0 || vm != rc->vm || vm_pid(vm) != rc->pid || find(rc->name) ||
        vm_storage_moving(vm) >= 0 || vm_migrating(vm)) {
        json_object_del(recovered_pids, rc->name); /* asked again */
        recover_free(rc);
        return;
    }
    const struct vm_spec *spec = vm_spec(vm);
    for (unsigned i = 0; i < spec->ndisks; i++) {
        const char *root = NULL, *root_file = NULL;
        size_t k;
        json_t *b;
        json_array_foreach(r, k, b)
        {
            json_t *ins = json_object_get(b, "inserted");
            if (is_disk(b, i) && ins)
                root = json_string_value(json_object_get(ins, "node-name"));
        }
        if (!root || strlen(root) > 40)
            continue;
        /* the file under the root, as its protocol node names it (the root's own "file" is
         * a json: description when it has options, as a fixed VHD's raw node has) */
        char child[64];
        snprintf(child, sizeof(child), "%s-file", root);
        root_file = node_file(rc->nodes, child);
        unsigned long long root_num, num;
        if (!disk_node(root, i, &root_num))
            continue;
        /* newer: a copy's target beside the device; older: the device's before a switch */
        const char *newer = NULL, *older = NULL;
        json_t *n;
        json_array_foreach(rc->nodes, k, n)
        {
            const char *name = jfield_text(n, "node-name");
            if (disk_node(name, i, &num) && num > root_num)
                newer = name;
            else if (disk_node(name, i, &num) && num < root_num)
                older = name;
        }
        bool switched = root_num > 0 && root_file && strcmp(root_file, spec->disks[i].path) != 0 &&
                        strlen(root_file) < sizeof(((struct sm *)0)->to);
        if (!switched && !newer)
            continue;
        struct sm *m = recovery_sm(rc, vm, i);
        if (!m)
            break;
        if (switched) {
            /* the copy finished and the device switched; the spec was not written */
            log_warn("vm %s: its previous ferryd ended after disks[%u] switched to %s: the "
                     "move is finished now",
                     rc->name, i, root_file);
            snprintf(m->to, sizeof(m->to), "%s", root_file);
            m->phase = "cleanup";
            qmp(m, "job-dismiss", json_pack("{ss}", "id", m->job), NULL); /* concluded */
            if (older && strlen(older) < sizeof(m->root) - 6) {
                snprintf(m->root, sizeof(m->root), "%s", older);
                snprintf(m->file, sizeof(m->file), "%s-file", older);
                if (qmp(m, "blockdev-del", json_pack("{ss}", "node-name", m->root), old_deleted) ==
                    0)
                    break;
            }
            adopt_new_path(m);
            break;
        }
        const char *to = NULL;
        if (strlen(newer) < sizeof(m->nroot) - 6) {
            snprintf(m->nroot, sizeof(m->nroot), "%s", newer);
            snprintf(m->nfile, sizeof(m->nfile), "%s-file", newer);
            to = node_file(rc->nodes, m->nfile);
        }
        for (unsigned j = 0; to && j < spec->ndisks; j++)
            if (strcmp(to, spec->disks[j].path) == 0)
                to = NULL; /* never a file the VM has as a disk */
        /* the copy did not finish: undone as a failed move is (job, nodes, new file) */
        snprintf(m->to, sizeof(m->to), "%s", to ? to : "");
        log_warn("vm %s: its previous ferryd ended while disks[%u] was copied to %s: the "
                 "move is undone",
                 rc->name, i, m->to[0] ? m->to : "(a file QEMU does not name)");
        m->job_started = m->nodes_added = m->file_added = true;
        m->file_made = m->to[0] != '\0';
        m->phase = "undoing";
        ferr_set(&m->err, FERR_STATE,
                 "vm %s: disks[%u]: the move to %s was undone after a ferryd restart", rc->name, i,
                 m->to);
        m->failed = true;
        undo(m);
        break;
    }
    recover_free(rc);
}

static void recover_nodes(struct qmp_conn *c, int status, json_t *r, const char *err, void *d)
{
    (void)c;
    struct recover *rc = d;
    struct vm *vm = vmset_find(rc->set, rc->name);
    struct ferr e = {0};
    if (status < 0 || vm != rc->vm) {
        json_object_del(recovered_pids, rc->name);
        recover_free(rc);
        return;
    }
    rc->nodes = json_incref(r);
    if (vm_qmp(vm, "query-block", NULL, recover_blocks, rc, &e) < 0) {
        json_object_del(recovered_pids, rc->name);
        recover_free(rc);
    }
}

void storage_move_recover(const struct storage_move_env *env, struct vm *vm)
{
    enum vm_state st = vm_state(vm);
    int pid = vm_pid(vm);
    const char *name = vm_name(vm);
    if ((st != VM_RUNNING && st != VM_PAUSED) || pid <= 0 || find(name) || vm_migrating(vm) ||
        vm_storage_moving(vm) >= 0)
        return;
    if (!recovered_pids && !(recovered_pids = json_object()))
        return;
    if (json_integer_value(json_object_get(recovered_pids, name)) == pid)
        return; /* this QEMU was looked at */
    struct recover *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return;
    rc->env = *env;
    rc->set = vm_vmset(vm);
    rc->vm = vm;
    rc->pid = pid;
    snprintf(rc->name, sizeof(rc->name), "%s", name);
    struct ferr e = {0};
    json_object_set_new(recovered_pids, name, json_integer(pid));
    if (vm_qmp(vm, "query-named-block-nodes", json_pack("{sb}", "flat", 1), recover_nodes, rc, &e) <
        0) {
        json_object_del(recovered_pids, name); /* QMP not ready yet: the next tick */
        recover_free(rc);
    }
}
