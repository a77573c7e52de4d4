/* SPDX-License-Identifier: MIT */
/* A VM's serial console output: a bounded in-memory ring with byte offsets, mirrored to a
 * size-bounded log file (console.log, rotated once to console.log.1). */
#ifndef FERRY_VM_CONSOLE_H
#define FERRY_VM_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct console;

/* Opens the console of a VM whose log lives at path; the tail of an existing log is loaded
 * (offsets then start from the size of that file). ring_bytes: memory kept, at least 1;
 * file_max: size the file may reach before it rotates. Returns 0 with *out (console_close
 * frees it), or FERR_INVALID (ring_bytes 0), -ENAMETOOLONG or -ENOMEM with *out untouched. A
 * log that cannot be read is not an error: the console starts empty. */
int console_open(const char *path, size_t ring_bytes, size_t file_max, struct console **out,
                 struct ferr *e);
void console_close(struct console *c);

/* Appends output read from the VM to the ring and to the file, which first rotates to
 * PATH.1 when the append would take it over file_max (a single append longer than file_max is
 * still written whole). A file error is logged, not returned: the ring keeps the bytes. */
void console_append(struct console *c, const char *data, size_t len);

/* Oldest offset still kept and the offset after the newest byte. */
uint64_t console_start(const struct console *c);
uint64_t console_end(const struct console *c);

/* Copies up to max bytes from offset (clamped to what is kept) into a new NUL-terminated
 * buffer the caller frees; *from gets the offset actually used, *len the byte count. Returns 0,
 * or -ENOMEM with the outputs untouched. */
int console_read(const struct console *c, uint64_t offset, size_t max, char **out, size_t *len,
                 uint64_t *from);

#endif
