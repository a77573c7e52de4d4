/* SPDX-License-Identifier: MIT */
/* Unit tests of the QEMU user: lookup, files given to it, directories it must pass. Giving
 * files needs root (chown); those tests are skipped elsewhere unless FERRY_NO_SKIP=1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "qemu/user.h"

static void skip_unless_root(void)
{
    if (geteuid() == 0)
        return;
    const char *no_skip = getenv("FERRY_NO_SKIP");
    if (no_skip && strcmp(no_skip, "1") == 0)
        fail_msg("needs root (chown) and FERRY_NO_SKIP=1");
    skip();
}

/* "nobody" stands for the QEMU user: every Debian system has it. */
static struct qemu_user nobody(void)
{
    struct qemu_user u;
    struct ferr e = {0};
    assert_int_equal(qemu_user_lookup("nobody", &u, &e), 0);
    assert_true(u.drop);
    assert_int_equal(u.uid, getpwnam("nobody")->pw_uid);
    return u;
}

static void test_lookup(void **state)
{
    (void)state;
    struct qemu_user u;
    struct ferr e = {0};
    assert_int_equal(qemu_user_lookup("root", &u, &e), 0);
    assert_false(u.drop); /* root: QEMU as ferryd, nothing given */
    assert_int_equal(qemu_user_give(&u, "/nonexistent", 0600, &e), 0);
    assert_int_equal(qemu_user_check_reach(&u, "/nonexistent", &e), 0);
    assert_true(qemu_user_may_rw(&u, "/nonexistent"));

    assert_int_equal(qemu_user_lookup("no-such-user-ferry", &u, &e), FERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "adduser --system"));
    assert_non_null(strstr(e.msg, "qemu_user to root"));
    const char *bad[] = {"", "-x", "a:b", "a/b", "a-name-that-is-longer-than-32-chars"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(qemu_user_lookup(bad[i], &u, &e), FERR_INVALID);
    assert_int_equal(qemu_user_lookup(NULL, &u, &e), FERR_INVALID);
}

static void test_give(void **state)
{
    (void)state;
    skip_unless_root();
    struct qemu_user u = nobody();
    char dir[] = "/tmp/fyquXXXXXX";
    assert_non_null(mkdtemp(dir));
    char f[64], link[64], sock[64];
    snprintf(f, sizeof(f), "%s/disk.vhd", dir);
    snprintf(link, sizeof(link), "%s/qemu.log", dir);
    snprintf(sock, sizeof(sock), "%s/disk0.nbd", dir);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    chmod(f, 0644);
    struct ferr e = {0};
    struct stat st;

    assert_int_equal(qemu_user_give(&u, f, 0600, &e), 0);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_uid, u.uid);
    assert_int_equal(st.st_gid, u.gid);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(qemu_user_give(&u, f, 0600, &e), 0); /* already theirs: untouched */

    /* A name replaced by a symlink: the link is refused, its target keeps its owner. */
    assert_int_equal(symlink("/etc/hostname", link), 0);
    assert_int_equal(qemu_user_give(&u, link, 0600, &e), -ELOOP);
    assert_non_null(strstr(e.msg, "symbolic link"));
    assert_int_equal(stat("/etc/hostname", &st), 0);
    assert_int_equal(st.st_uid, 0);

    /* A socket: owned (what lets QEMU connect), its mode as bind made it. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(qemu_user_give(&u, sock, 0600, &e), 0);
    assert_int_equal(lstat(sock, &st), 0);
    assert_int_equal(st.st_uid, u.uid);
    close(s);

    assert_int_equal(qemu_user_give(&u, "/nonexistent/x", 0600, &e), -ENOENT);

    /* A device QEMU opens itself (/dev/kvm): through its group, or not at all. */
    char dev[64];
    snprintf(dev, sizeof(dev), "%s/kvm", dir);
    fp = fopen(dev, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(chmod(dev, 0600), 0);
    assert_false(qemu_user_may_rw(&u, dev));
    assert_int_equal(chown(dev, 0, u.gid), 0);
    assert_int_equal(chmod(dev, 0640), 0);
    assert_false(qemu_user_may_rw(&u, dev)); /* read is not enough */
    assert_int_equal(chmod(dev, 0660), 0);
    assert_true(qemu_user_may_rw(&u, dev));
    assert_false(qemu_user_may_rw(&u, "/nonexistent"));
    rm_rf(dir);
}

