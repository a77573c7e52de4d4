/* SPDX-License-Identifier: MIT */
/* The EFI firmware of a VM (spec "firmware": "efi"): OVMF's files on this host, from Debian's
 * ovmf package, and the VM's own variable store, made from OVMF's template on first start. */
#ifndef FERRY_VM_FIRMWARE_H
#define FERRY_VM_FIRMWARE_H

#include <stdbool.h>

#include "common/err.h"

/*
 * Where Debian's ovmf package puts OVMF. The 4 MiB build without Secure Boot: it runs on the
 * i440fx (pc) machine ferry pins as well as on q35, while the .secboot/.ms builds need SMM,
 * which only q35 has (QEMU's docs/interop/firmware.json: "requires-smm"). Every node must run
 * the same size of code and variable store: both are RAM blocks a live migration copies, and
 * QEMU refuses one whose size differs on the destination ("Length mismatch").
 */
#define FIRMWARE_DIR "/usr/share/OVMF"
#define FIRMWARE_CODE "OVMF_CODE_4M.fd"
#define FIRMWARE_VARS "OVMF_VARS_4M.fd"
#define FIRMWARE_PACKAGE "ovmf"

/*
 * Checks that dir (FIRMWARE_DIR) has OVMF's code and variable template as readable regular
 * files, and writes the code's path to code (size bytes). FERR_UNAVAIL naming the file and
 * the package to install ("apt-get install ovmf") when one is missing; FERR_INVALID when the
 * path does not fit.
 */
int firmware_find(const char *dir, char *code, size_t size, struct ferr *e);

/*
 * Makes sure the variable store vars exists: a regular file of the template's size is kept
 * as it is (the guest's boot entries); a missing one is made as a copy of dir's template when
 * create (FERR_NOTFOUND otherwise: an incoming migration must find the source's), never
 * replacing a file another node made meanwhile (*made then says this call made it).
 * Mode 0600. FERR_INVALID when vars is something else (a directory, a file of another
 * size: another firmware's), -errno for I/O, with the path in the message. Blocking: call
 * it off the loop.
 */
int firmware_vars_ready(const char *dir, const char *vars, bool create, bool *made, struct ferr *e);

#endif
