/* SPDX-License-Identifier: MIT */
/* Log lines to stderr with a timestamp and level; journald or the lab captures them. */
#include "common/log.h"
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_LVL_INFO;

/* Lines start with "<N>", their syslog priority (sd-daemon(3)): stderr is the journal's. */
static bool log_journal;

int log_level_parse(const char *s, enum log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return FERR_INVALID;
}

bool log_detect_journal(void)
{
    /* systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the stream it connected stdout and
     * stderr to; a process that redirected stderr since (or a child that inherited only the
     * variable) sees another inode and keeps plain lines. */
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char end;
    struct stat st;
    log_journal = env && sscanf(env, "%llu:%llu%c", &dev, &ino, &end) == 2 &&
                  fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                  (unsigned long long)st.st_ino == ino;
    return log_journal;
}

void log_write(enum log_level lvl, const char *fmt, ...)
{
    static const char *tags[] = {"debug", "info", "warn", "error"};
    /* LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR of syslog(3) */
    static const int priorities[] = {7, 6, 4, 3};
    struct timespec ts;
    struct tm tm;
    char when[32], prio[8] = "";
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    if (log_journal)
        snprintf(prio, sizeof(prio), "<%d>", priorities[lvl]);
    fprintf(stderr, "%s%s.%03ldZ %-5s ", prio, when, ts.tv_nsec / 1000000, tags[lvl]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