static void test_check_reach(void **state)
{
    (void)state;
    skip_unless_root();
    struct qemu_user u = nobody();
    char dir[] = "/tmp/fyqrXXXXXX";
    assert_non_null(mkdtemp(dir)); /* 0700 root: nobody cannot pass it */
    char sub[64];
    snprintf(sub, sizeof(sub), "%s/run", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    struct ferr e = {0};
    assert_int_equal(qemu_user_check_reach(&u, sub, &e), FERR_STATE);
    assert_non_null(strstr(e.msg, dir));
    assert_non_null(strstr(e.msg, "chmod o+x"));
    assert_int_equal(chmod(dir, 0711), 0);
    assert_int_equal(qemu_user_check_reach(&u, sub, &e), 0);
    /* Its group's x counts for a member, others' does not then. */
    assert_int_equal(chown(sub, 0, u.gid), 0);
    assert_int_equal(chmod(sub, 0710), 0);
    assert_int_equal(qemu_user_check_reach(&u, sub, &e), 0);
    assert_int_equal(chmod(sub, 0701), 0);
    assert_int_equal(qemu_user_check_reach(&u, sub, &e), FERR_STATE);
    rm_rf(dir);
}

static void test_vm_uids(void **state)
{
    (void)state;
    uid_t first;
    uint32_t count;
    struct ferr e = {0};
    assert_int_equal(qemu_uids_parse(QEMU_UIDS_DEFAULT, &first, &count, &e), 0);
    assert_int_equal(first, 1879048192u);
    assert_int_equal(count, 134217728u);
    assert_int_equal(qemu_uids_parse("shared", &first, &count, &e), 0);
    assert_int_equal(count, 0);
    assert_int_equal(qemu_uids_parse("65536-65536", &first, &count, &e), 0);
    assert_int_equal(count, 1);
    const char *bad[] = {"",
                         "1-2",
                         "100000",
                         "100000-",
                         "-100000",
                         "200000-100000",
                         "100000-2147352576",
                         "x-y",
                         "100000-200000 ",
                         "0100000-200000x",
                         "99999999999-99999999999"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(qemu_uids_parse(bad[i], &first, &count, &e), FERR_INVALID);
        assert_non_null(strstr(e.msg, "FIRST-LAST"));
    }
    assert_int_equal(qemu_uids_parse(NULL, &first, &count, &e), FERR_INVALID);

    struct qemu_user t = nobody();
    /* The template's own uid inside the range is refused: its files would be a VM's. */
    assert_int_equal(qemu_user_set_vm_uids(&t, t.uid, 10, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "choose a range outside it"));
    assert_int_equal(qemu_uids_parse(QEMU_UIDS_DEFAULT, &first, &count, &e), 0);
    assert_int_equal(qemu_user_set_vm_uids(&t, first, count, &e), 0);
    /* Fixed for good: every node and every release must give a VM the same uid. */
    assert_int_equal(qemu_user_vm_uid(&t, "web1"), 1911177280u);
    assert_int_equal(qemu_user_vm_uid(&t, "web2"), 1911178585u);
    struct qemu_user v;
    qemu_user_for_vm(&t, "web1", &v);
    assert_true(v.drop);
    assert_int_equal(v.uid, 1911177280u);
    assert_int_equal(v.gid, 1911177280u);
    /* It keeps the template's groups (its primary group passes RUN, kvm opens /dev/kvm). */
    assert_int_equal(v.ngroups, t.ngroups);
    assert_memory_equal(v.groups, t.groups, sizeof(gid_t) * (size_t)t.ngroups);
    assert_non_null(strstr(v.name, "web1"));
    /* Shared: the template itself; root: no drop at all. */
    assert_int_equal(qemu_user_set_vm_uids(&t, 0, 0, &e), 0);
    assert_int_equal(qemu_user_vm_uid(&t, "web1"), t.uid);
    struct qemu_user r;
    assert_int_equal(qemu_user_lookup("root", &r, &e), 0);
    assert_int_equal(qemu_user_set_vm_uids(&r, first, count, &e), 0);
    qemu_user_for_vm(&r, "web1", &v);
    assert_false(v.drop);
    assert_int_equal(qemu_user_vm_uid(&r, "web1"), 0);
}

static void test_of_pid(void **state)
{
    (void)state;
    struct qemu_user u;
    struct ferr e = {0};
    assert_int_equal(qemu_user_of_pid(getpid(), &u, &e), 0);
    assert_int_equal(u.uid, getuid());
    assert_int_equal(u.gid, getgid());
    assert_true(u.drop == (getuid() != 0));
    assert_int_equal(u.ngroups, getgroups(0, NULL));
    assert_int_equal(qemu_user_of_pid(0x7ffffff0, &u, &e), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),      cmocka_unit_test(test_give),
        cmocka_unit_test(test_check_reach), cmocka_unit_test(test_vm_uids),
        cmocka_unit_test(test_of_pid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
