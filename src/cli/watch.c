/* SPDX-License-Identifier: MIT */
/* Watched long requests (watch.h). */
#include "cli/watch.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

#define PROGRESS_POLL_MS 200

static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig)
{
    got_sigint = 1;
}

/* Ctrl-C: asks on the terminal; true when the answer is yes. */
static bool ask_cancel(bool tty, const char *what)
{
    FILE *in = fopen("/dev/tty", "r");
    if (!in)
        return false;
    fprintf(stderr, "%scancel the %s? [y/N] ", tty ? "\n" : "", what);
    fflush(stderr);
    char line[16] = "";
    bool yes = fgets(line, sizeof(line), in) && (line[0] == 'y' || line[0] == 'Y');
    fclose(in);
    return yes;
}

/* One progress line: "[####----] 40% TEXT". */
static void draw(const struct cli_watch *w, const json_t *p, bool tty, uint64_t *last_ms,
                 uint64_t *last_mark)
{
    unsigned pct = 0;
    uint64_t mark = 0, now = now_mono_ms();
    char text[512] = "", bar[21];
    w->describe(p, &pct, &mark, text, sizeof(text));
    if (!tty && now - *last_ms < 1000 && mark == *last_mark)
        return;
    *last_ms = now;
    *last_mark = mark;
    pct = pct > 100 ? 100 : pct;
    for (unsigned i = 0; i < 20; i++)
        bar[i] = i < pct / 5 ? '#' : '-';
    bar[20] = '\0';
    printf("%s[%s] %3u%% %s%s", tty ? "\r" : "", bar, pct, text, tty ? "\033[K" : "\n");
    fflush(stdout);
}

/* The child's exit code when ferryd gave no answer at all (connection refused or broken). */
#define CHILD_NO_ANSWER 3

/*
 * Runs the request in a child process (it answers only when the operation is over) and,
 * meanwhile, polls its progress and handles Ctrl-C here. The child prints the error itself
 * and hands the answer over a pipe; its exit code is ours.
 */
int cli_watched_call(struct cli *cli, const struct cli_watch *w, json_t **answer_out)
{
    int fds[2];
    if (pipe(fds) < 0) {
        fprintf(stderr, "ferry: pipe: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "ferry: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return EXIT_FAIL;
    }
    if (pid == 0) {
        signal(SIGINT, SIG_IGN); /* Ctrl-C is the parent's question */
        close(fds[0]);
        json_t *reply = NULL;
        long status = 0;
        struct ferr e = {0};
        int rc = EXIT_OK;
        if (client_call_status(cli->client, "POST", w->path, w->body, &status, &reply, &e) < 0)
            rc = status == 0 ? (cli_fail(&e), CHILD_NO_ANSWER) : cli_fail(&e);
        char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
        for (size_t off = 0, n = text ? strlen(text) : 0; off < n;) {
            ssize_t wr = write(fds[1], text + off, n - off);
            if (wr <= 0)
                break;
            off += (size_t)wr;
        }
        _exit(rc);
    }
    close(fds[1]);
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    bool tty = cli->fmt != OUTPUT_JSON && isatty(STDOUT_FILENO);
    bool show = cli->fmt != OUTPUT_JSON, drawn = false, seen = false;
    uint64_t last_ms = 0, last_mark = 0;
    char *answer = NULL;
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int n = poll(&pfd, 1, PROGRESS_POLL_MS);
        if (n > 0) {
            char buf[4096];
            ssize_t r = read(fds[0], buf, sizeof(buf));
            if (r <= 0)
                break; /* the answer is complete */
            char *na = realloc(answer, len + (size_t)r + 1);
            if (!na)
                break;
            answer = na;
            memcpy(answer + len, buf, (size_t)r);
            len += (size_t)r;
            answer[len] = '\0';
            continue;
        }
        if (got_sigint) {
            got_sigint = 0;
            if (ask_cancel(tty, w->what)) {
                json_t *reply = NULL;
                if (cli_call(cli, "POST", w->cancel_path, NULL, &reply) == EXIT_OK)
                    fprintf(stderr, "%s: cancelling the %s\n", w->name, w->what);
                json_decref(reply);
            }
            continue;
        }
        long status = 0;
        json_t *p = NULL;
        struct ferr e = {0};
        if (client_request(cli->client, "GET", w->progress_path, NULL, &status, &p, &e) == 0 &&
            status == 200 && p) {
            seen = true;
            if (show) {
                draw(w, p, tty, &last_ms, &last_mark);
                drawn = true;
            }
        }
        json_decref(p);
    }
    close(fds[0]);
    if (tty && drawn)
        putchar('\n');
    int st = 0, rc = EXIT_FAIL;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    sigaction(SIGINT, &old, NULL);
    if (WIFEXITED(st))
        rc = WEXITSTATUS(st);
    if (rc == CHILD_NO_ANSWER) {
        rc = EXIT_FAIL;
        if (seen && w->lost_note && *w->lost_note) /* ferryd went away meanwhile */
            fprintf(stderr, "ferry: %s\n", w->lost_note);
    }
    if (rc == EXIT_OK) {
        json_t *r = answer ? json_loads(answer, 0, NULL) : NULL;
        if (r) {
            *answer_out = r;
        } else {
            struct ferr e = {.code = FERR_PROTO};
            snprintf(e.msg, sizeof(e.msg), "the %s's answer was lost", w->what);
            rc = cli_fail(&e);
        }
    }
    free(answer);
    return rc;
}
