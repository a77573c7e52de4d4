/* SPDX-License-Identifier: MIT */
/* Unit tests of src/vm/vmset.c with vm.c: the set of this host's VMs in a scratch state
 * directory. Creating, listing, deleting and loading VMs again, and the refusals of VMs that
 * run no QEMU. No QEMU is ever started: the VMs boot a kernel file that only has to exist,
 * have no disks and no NICs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "host/events.h"
#include "vm/vm.h"

struct fx {
    char dir[64];
    char kernel[96];
    uv_loop_t loop;
    struct vm_config cfg;
    struct events *ev;
    struct vmset *set;
    unsigned changes; /* cfg.on_change calls */
    /* the last vm_done_cb */
    unsigned done;
    int status;
    struct ferr e;
    struct vm *vm;
};

static void changed(void *data)
{
    struct fx *f = data;
    f->changes++;
}

static void done(struct vmset *set, struct vm *vm, int status, const struct ferr *e, void *data)
{
    struct fx *f = data;
    f->done++;
    f->status = status;
    f->vm = vm;
    if (e)
        f->e = *e;
    else
        ferr_clear(&f->e);
}

static void open_set(struct fx *f)
{
    struct ferr e = {0};
    if (vmset_open(&f->loop, &f->cfg, f->ev, &f->set, &e) < 0)
        fail_msg("vmset_open: %s", e.msg);
}

static void closed(void *data)
{
    *(bool *)data = true;
}

static void close_set(struct fx *f)
{
    bool gone = false;
    vmset_close(f->set, closed, &gone);
    f->set = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(gone);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/ferry-test-vmset-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    log_threshold = LOG_LVL_ERROR;
    uv_loop_init(&f->loop);
    snprintf(f->kernel, sizeof(f->kernel), "%s/vmlinuz", f->dir);
    struct ferr e = {0};
    if (file_write_atomic(f->kernel, "k", 1, &e) < 0)
        return -1;
    snprintf(f->cfg.state_dir, sizeof(f->cfg.state_dir), "%s/state", f->dir);
    snprintf(f->cfg.run_dir, sizeof(f->cfg.run_dir), "%s/run", f->dir);
    snprintf(f->cfg.qemu_binary, sizeof(f->cfg.qemu_binary), "/nonexistent/qemu");
    snprintf(f->cfg.qemu_img, sizeof(f->cfg.qemu_img), "/nonexistent/qemu-img");
    snprintf(f->cfg.accel, sizeof(f->cfg.accel), "tcg");
    f->cfg.console_poll_ms = 200;
    f->cfg.start_timeout_ms = 1000;
    f->cfg.on_change = changed;
    f->cfg.change_data = f;
    char evp[128];
    snprintf(evp, sizeof(evp), "%s/events.jsonl", f->dir);
    if (events_open(evp, 100, &f->ev, &e) < 0)
        return -1;
    open_set(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->set) {
        uv_run(&f->loop, UV_RUN_DEFAULT); /* a create a failed test left under way ends first */
        close_set(f);
    }
    events_close(f->ev);
    int rc = uv_loop_close(&f->loop);
    rm_rf(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static json_t *spec(const struct fx *f, const char *name, int memory_mib)
{
    return json_pack("{s:s, s:i, s:{s:s}}", "name", name, "memory_mib", memory_mib, "boot",
                     "kernel", f->kernel);
}

/* Creates VM name and runs the loop until it is made; returns it. */
static struct vm *create(struct fx *f, const char *name)
{
    json_t *s = spec(f, name, 256);
    struct ferr e = {0};
    unsigned before = f->done;
    if (vmset_create(f->set, s, done, f, &e) < 0)
        fail_msg("create %s: %s", name, e.msg);
    json_decref(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 1);
    if (f->status != 0)
        fail_msg("create %s: %s", name, f->e.msg);
    assert_non_null(f->vm);
    return f->vm;
}

static void collect(struct vm *vm, void *data)
{
    char *names = data;
    strcat(names, vm_name(vm));
    strcat(names, " ");
}

static const char *names(struct fx *f)
{
    static char buf[512];
    buf[0] = '\0';
    vmset_foreach(f->set, collect, buf);
    return buf;
}

/* How many events of type the log holds for vm. */
static unsigned events_of(struct fx *f, const char *vm, const char *type)
{
    json_t *l = events_list(f->ev, 0, 1000);
    size_t i;
    json_t *ev;
    unsigned n = 0;
    json_array_foreach(l, i, ev)
    {
        n += strcmp(json_string_value(json_object_get(ev, "vm")) ?: "", vm) == 0 &&
             strcmp(json_string_value(json_object_get(ev, "type")) ?: "", type) == 0;
    }
    json_decref(l);
    return n;
}

static bool exists(const char *fmt, const char *a, const char *b)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), fmt, a, b);
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_created_vms_are_stopped_and_listed_by_name(void **state)
{
    struct fx *f = *state;
    assert_int_equal(vmset_count(f->set), 0);
    create(f, "zeta");
    create(f, "alpha");
    create(f, "mid-1");
    assert_int_equal(vmset_count(f->set), 3);
    assert_string_equal(names(f), "alpha mid-1 zeta ");
    struct vm *vm = vmset_find(f->set, "mid-1");
    assert_non_null(vm);
    assert_null(vmset_find(f->set, "mid"));
    assert_int_equal(vm_state(vm), VM_STOPPED);
    assert_int_equal(vm_pid(vm), 0);
    assert_int_equal(vm_started_ms(vm), 0);
    /* stopped VMs hold no memory of the host */
    assert_int_equal(vmset_allocated_mib(f->set), 0);
    assert_true(exists("%s/vms/%s/vm.json", f->cfg.state_dir, "mid-1"));
    assert_int_equal(events_of(f, "mid-1", "vm.created"), 1);
    json_t *j = vm_to_json(vm);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "stopped");
    assert_string_equal(json_string_value(json_object_get(j, "accel")), "tcg");
    assert_int_equal(json_integer_value(json_object_get(j, "memory_mib")), 256);
    json_decref(j);
}

