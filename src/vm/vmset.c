/* SPDX-License-Identifier: MIT */
/* The set of VMs defined on this host: loading specs from the state dir, create and delete. */
#include "vm/vm_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "net/tap.h"
#include "qemu/machines.h"
#include "storage/vhd.h"
#include "vm/firmware.h"
#include "vm/vmstate.h"

#define SPEC_FILE_MAX (256 * 1024)

static void insert_sorted(struct vmset *set, struct vm *vm)
{
    struct vm **p = &set->vms;
    while (*p && strcmp((*p)->spec.name, vm->spec.name) < 0)
        p = &(*p)->next;
    vm->next = *p;
    *p = vm;
    set->count++;
}

static void unlink_vm(struct vmset *set, struct vm *vm)
{
    for (struct vm **p = &set->vms; *p; p = &(*p)->next)
        if (*p == vm) {
            *p = vm->next;
            set->count--;
            return;
        }
}

struct vm *vmset_find(struct vmset *set, const char *name)
{
    for (struct vm *vm = set->vms; vm; vm = vm->next)
        if (strcmp(vm->spec.name, name) == 0)
            return vm;
    return NULL;
}

int vmset_uid_clash(const struct vmset *set, const char *name, const char *other, struct ferr *e)
{
    const struct qemu_user *u = &set->cfg.qemu_user;
    if (!u->drop || !u->vm_count || strcmp(name, other) == 0)
        return 0;
    uid_t uid = qemu_user_vm_uid(u, name);
    if (uid != qemu_user_vm_uid(u, other))
        return 0;
    return ferr_set(e, FERR_EXISTS,
                    "name: %s would run its QEMU as uid %u, as VM %s does (per-VM uids are a "
                    "hash of the name over qemu_uids): choose another name",
                    name, (unsigned)uid, other);
}

void vmset_foreach(struct vmset *set, void (*fn)(struct vm *vm, void *data), void *data)
{
    for (struct vm *vm = set->vms, *next; vm; vm = next) {
        next = vm->next;
        fn(vm, data);
    }
}

unsigned vmset_count(const struct vmset *set)
{
    return set->count;
}

uint64_t vmset_allocated_mib(const struct vmset *set)
{
    uint64_t sum = 0;
    for (const struct vm *vm = set->vms; vm; vm = vm->next)
        if (vmstate_has_qemu(vm->state))
            sum += vm->spec.memory_mib;
    return sum;
}

void vmset_set_host_memory(struct vmset *set, uint64_t mib)
{
    set->host_memory_mib = mib;
}

/* ---- validation hooks (the spec parser itself does no I/O) ---- */

static bool hook_bridge(const char *name, void *data)
{
    return bridge_exists(name, NULL) == 1;
}

static bool hook_dir(const char *path, void *data)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool hook_file(const char *path, void *data)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool hook_machine(const char *machine, void *data)
{
    const struct vmset *set = data;
    return qemu_machines_has(set->cfg.machines, machine);
}

const char *vmset_default_machine(const struct vmset *set)
{
    const struct qemu_machines *m = set->cfg.machines;
    return m && m->pc[0] ? m->pc : NULL;
}

static void spec_env(const struct vmset *set, struct vm_spec_env *env)
{
    memset(env, 0, sizeof(*env));
    if (set->cfg.machines) {
        env->machine_known = hook_machine;
        env->data = (void *)set;
    }
    env->host_memory_mib = set->host_memory_mib;
    env->bridge_exists = hook_bridge;
    env->dir_exists = hook_dir;
    env->file_exists = hook_file;
}

/* ---- persistence: STATE/vms/NAME/vm.json = {"created_ms": N, "spec": {...}} ---- */

