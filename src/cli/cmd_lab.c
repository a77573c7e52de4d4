/* SPDX-License-Identifier: MIT */
/* ferry lab: hands its arguments to the lab script (lab/ferry-lab, python3), which builds and
 * removes the simulated hosts; nothing of the lab lives in C. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"

#define LAB_PYTHON "/usr/bin/python3"
#define LAB_SCRIPT_INSTALLED FERRY_DATADIR "/lab/ferry-lab"

/* Writes dir(/proc/self/exe) + "/" + rel into out; returns 0, or -1 if it does not fit or the
 * executable's path is unknown. */
static int exe_relative(const char *rel, char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    int w = snprintf(out, size, "%s/%s", exe, rel);
    return w < 0 || (size_t)w >= size ? -1 : 0;
}

/*
 * Finds the lab script: $FERRY_LAB if set (it must exist), else next to an in-tree build
 * (build/src/ferry -> lab/ferry-lab), else next to an installed ferry (PREFIX/bin/ferry ->
 * PREFIX/share/ferry/lab/ferry-lab), else the default prefix. Returns 0 with the path in out,
 * or -1 after printing what was tried.
 */
static int lab_script_find(char *out, size_t size)
{
    const char *env = getenv("FERRY_LAB");
    if (env && env[0]) {
        if (access(env, R_OK) == 0 && strlen(env) < size) {
            strcpy(out, env);
            return 0;
        }
        fprintf(stderr, "ferry lab: FERRY_LAB=%s: %s\n", env,
                strlen(env) >= size ? "path is too long" : strerror(errno));
        return -1;
    }
    static const char *const rels[] = {"../../lab/ferry-lab", "../share/ferry/lab/ferry-lab"};
    char tried[2][PATH_MAX] = {"", ""};
    for (size_t i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        char p[PATH_MAX], real[PATH_MAX];
        if (exe_relative(rels[i], p, sizeof(p)) < 0)
            continue;
        snprintf(tried[i], sizeof(tried[i]), "%s", p);
        if (realpath(p, real) && access(real, R_OK) == 0 && strlen(real) < size) {
            strcpy(out, real);
            return 0;
        }
    }
    if (access(LAB_SCRIPT_INSTALLED, R_OK) == 0 && strlen(LAB_SCRIPT_INSTALLED) < size) {
        strcpy(out, LAB_SCRIPT_INSTALLED);
        return 0;
    }
    fprintf(stderr,
            "ferry lab: cannot find the lab script ferry-lab; looked at\n"
            "  %s\n  %s\n  %s\n"
            "Run ferry from its build tree, install ferry, or set FERRY_LAB=/path/to/ferry-lab.\n",
            tried[0][0] ? tried[0] : "(build tree: path of this executable unknown)",
            tried[1][0] ? tried[1] : "(install prefix: path of this executable unknown)",
            LAB_SCRIPT_INSTALLED);
    return -1;
}

int cmd_lab(struct cli *cli, int argc, char **argv)
{
    char script[PATH_MAX];
    if (lab_script_find(script, sizeof(script)) < 0)
        return EXIT_FAIL;
    if (access(LAB_PYTHON, X_OK) < 0) {
        fprintf(stderr,
                "ferry lab: %s: %s; the lab needs Debian's python3 (apt-get install "
                "python3)\n",
                LAB_PYTHON, strerror(errno));
        return EXIT_FAIL;
    }

    /* python3 SCRIPT [-o json] ARGS... NULL: a global "ferry -o json lab ..." is passed on. */
    bool json = cli->fmt == OUTPUT_JSON;
    size_t n = 2 + (json ? 2 : 0) + (size_t)(argc > 0 ? argc - 1 : 0) + 1;
    char **args = calloc(n, sizeof(*args));
    if (!args) {
        fprintf(stderr, "ferry lab: out of memory\n");
        return EXIT_FAIL;
    }
    size_t k = 0;
    args[k++] = "python3";
    args[k++] = script;
    if (json) {
        args[k++] = "-o";
        args[k++] = "json";
    }
    for (int i = 1; i < argc; i++)
        args[k++] = argv[i];
    args[k] = NULL;

    setenv("FERRY_LAB_PROG", "ferry lab", 1);
    if (!getenv("FERRY_BUILD")) {
        /* The script finds the binaries itself; telling it which ferry runs keeps a build
         * tree's lab on that build tree's binaries. */
        char dir[PATH_MAX];
        if (exe_relative("..", dir, sizeof(dir)) == 0) {
            char real[PATH_MAX], probe[PATH_MAX + 16];
            if (realpath(dir, real) &&
                snprintf(probe, sizeof(probe), "%s/src/ferryd", real) < (int)sizeof(probe) &&
                access(probe, X_OK) == 0)
                setenv("FERRY_BUILD", real, 1);
        }
    }
    fflush(NULL);
    execv(LAB_PYTHON, args);
    fprintf(stderr, "ferry lab: exec %s %s: %s\n", LAB_PYTHON, script, strerror(errno));
    free(args);
    return EXIT_FAIL;
}