static void test_a_name_is_taken_once(void **state)
{
    struct fx *f = *state;
    json_t *s = spec(f, "web", 256);
    struct ferr e = {0};
    assert_int_equal(vmset_create(f->set, s, done, f, &e), 0);
    /* while the first is still being made */
    assert_int_equal(vmset_create(f->set, s, done, f, &e), FERR_EXISTS);
    assert_string_equal(e.msg, "a VM named web already exists");
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 1);
    assert_int_equal(f->status, 0);
    /* and once it exists */
    assert_int_equal(vmset_create(f->set, s, done, f, &e), FERR_EXISTS);
    assert_int_equal(vmset_count(f->set), 1);
    json_decref(s);
}

static void test_bad_specs_are_refused_at_once(void **state)
{
    struct fx *f = *state;
    struct ferr e = {0};
    json_t *s = json_pack("{s:s, s:i}", "name", "nodisk", "memory_mib", 256);
    assert_int_equal(vmset_create(f->set, s, done, f, &e), FERR_INVALID);
    assert_true(strncmp(e.msg, "spec: ", 6) == 0);
    json_decref(s);
    s = json_pack("{s:s, s:i, s:{s:s}}", "name", "nokernel", "memory_mib", 256, "boot", "kernel",
                  "/nonexistent/vmlinuz");
    assert_int_equal(vmset_create(f->set, s, done, f, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "/nonexistent/vmlinuz"));
    json_decref(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 0); /* no callback for a synchronous refusal */
    assert_int_equal(vmset_count(f->set), 0);
}

static void test_a_name_too_long_for_the_qmp_socket(void **state)
{
    struct fx *f = *state;
    close_set(f);
    /* a run dir of 60 bytes: RUN/NAME/qmp.sock must stay under 108 bytes */
    char run[128];
    snprintf(run, sizeof(run), "%s/", f->dir);
    while (strlen(run) < 60)
        strcat(run, "r");
    memcpy(f->cfg.run_dir, run, strlen(run) + 1);
    open_set(f);
    struct ferr e = {0};
    json_t *s = spec(f, "a-name-of-forty-bytes-xxxxxxxxxxxxxxxxxx", 256);
    assert_int_equal(vmset_create(f->set, s, done, f, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "longer than a unix socket allows (107)"));
    json_decref(s);
    create(f, "short"); /* 60 + 1 + 5 + 9 fits */
}