static int save_vm(const struct vmset *set, const struct vm_spec *spec, uint64_t created_ms,
                   struct ferr *e)
{
    char dir[1200], path[1300];
    if (fmt_path(dir, sizeof(dir), "%s/vms/%s", set->cfg.state_dir, spec->name) < 0)
        return ferr_set(e, FERR_INVALID, "name: state path too long");
    int rc = mkdir_p(dir, 0700, e);
    if (rc < 0)
        return rc;
    json_t *o = json_pack("{s:i, s:I, s:o}", "format", 1, "created_ms", (json_int_t)created_ms,
                          "spec", vm_spec_to_json(spec));
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!text)
        return ferr_set(e, -ENOMEM, "out of memory");
    snprintf(path, sizeof(path), "%s/vm.json", dir);
    rc = file_write_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

int vm_set_disk_path(struct vm *vm, unsigned i, const char *path, struct ferr *e)
{
    if (i >= vm->spec.ndisks)
        return ferr_set(e, FERR_INVALID, "disks[%u]: the VM has %u disks", i, vm->spec.ndisks);
    if (strlen(path) >= sizeof(vm->spec.disks[i].path))
        return ferr_set(e, FERR_INVALID, "disks[%u]: path too long", i);
    struct vm_spec spec = vm->spec;
    snprintf(spec.disks[i].path, sizeof(spec.disks[i].path), "%s", path);
    spec.disks[i].size_mib = 0; /* it exists now */
    int rc = save_vm(vm->set, &spec, vm->created_ms, e);
    if (rc < 0)
        return rc;
    vm->spec = spec;
    vm->made_disk[i] = false;
    return 0;
}

int vm_set_ha(struct vm *vm, const struct vm_ha *ha, struct ferr *e)
{
    struct vm_spec spec = vm->spec;
    spec.ha = *ha;
    int rc = save_vm(vm->set, &spec, vm->created_ms, e);
    if (rc < 0)
        return rc;
    vm->spec = spec;
    return 0;
}

