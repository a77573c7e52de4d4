/* SPDX-License-Identifier: MIT */
/* Unit tests of the log (common/log.c): its line format, and the syslog priority prefix that
 * journald keeps when stderr is the journal's stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* stderr goes to a scratch file for one test; its lines are read back afterwards. */
struct capture {
    char path[32];
    int saved;
};

static void capture_start(struct capture *c)
{
    strcpy(c->path, "/tmp/ferry-log-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    close(fd);
}

/* Restores stderr; returns what was written (the caller frees it). */
static char *capture_end(struct capture *c)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    char *text = calloc(1, 4096);
    assert_non_null(text);
    size_t n = fread(text, 1, 4095, f);
    text[n] = '\0';
    fclose(f);
    unlink(c->path);
    return text;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("\"%s\" does not match %s", text, pattern);
}

/* Points JOURNAL_STREAM at stderr's device and inode, as systemd does. */
static void journal_is_stderr(void)
{
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char v[64];
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
}

static void test_plain_lines(void **state)
{
    (void)state;
    struct capture c;
    capture_start(&c);
    unsetenv("JOURNAL_STREAM");
    assert_false(log_detect_journal());
    log_write(LOG_LVL_WARN, "disk %s is %d%% full", "a", 90);
    char *text = capture_end(&c);
    assert_matches(text, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z warn  disk a is 90% "
                         "full\n$");
    free(text);
}

static void test_journal_prefix(void **state)
{
    (void)state;
    struct capture c;
    capture_start(&c);
    journal_is_stderr();
    assert_true(log_detect_journal());
    log_write(LOG_LVL_DEBUG, "d");
    log_write(LOG_LVL_INFO, "i");
    log_write(LOG_LVL_WARN, "w");
    log_write(LOG_LVL_ERROR, "e");
    char *text = capture_end(&c);
    /* syslog(3): LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3; the rest as before */
    assert_matches(text, "^<7>[0-9T:.-]+Z debug d\n"
                         "<6>[0-9T:.-]+Z info  i\n"
                         "<4>[0-9T:.-]+Z warn  w\n"
                         "<3>[0-9T:.-]+Z error e\n$");
    free(text);
    unsetenv("JOURNAL_STREAM");
    assert_false(log_detect_journal());
}

static void test_journal_stream_of_another_file(void **state)
{
    (void)state;
    /* A child that inherited the variable but not the stream (QEMU's log file, a test's
     * redirection) keeps plain lines; so does a malformed value. */
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char v[64];
    snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", v, 1);
    assert_false(log_detect_journal());
    snprintf(v, sizeof(v), "%llu:%llux", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
    assert_false(log_detect_journal());
    setenv("JOURNAL_STREAM", "", 1);
    assert_false(log_detect_journal());
    unsetenv("JOURNAL_STREAM");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_lines),
        cmocka_unit_test(test_journal_prefix),
        cmocka_unit_test(test_journal_stream_of_another_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