static void test_delete_a_stopped_vm(void **state)
{
    struct fx *f = *state;
    create(f, "a");
    create(f, "b");
    struct ferr e = {0};
    f->done = 0;
    assert_int_equal(vmset_delete(f->set, vmset_find(f->set, "a"), false, done, f, &e), 0);
    assert_int_equal(f->done, 1); /* at once: nothing runs */
    assert_int_equal(f->status, 0);
    assert_null(f->vm);
    assert_null(vmset_find(f->set, "a"));
    assert_int_equal(vmset_count(f->set), 1);
    assert_false(exists("%s/vms/%s", f->cfg.state_dir, "a"));
    assert_true(exists("%s/vms/%s", f->cfg.state_dir, "b"));
    assert_true(exists("%s%s", f->kernel, "")); /* files the VM used are kept */
    assert_int_equal(events_of(f, "a", "vm.deleted"), 1);
    /* the name is free again */
    create(f, "a");
    assert_string_equal(names(f), "a b ");
}

static void on_migration_event(struct vm *vm, const char *event, json_t *data, void *d)
{
}

static void test_a_vm_that_migrates_away_is_not_deleted(void **state)
{
    struct fx *f = *state;
    struct vm *vm = create(f, "m");
    vm_set_migrating(vm, on_migration_event, NULL);
    assert_true(vm_migrating(vm));
    struct ferr e = {0};
    f->done = 0;
    assert_int_equal(vmset_delete(f->set, vm, true, done, f, &e), FERR_STATE);
    assert_string_equal(e.msg, "m is migrating; cancel it first (ferry vm migrate --cancel m)");
    assert_int_equal(f->done, 0);
    assert_non_null(vmset_find(f->set, "m"));
    vm_set_migrating(vm, NULL, NULL);
    assert_false(vm_migrating(vm));
    assert_int_equal(vmset_delete(f->set, vm, false, done, f, &e), 0);
}

/* What needs a QEMU is refused for a VM that has none, with no callback and no change. */
static void test_a_stopped_vm_refuses_what_needs_a_qemu(void **state)
{
    struct fx *f = *state;
    struct vm *vm = create(f, "s");
    unsigned changes = f->changes;
    struct ferr e = {0};
    f->done = 0;
    assert_int_equal(vm_stop(vm, 10, done, f, &e), FERR_STATE);
    assert_string_equal(e.msg, "s is not running");
    assert_int_equal(vm_kill(vm, done, f, &e), FERR_STATE);
    assert_string_equal(e.msg, "s is not running");
    assert_int_equal(vm_quit(vm, done, f, &e), FERR_STATE);
    assert_int_equal(vm_pause(vm, done, f, &e), FERR_STATE);
    assert_string_equal(e.msg, "s is stopped; pause needs it running");
    assert_int_equal(vm_resume(vm, done, f, &e), FERR_STATE);
    assert_string_equal(e.msg, "s is stopped; resume needs it paused");
    assert_int_equal(vm_qmp(vm, "query-status", NULL, NULL, NULL, &e), FERR_STATE);
    assert_string_equal(e.msg, "s: no QMP connection to its QEMU");
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 0);
    assert_int_equal(f->changes, changes);
    assert_int_equal(vm_state(vm), VM_STOPPED);
}

/* A migration's key: only well-formed identities and keys, written 0600 in a 0700 directory
 * of the VM's run dir in QEMU's keys.psk format, removed again; a bad one writes nothing and
 * vm_start_incoming refuses it before any QEMU. */