static int load_vm(struct vmset *set, const char *name, struct ferr *e)
{
    char path[1300], *text = NULL;
    if (fmt_path(path, sizeof(path), "%s/vms/%s/vm.json", set->cfg.state_dir, name) < 0)
        return ferr_set(e, FERR_INVALID, "%s: path too long", name);
    int rc = file_read_all(path, SPEC_FILE_MAX, &text, NULL, e);
    if (rc < 0)
        return rc;
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    free(text);
    if (!o)
        return ferr_set(e, FERR_INVALID, "%s: line %d: %s", path, je.line, je.text);
    struct vm_spec *spec = calloc(1, sizeof(*spec));
    if (!spec) {
        json_decref(o);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    /* A stored spec was valid when stored; the host may have changed since (a bridge gone),
     * which must not hide the VM, so only the pure checks run here. */
    struct vm_spec_env env = {0};
    rc = vm_spec_from_json(json_object_get(o, "spec"), &env, spec, e);
    json_int_t created = json_integer_value(json_object_get(o, "created_ms"));
    json_decref(o);
    if (rc < 0) {
        free(spec);
        return ferr_prefix(e, "%s", path);
    }
    if (strcmp(spec->name, name) != 0) {
        ferr_set(e, FERR_INVALID, "%s: names VM %s, expected %s", path, spec->name, name);
        free(spec);
        return FERR_INVALID;
    }
    struct vm *vm;
    rc = vm__new(set, spec, (uint64_t)created, &vm, e);
    free(spec);
    if (rc < 0)
        return rc;
    insert_sorted(set, vm);
    vm__attach(vm);
    return 0;
}

int vmset_open(uv_loop_t *loop, const struct vm_config *cfg, struct events *ev, struct vmset **out,
               struct ferr *e)
{
    struct vmset *set = calloc(1, sizeof(*set));
    if (!set)
        return ferr_set(e, -ENOMEM, "out of memory");
    set->loop = loop;
    set->cfg = *cfg;
    set->events = ev;
    char dir[1100];
    int rc;
    if (fmt_path(dir, sizeof(dir), "%s/vms", cfg->state_dir) < 0) {
        rc = ferr_set(e, FERR_INVALID, "state dir path too long");
        goto err_after_alloc;
    }
    rc = mkdir_p(dir, 0700, e);
    if (rc < 0)
        goto err_after_alloc;
    /* A parent that ferryd makes (/run/ferry for the default RUN) is open to search, 0755,
     * whatever ferryd's umask: QEMU's user must pass it. */
    char parent[sizeof(cfg->run_dir)];
    snprintf(parent, sizeof(parent), "%s", cfg->run_dir);
    char *slash = strrchr(parent, '/');
    struct stat st;
    if (cfg->qemu_user.drop && slash && slash != parent) {
        *slash = '\0';
        if (stat(parent, &st) < 0 && errno == ENOENT) {
            if ((rc = mkdir_p(parent, 0755, e)) < 0)
                goto err_after_alloc;
            if (chmod(parent, 0755) < 0) {
                rc = ferr_set(e, -errno, "chmod %s: %s", parent, strerror(errno));
                goto err_after_alloc;
            }
        }
    }
    rc = mkdir_p(cfg->run_dir, 0700, e);
    if (rc < 0)
        goto err_after_alloc;
    /* QEMU's user passes RUN (root's, its group, 0710: no listing) to its own RUN/NAME. */
    if (cfg->qemu_user.drop) {
        if (chown(cfg->run_dir, (uid_t)-1, cfg->qemu_user.gid) < 0 ||
            chmod(cfg->run_dir, 0710) < 0) {
            rc = ferr_set(e, -errno, "run dir %s: %s", cfg->run_dir, strerror(errno));
            goto err_after_alloc;
        }
        /* Not fatal: a ferryd without VMs to start (a scratch one) runs; a VM's start
         * checks again and fails with this message. */
        struct ferr re = {0};
        if (qemu_user_check_reach(&cfg->qemu_user, cfg->run_dir, &re) < 0)
            log_warn("VMs cannot start: %s", re.msg);
    }
    DIR *d = opendir(dir);
    if (!d) {
        rc = ferr_set(e, -errno, "opendir %s: %s", dir, strerror(errno));
        goto err_after_alloc;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        struct ferr le = {0};
        if (load_vm(set, de->d_name, &le) < 0)
            log_error("vm %s not loaded: %s", de->d_name, le.msg);
    }
    closedir(d);
    *out = set;
    return 0;
err_after_alloc:
    free(set);
    return rc;
}

static void vm_freed(struct vmset *set)
{
    (void)set;
}

static void one_freed(struct vmset *set)
{
    if (--set->live > 0)
        return;
    void (*cb)(void *) = set->close_cb;
    void *data = set->close_data;
    while (set->pending) {
        struct pending_name *n = set->pending->next;
        free(set->pending);
        set->pending = n;
    }
    free(set);
    if (cb)
        cb(data);
}

void vmset_close(struct vmset *set, void (*cb)(void *data), void *data)
{
    set->close_cb = cb;
    set->close_data = data;
    set->live = set->count + 1;
    for (struct vm *vm = set->vms, *next; vm; vm = next) {
        next = vm->next;
        vm__release(vm, one_freed);
    }
    set->vms = NULL;
    set->count = 0;
    one_freed(set);
}

/* ---- create ---- */

struct create_work {
    uv_work_t req;
    struct vmset *set;
    struct vm_spec spec;
    bool created[VM_MAX_DISKS];
    int status;
    struct ferr e;
    vm_done_cb cb;
    void *data;
};

/* Thread pool: check existing disks (fixed or dynamic VHDs), create missing ones; undo
 * on failure. */
static void create_work(uv_work_t *req)
{
    struct create_work *cw = req->data;
    const char *img = cw->set->cfg.qemu_img;
    char code[VM_PATH_MAX];
    if (cw->spec.firmware == VM_FIRMWARE_EFI &&
        (cw->status = firmware_find(FIRMWARE_DIR, code, sizeof(code), &cw->e)) < 0)
        return; /* its variable store is made by its first start */
    for (unsigned i = 0; i < cw->spec.ndisks; i++) {
        const struct vm_disk *d = &cw->spec.disks[i];
        struct stat st;
        if (stat(d->path, &st) == 0) {
            /* A fixed or a dynamic VHD whose metadata passes vhd_check: anything else (a damaged
             * or differencing VHD, another format) is refused with what to do about it. */
            struct vhd_info info;
            cw->status = vhd_info_read(img, d->path, &info, &cw->e);
            if (cw->status < 0) {
                ferr_prefix(&cw->e, "disks[%u].path", i);
                goto undo;
            }
            continue;
        }
        if (d->size_mib == 0) {
            cw->status = ferr_set(
                &cw->e, FERR_INVALID,
                "disks[%u].path: %.300s does not exist; give size_mib to create it", i, d->path);
            goto undo;
        }
        cw->status = vhd_create(img, d->path, d->dynamic ? "dynamic" : "fixed", d->size_mib,
                                &cw->e);
        if (cw->status < 0) {
            ferr_prefix(&cw->e, "disks[%u]", i);
            goto undo;
        }
        cw->created[i] = true;
    }
    cw->status = 0;
    return;
undo:
    for (unsigned i = 0; i < cw->spec.ndisks; i++)
        if (cw->created[i])
            unlink(cw->spec.disks[i].path);
}

static void drop_pending(struct vmset *set, const char *name)
{
    for (struct pending_name **p = &set->pending; *p; p = &(*p)->next)
        if (strcmp((*p)->name, name) == 0) {
            struct pending_name *n = *p;
            *p = n->next;
            free(n);
            return;
        }
}

static void create_after(uv_work_t *req, int status)
{
    struct create_work *cw = req->data;
    struct vmset *set = cw->set;
    struct vm *vm = NULL;
    drop_pending(set, cw->spec.name);
    if (cw->status < 0)
        goto fail;
    uint64_t now = now_wall_ms();
    cw->status = save_vm(set, &cw->spec, now, &cw->e);
    if (cw->status < 0)
        goto fail_undo;
    cw->status = vm__new(set, &cw->spec, now, &vm, &cw->e);
    if (cw->status < 0)
        goto fail_undo;
    memcpy(vm->made_disk, cw->created, sizeof(vm->made_disk));
    insert_sorted(set, vm);
    events_add(set->events, vm->spec.name, "vm.created", "%u vCPU, %llu MiB, %u disk(s), %u NIC(s)",
               vm_spec_vcpus(&vm->spec), (unsigned long long)vm->spec.memory_mib, vm->spec.ndisks,
               vm->spec.nnics);
    cw->cb(set, vm, 0, NULL, cw->data);
    free(cw);
    return;
fail_undo:
    for (unsigned i = 0; i < cw->spec.ndisks; i++)
        if (cw->created[i])
            unlink(cw->spec.disks[i].path);
    {
        char dir[1200];
        if (fmt_path(dir, sizeof(dir), "%s/vms/%s", set->cfg.state_dir, cw->spec.name) == 0)
            rm_rf(dir);
    }
fail:
    ferr_prefix(&cw->e, "create %s", cw->spec.name);
    cw->cb(set, NULL, cw->status, &cw->e, cw->data);
    free(cw);
}

int vmset_create(struct vmset *set, const json_t *spec_json, vm_done_cb cb, void *data,
                 struct ferr *e)
{
    struct create_work *cw = calloc(1, sizeof(*cw));
    if (!cw)
        return ferr_set(e, -ENOMEM, "out of memory");
    struct vm_spec_env env;
    spec_env(set, &env);
    int rc = vm_spec_from_json(spec_json, &env, &cw->spec, e);
    if (rc < 0) {
        free(cw);
        return ferr_prefix(e, "spec");
    }
    const char *name = cw->spec.name;
    bool pending = false;
    for (struct pending_name *p = set->pending; p; p = p->next)
        pending |= strcmp(p->name, name) == 0;
    if (vmset_find(set, name) || pending) {
        rc = ferr_set(e, FERR_EXISTS, "a VM named %s already exists", name);
        free(cw); /* name is cw's: only now */
        return rc;
    }
    char run[700];
    if (fmt_path(run, sizeof(run), "%s/%s/qmp.sock", set->cfg.run_dir, name) < 0 ||
        strlen(run) >= 108) {
        rc = ferr_set(e, FERR_INVALID,
                      "name: %s makes the QMP socket path %s/%s/qmp.sock longer than a unix "
                      "socket allows (107); use a shorter name or run dir",
                      name, set->cfg.run_dir, name);
        free(cw);
        return rc;
    }
    struct pending_name *pn = calloc(1, sizeof(*pn));
    if (!pn) {
        free(cw);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    snprintf(pn->name, sizeof(pn->name), "%s", name);
    pn->next = set->pending;
    set->pending = pn;
    cw->set = set;
    cw->cb = cb;
    cw->data = data;
    cw->req.data = cw;
    uv_queue_work(set->loop, &cw->req, create_work, create_after);
    return 0;
}

/* ---- delete ---- */

struct delete_ctx {
    vm_done_cb cb;
    void *data;
};

static int remove_vm(struct vmset *set, struct vm *vm, struct ferr *e)
{
    char name[VM_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s", vm->spec.name);
    int rc = rm_rf(vm->dir);
    if (rc < 0)
        return ferr_set(e, rc, "delete %s: remove %s: %s", name, vm->dir, strerror(-rc));
    rm_rf(vm->run);
    unlink_vm(set, vm);
    vm__release(vm, vm_freed);
    events_add(set->events, name, "vm.deleted", "definition removed; disk files kept");
    return 0;
}

static void delete_after_kill(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                              void *data)
{
    struct delete_ctx *dc = data;
    struct ferr e2 = {0};
    int rc = vm ? remove_vm(set, vm, &e2) : 0;
    dc->cb(set, NULL, rc, rc < 0 ? &e2 : NULL, dc->data);
    free(dc);
}

/* ---- undoing a create ---- */

struct undo_ctx {
    char made[VM_MAX_DISKS][VM_PATH_MAX]; /* the disk files its create made ("" for others) */
    vm_done_cb cb;
    void *data;
};

static void undo_deleted(struct vmset *set, struct vm *vm, int status, const struct ferr *e,
                         void *data)
{
    struct undo_ctx *u = data;
    for (unsigned i = 0; status == 0 && i < VM_MAX_DISKS; i++)
        if (u->made[i][0] && unlink(u->made[i]) < 0 && errno != ENOENT)
            log_warn("undo create: removing %s: %s", u->made[i], strerror(errno));
    u->cb(set, vm, status, e, u->data);
    free(u);
}

int vmset_undo_create(struct vmset *set, struct vm *vm, vm_done_cb cb, void *data, struct ferr *e)
{
    struct undo_ctx *u = calloc(1, sizeof(*u));
    if (!u)
        return ferr_set(e, -ENOMEM, "out of memory");
    for (unsigned i = 0; i < vm->spec.ndisks && i < VM_MAX_DISKS; i++)
        if (vm->made_disk[i])
            snprintf(u->made[i], sizeof(u->made[i]), "%s", vm->spec.disks[i].path);
    u->cb = cb;
    u->data = data;
    int rc = vmset_delete(set, vm, true, undo_deleted, u, e);
    if (rc < 0)
        free(u);
    return rc;
}

int vmset_delete(struct vmset *set, struct vm *vm, bool force, vm_done_cb cb, void *data,
                 struct ferr *e)
{
    struct vmstate_facts f = {
        .name = vm->spec.name,
        .state = vm->state,
        .migrating_out = vm->migrating_out,
        .force = force,
    };
    enum vmstate_do how = vmstate_decide(VM_ACT_DELETE, &f, e);
    if (how == VMSTATE_REFUSE)
        return FERR_STATE;
    if (how == VMSTATE_KILL) {
        struct delete_ctx *dc = calloc(1, sizeof(*dc));
        if (!dc)
            return ferr_set(e, -ENOMEM, "out of memory");
        dc->cb = cb;
        dc->data = data;
        int rc = vm_kill(vm, delete_after_kill, dc, e);
        if (rc < 0)
            free(dc);
        return rc;
    }
    int rc = remove_vm(set, vm, e);
    if (rc < 0)
        return rc;
    cb(set, NULL, 0, NULL, data);
    return 0;
}
