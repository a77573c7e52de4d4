/* SPDX-License-Identifier: MIT */
/* Leveled logging for the daemon; formatting is skipped below the threshold. */
#ifndef FERRY_COMMON_LOG_H
#define FERRY_COMMON_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

extern enum log_level log_threshold;

/* Parses "debug", "info", "warn", "error"; returns 0 or FERR_INVALID. */
int log_level_parse(const char *s, enum log_level *out);
/* Under systemd with stderr connected to the journal (JOURNAL_STREAM names stderr's device and
 * inode), every later line starts with its syslog priority, "<6>" for info, which journald
 * strips and keeps as the entry's priority; otherwise lines stay as they are. Call it once at
 * start, before logging. Returns whether lines carry the prefix. */
bool log_detect_journal(void);
void log_write(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) >= log_threshold)                                                                \
            log_write((lvl), __VA_ARGS__);                                                         \
    } while (0)
#define log_debug(...) LOG_AT(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_LVL_ERROR, __VA_ARGS__)

#endif