static void test_a_migration_key_file(void **state)
{
    struct fx *f = *state;
    struct vm *vm = create(f, "k");
    struct vm_mig_tls t;
    memset(&t, 0, sizeof(t));
    snprintf(t.user, sizeof(t.user), "ferry-mig-0123abcd");
    memset(t.key, 'a', VM_MIG_TLS_KEY_HEX);
    assert_true(vm_mig_tls_valid(&t));
    struct vm_mig_tls bad = t;
    bad.key[3] = 'A'; /* lowercase only */
    assert_false(vm_mig_tls_valid(&bad));
    bad = t;
    bad.key[VM_MIG_TLS_KEY_HEX - 1] = '\0';
    assert_false(vm_mig_tls_valid(&bad));
    bad = t;
    bad.user[2] = ':'; /* would end the identity in keys.psk */
    assert_false(vm_mig_tls_valid(&bad));
    bad.user[0] = '\0';
    assert_false(vm_mig_tls_valid(&bad));

    struct ferr e = {0};
    char dir[700], path[760];
    assert_int_equal(vm_mig_tls_dir(vm, true, dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/keys.psk", dir);
    assert_int_equal(vm_mig_tls_write(vm, true, &bad, &e), FERR_INVALID);
    assert_false(exists("%s%s", dir, ""));
    assert_int_equal(vm_start_incoming(vm, "tcp:127.0.0.1:1", true, &bad, done, f, &e),
                     FERR_INVALID);
    assert_int_equal(vm_state(vm), VM_STOPPED);
    assert_int_equal(vm_mig_tls_write(vm, true, &t, &e), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = NULL;
    assert_int_equal(file_read_all(path, 4096, &text, NULL, NULL), 0);
    char want[200];
    snprintf(want, sizeof(want), "%s:%s\n", t.user, t.key);
    assert_string_equal(text, want);
    free(text);
    /* the destination's DH parameters: QEMU would generate them otherwise (seconds) */
    assert_true(exists("%s%s", dir, "/dh-params.pem"));
    vm_mig_tls_remove(vm, true);
    assert_false(exists("%s%s", dir, ""));
    vm_mig_tls_remove(vm, true); /* nothing there is fine */
}

static void test_vms_are_loaded_again(void **state)
{
    struct fx *f = *state;
    create(f, "one");
    create(f, "two");
    close_set(f);
    /* a definition that names another VM, and one that is not JSON: skipped, not fatal */
    char p[PATH_MAX * 2];
    struct ferr e = {0};
    snprintf(p, sizeof(p), "%s/vms/three", f->cfg.state_dir);
    assert_int_equal(mkdir_p(p, 0700, &e), 0);
    snprintf(p, sizeof(p), "%s/vms/one/vm.json", f->cfg.state_dir);
    char *text = NULL;
    assert_int_equal(file_read_all(p, 1 << 20, &text, NULL, &e), 0);
    snprintf(p, sizeof(p), "%s/vms/three/vm.json", f->cfg.state_dir);
    assert_int_equal(file_write_atomic(p, text, strlen(text), &e), 0); /* says "one" */
    free(text);
    snprintf(p, sizeof(p), "%s/vms/four", f->cfg.state_dir);
    assert_int_equal(mkdir_p(p, 0700, &e), 0);
    snprintf(p, sizeof(p), "%s/vms/four/vm.json", f->cfg.state_dir);
    assert_int_equal(file_write_atomic(p, "{not json", 9, &e), 0);

    open_set(f);
    assert_string_equal(names(f), "one two ");
    struct vm *vm = vmset_find(f->set, "two");
    assert_non_null(vm);
    /* no QEMU to adopt: stopped, as defined */
    assert_int_equal(vm_state(vm), VM_STOPPED);
    assert_int_equal(vm_spec(vm)->memory_mib, 256);
    assert_string_equal(vm_spec(vm)->boot.kernel, f->kernel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_created_vms_are_stopped_and_listed_by_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_name_is_taken_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs_are_refused_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_name_too_long_for_the_qmp_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_a_stopped_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_vm_that_migrates_away_is_not_deleted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_stopped_vm_refuses_what_needs_a_qemu, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_migration_key_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vms_are_loaded_again, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
