/* SPDX-License-Identifier: MIT */
/* Unit tests of a cluster shared volume as one host sees it (storage/volume.c), on real
 * directories under a temporary one: claims, id files, probes and their reasons, releases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/volume.h"

static char root[PATH_MAX / 2];

static int setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ferry-volume-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    /* realpath: /tmp itself may be a symlink somewhere */
    char real[PATH_MAX];
    if (!realpath(tmpl, real) || strlen(real) >= sizeof(root))
        return -1;
    memcpy(root, real, strlen(real) + 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void sub(char *out, const char *leaf)
{
    snprintf(out, PATH_MAX, "%s/%s", root, leaf);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void test_claim_probe_release(void **state)
{
    (void)state;
    char dir[PATH_MAX], id[VOLUME_ID_MAX], id2[VOLUME_ID_MAX], file[PATH_MAX + 32];
    struct ferr e;
    sub(dir, "v1");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(volume_claim(dir, "c-1", "csv1", id, &e), 0);
    assert_int_equal(strlen(id), 32);
    snprintf(file, sizeof(file), "%s/%s", dir, VOLUME_ID_FILE);
    assert_int_equal(access(file, R_OK), 0);

    json_t *p = volume_probe(dir, id);
    assert_string_equal(str(p, "access"), "direct");
    assert_string_equal(str(p, "why"), "");
    assert_true(json_integer_value(json_object_get(p, "size_bytes")) > 0);
    json_decref(p);
    /* another id: another directory than the volume's */
    p = volume_probe(dir, "0123");
    assert_string_equal(str(p, "access"), "none");
    assert_non_null(strstr(str(p, "why"), "not 0123"));
    json_decref(p);

    /* claimed again under the same name: a new id (the old record is gone) */
    assert_int_equal(volume_claim(dir, "c-1", "csv1", id2, &e), 0);
    assert_string_not_equal(id, id2);
    /* another name of this cluster, or another cluster: refused, naming it */
    assert_int_equal(volume_claim(dir, "c-1", "other", id, &e), FERR_EXISTS);
    assert_non_null(strstr(e.msg, "volume \"csv1\" of this cluster"));
    assert_int_equal(volume_claim(dir, "c-2", "csv1", id, &e), FERR_EXISTS);
    assert_non_null(strstr(e.msg, "another cluster (c-1)"));

    /* a release with another id leaves it; with its own removes the file and the dir */
    assert_int_equal(volume_release(dir, "0123", &e), 0);
    assert_int_equal(access(file, R_OK), 0);
    assert_int_equal(volume_release(dir, id2, &e), 0);
    assert_int_equal(access(file, F_OK), -1);
    snprintf(file, sizeof(file), "%s/%s", dir, VOLUME_DIR);
    assert_int_equal(access(file, F_OK), -1);
    assert_int_equal(volume_release(dir, id2, &e), 0); /* again: nothing to do */
    p = volume_probe(dir, id2);
    assert_string_equal(str(p, "access"), "none");
    assert_non_null(strstr(str(p, "why"), "is it mounted here?"));
    json_decref(p);
}

static void test_bad_directories(void **state)
{
    (void)state;
    char dir[PATH_MAX], link[PATH_MAX], file[PATH_MAX], id[VOLUME_ID_MAX];
    struct ferr e;
    sub(dir, "missing");
    assert_int_equal(volume_claim(dir, "c-1", "csv1", id, &e), FERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "mount the volume there on every node"));
    json_t *p = volume_probe(dir, "x");
    assert_string_equal(str(p, "access"), "none");
    assert_non_null(strstr(str(p, "why"), "No such file"));
    json_decref(p);

    sub(file, "plain");
    put(file, "x");
    assert_int_equal(volume_claim(file, "c-1", "csv1", id, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "not a directory"));

    sub(dir, "real");
    sub(link, "alias");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(symlink(dir, link), 0);
    assert_int_equal(volume_claim(link, "c-1", "csv1", id, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "without symlinks"));
    assert_int_equal(volume_claim("relative/dir", "c-1", "csv1", id, &e), FERR_INVALID);

    /* a damaged id file: refused with where it is */
    char idf[PATH_MAX + 32], vdir[PATH_MAX + 32];
    snprintf(vdir, sizeof(vdir), "%s/%s", dir, VOLUME_DIR);
    snprintf(idf, sizeof(idf), "%s/%s", dir, VOLUME_ID_FILE);
    assert_int_equal(mkdir(vdir, 0755), 0);
    put(idf, "{not json");
    assert_true(volume_claim(dir, "c-1", "csv1", id, &e) < 0);
    assert_non_null(strstr(e.msg, VOLUME_ID_FILE));
    p = volume_probe(dir, "x");
    assert_string_equal(str(p, "access"), "none");
    assert_non_null(strstr(str(p, "why"), "not a ferry volume id file"));
    json_decref(p);
}

static void test_id_parse(void **state)
{
    (void)state;
    char id[VOLUME_ID_MAX], cluster[64], name[64];
    struct ferr e;
    assert_int_equal(
        volume_id_parse("{\"id\":\"ab\",\"cluster\":\"c\",\"name\":\"n\"}", id, cluster, name, &e),
        0);
    assert_string_equal(id, "ab");
    assert_string_equal(cluster, "c");
    assert_string_equal(name, "n");
    const char *bad[] = {"",
                         "[]",
                         "{\"id\":\"ab\"}",
                         "{\"id\":1,\"cluster\":\"c\",\"name\":\"n\"}",
                         "{\"id\":\"\",\"cluster\":\"c\",\"name\":\"n\"}",
                         "{\"id\":\"a\",\"id\":\"b\",\"cluster\":\"c\",\"name\":\"n\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(volume_id_parse(bad[i], id, cluster, name, &e), FERR_INVALID);
    char longname[200];
    memset(longname, 'a', 100);
    snprintf(longname + 100, 100, "%s", "");
    char text[400];
    snprintf(text, sizeof(text), "{\"id\":\"a\",\"cluster\":\"c\",\"name\":\"%s\"}", longname);
    assert_int_equal(volume_id_parse(text, id, cluster, name, &e), FERR_INVALID);
}

static void test_vhds(void **state)
{
    (void)state;
    char dir[PATH_MAX], f[PATH_MAX + 32];
    sub(dir, "vhds");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(f, sizeof(f), "%s/b.vhd", dir);
    put(f, "12345");
    snprintf(f, sizeof(f), "%s/a.vhd", dir);
    put(f, "1");
    snprintf(f, sizeof(f), "%s/notes.txt", dir);
    put(f, "x");
    snprintf(f, sizeof(f), "%s/.hidden.vhd", dir);
    put(f, "x");
    snprintf(f, sizeof(f), "%s/d.vhd", dir);
    assert_int_equal(mkdir(f, 0755), 0);
    json_t *v = volume_vhds(dir);
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(str(json_array_get(v, 0), "file"), "a.vhd");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(v, 1), "size_bytes")), 5);
    json_decref(v);
    v = volume_vhds("/nonexistent/ferry");
    assert_int_equal(json_array_size(v), 0);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_probe_release),
        cmocka_unit_test(test_bad_directories),
        cmocka_unit_test(test_id_parse),
        cmocka_unit_test(test_vhds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
