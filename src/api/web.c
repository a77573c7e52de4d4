/* SPDX-License-Identifier: MIT */
/* The web dashboard's side of ferryd: static files, login sessions, the TCP gate (web.h). */
#include "api/web.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/session.h"
#include "api/webpath.h"
#include "common/log.h"
#include "common/util.h"

#define STATIC_MAX (16 * 1024 * 1024) /* largest file served */
#define LOGIN_DELAY_MS 1000           /* a wrong token is answered this much later */
#define LOGIN_DELAYED_MAX 32          /* wrong logins waiting at once; more are refused now */
#define TOKEN_MAX 256

struct web {
    uv_loop_t *loop;
    char *token;
    char dir[PATH_MAX]; /* "" if none */
    const char *node_name;
    struct session_table sessions;
    struct login_delay *delayed; /* wrong logins waiting for their answer */
    unsigned ndelayed;
};

/* A wrong login, answered after LOGIN_DELAY_MS so that guessing the token is slow. */
struct login_delay {
    uv_timer_t timer;
    struct http_req *req; /* NULL once answered */
    struct web *w;        /* NULL once web is freed */
    struct login_delay *prev, *next;
};

int web_new(const struct web_config *cfg, struct web **out, struct ferr *e)
{
    if (cfg->session_ttl_s < SESSION_TTL_MIN_S || cfg->session_ttl_s > SESSION_TTL_MAX_S)
        return ferr_set(e, FERR_INVALID, "session_ttl: expected %d..%d seconds, got %u",
                        SESSION_TTL_MIN_S, SESSION_TTL_MAX_S, cfg->session_ttl_s);
    struct web *w = calloc(1, sizeof(*w));
    if (!w || !(w->token = strdup(cfg->token ? cfg->token : ""))) {
        free(w);
        return ferr_set(e, -ENOMEM, "web: out of memory");
    }
    if (cfg->dir && cfg->dir[0] && fmt_path(w->dir, sizeof(w->dir), "%s", cfg->dir) < 0) {
        free(w->token);
        free(w);
        return ferr_set(e, FERR_INVALID, "web_dir: path too long: %.100s", cfg->dir);
    }
    w->loop = cfg->loop;
    w->node_name = cfg->node_name;
    session_table_init(&w->sessions, cfg->session_ttl_s, SESSION_IDLE_S);
    *out = w;
    return 0;
}

static void on_delay_closed(uv_handle_t *h)
{
    free(h->data);
}

static void delay_unlink(struct login_delay *d)
{
    if (!d->w)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        d->w->delayed = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->w->ndelayed--;
    d->w = NULL;
}

static void delay_answer(struct login_delay *d)
{
    struct ferr e;
    ferr_set(&e, FERR_AUTH,
             "session: wrong token (the API token of the cluster, as in "
             "ferryd's --token-file)");
    if (d->req)
        http_reply_error(d->req, &e);
    d->req = NULL;
    delay_unlink(d);
    uv_close((uv_handle_t *)&d->timer, on_delay_closed);
}

static void on_delay(uv_timer_t *t)
{
    delay_answer(t->data);
}

void web_free(struct web *w)
{
    if (!w)
        return;
    while (w->delayed)
        delay_answer(w->delayed);
    memset(w->token, 0, strlen(w->token));
    free(w->token);
    free(w);
}

const char *web_dir(const struct web *w)
{
    return w->dir;
}

/* ---- the gate ---- */

static bool safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

int web_gate(const struct http_gate_req *q, struct ferr *e, void *data)
{
    struct web *w = data;
    bool safe = safe_method(q->method);
    if (safe && (webpath_is_static(q->path) || strcmp(q->path, WEB_CA_PATH) == 0))
        return HTTP_PRINCIPAL_PUBLIC;
    bool login = strcmp(q->path, "/v1/session") == 0 && strcmp(q->method, "POST") == 0;
    if ((!safe || q->websocket) && !session_origin_ok(q->origin, q->host, q->tls)) {
        ferr_set(e, FERR_FORBIDDEN,
                 "http: Origin %.100s is not this server's (%s://%.100s): refused, a page of "
                 "another site may not act with your session",
                 q->origin, q->tls ? "https" : "http", q->host ? q->host : "?");
        return HTTP_PRINCIPAL_NONE;
    }
    if (login)
        return HTTP_PRINCIPAL_PUBLIC;
    char id[SESSION_HEX];
    if (!q->cookie || !session_cookie_value(q->cookie, SESSION_COOKIE, id, sizeof(id))) {
        ferr_set(e, FERR_AUTH,
                 "http: not logged in: log in (POST /v1/session with the API "
                 "token) or send \"Authorization: Bearer <token>\"");
        return HTTP_PRINCIPAL_NONE;
    }
    const struct session *s;
    switch (session_lookup(&w->sessions, id, now_mono_ms(), &s)) {
    case 0:
        break;
    case SESSION_EXPIRED:
        ferr_set(e, FERR_AUTH, "http: your session expired (sessions last %u s); log in again",
                 w->sessions.ttl_s);
        return HTTP_PRINCIPAL_NONE;
    case SESSION_IDLE:
        ferr_set(e, FERR_AUTH, "http: your session ended after %u minutes unused; log in again",
                 w->sessions.idle_s / 60);
        return HTTP_PRINCIPAL_NONE;
    default:
        ferr_set(e, FERR_AUTH,
                 "http: unknown session (logged out, or ferryd restarted, which "
                 "ends all sessions); log in again");
        return HTTP_PRINCIPAL_NONE;
    }
    if (!safe && !session_csrf_ok(s, q->csrf)) {
        ferr_set(e, FERR_FORBIDDEN,
                 "http: %s without a valid X-CSRF-Token header: refused (CSRF protection; send "
                 "the \"csrf\" value that POST or GET /v1/session answered)",
                 q->method);
        return HTTP_PRINCIPAL_NONE;
    }
    return HTTP_PRINCIPAL_CLIENT;
}

/* ---- static files ---- */

static void serve_static(struct web *w, struct http_req *req)
{
    const char *path = http_req_path(req);
    char rel[WEBPATH_MAX + 1];
    if (!w->dir[0]) {
        http_reply_errorf(req, FERR_NOTFOUND, "no dashboard here: ferryd runs without --web-dir");
        return;
    }
    if (webpath_resolve(path, rel, sizeof(rel)) < 0) {
        http_reply_errorf(req, FERR_NOTFOUND, "no file %.200s", path);
        return;
    }
    const char *type = webpath_content_type(rel);
    if (!type) {
        http_reply_errorf(req, FERR_NOTFOUND, "no file %.200s (not a type the dashboard serves)",
                          path);
        return;
    }
    char full[PATH_MAX + WEBPATH_MAX + 2], real[PATH_MAX], realdir[PATH_MAX];
    snprintf(full, sizeof(full), "%s/%s", w->dir, rel);
    /* Symlinks inside the directory may point anywhere inside it, never out of it. */
    if (!realpath(w->dir, realdir)) {
        http_reply_errorf(req, FERR_NOTFOUND, "no dashboard here: %s: %s", w->dir, strerror(errno));
        return;
    }
    if (!realpath(full, real) || !path_under(real, realdir)) {
        http_reply_errorf(req, FERR_NOTFOUND, "no file %.200s", path);
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX) {
        if (fd >= 0)
            close(fd);
        http_reply_errorf(req, FERR_NOTFOUND, "no file %.200s", path);
        return;
    }
    char etag[64];
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_size,
             (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    const char *inm = http_req_header(req, "If-None-Match");
    if (inm && strstr(inm, etag)) {
        close(fd);
        const char *h[] = {"ETag", etag, "Cache-Control", "no-cache", NULL};
        http_reply_full(req, 304, NULL, "", 0, h);
        return;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len ? len : 1);
    while (buf && got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (!buf) {
        http_reply_errorf(req, FERR_INTERNAL, "cannot read %.200s", path);
        return;
    }
    const char *h[] = {"ETag", etag, "Cache-Control", "no-cache", NULL};
    http_reply_full(req, 200, type, buf, len, h);
    free(buf);
}

/* ---- sessions ---- */

bool web_req_session(const struct http_req *req, char *id, size_t size)
{
    const char *cookie = http_req_header(req, "Cookie");
    return cookie && session_cookie_value(cookie, SESSION_COOKIE, id, size);
}

bool web_session_valid(struct web *w, const char *id)
{
    const struct session *s;
    return session_lookup(&w->sessions, id, now_mono_ms(), &s) == 0;
}

/* 200 {"csrf", "expires_at", "node"}, with a Set-Cookie header when cookie is not NULL. */
static void reply_session(struct web *w, struct http_req *req, const struct session *s,
                          const char *cookie)
{
    json_t *j = json_pack("{s:s, s:I, s:s}", "csrf", s->csrf, "expires_at",
                          (json_int_t)s->expires_at, "node", w->node_name ? w->node_name : "");
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        http_reply_errorf(req, -ENOMEM, "session: out of memory");
        return;
    }
    const char *h[] = {"Set-Cookie", cookie, "Cache-Control", "no-store", NULL};
    if (!cookie) {
        h[0] = "Cache-Control";
        h[1] = "no-store";
        h[2] = NULL;
    }
    http_reply_full(req, 200, "application/json", text, strlen(text), h);
    free(text);
}

static void login(struct web *w, struct http_req *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    static const char usage[] = "body: expected {\"token\": \"<the API token>\"}";
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    const char *token = json_string_value(json_object_get(j, "token"));
    if (!j || !json_is_object(j) || json_object_size(j) != 1 || !token ||
        strlen(token) > TOKEN_MAX) {
        json_decref(j);
        http_reply_errorf(req, FERR_INVALID, "%s", usage);
        return;
    }
    bool ok = secret_equal(token, w->token);
    json_decref(j);
    if (!ok) {
        if (w->ndelayed >= LOGIN_DELAYED_MAX) {
            http_reply_errorf(req, FERR_UNAVAIL,
                              "session: too many failed logins at once; try again in "
                              "a second");
            return;
        }
        struct login_delay *d = calloc(1, sizeof(*d));
        if (!d) {
            http_reply_errorf(req, -ENOMEM, "session: out of memory");
            return;
        }
        log_warn("session: a login with a wrong token");
        d->req = req;
        d->w = w;
        d->next = w->delayed;
        if (d->next)
            d->next->prev = d;
        w->delayed = d;
        w->ndelayed++;
        uv_timer_init(w->loop, &d->timer);
        d->timer.data = d;
        uv_timer_start(&d->timer, on_delay, LOGIN_DELAY_MS, 0);
        return;
    }
    uint8_t random[2 * SESSION_ID_BYTES];
    if (getrandom(random, sizeof(random), 0) != (ssize_t)sizeof(random)) {
        http_reply_errorf(req, -EIO, "session: getrandom: %s", strerror(errno));
        return;
    }
    const struct session *s =
        session_create(&w->sessions, random, now_mono_ms(), now_wall_ms() / 1000);
    memset(random, 0, sizeof(random));
    char cookie[256];
    /* Secure: the TCP listener speaks TLS (the browser sends it back over HTTPS only). */
    session_set_cookie(cookie, sizeof(cookie), s->id, w->sessions.ttl_s, true);
    log_info("session: a browser logged in (%u sessions)", session_count(&w->sessions));
    reply_session(w, req, s, cookie);
}

static void handle_session(struct web *w, struct http_req *req)
{
    const char *method = http_req_method(req);
    if (strcmp(method, "POST") == 0) {
        login(w, req);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0) {
        http_reply_errorf(req, FERR_METHOD, "%s is not allowed on /v1/session (GET, POST, DELETE)",
                          method);
        return;
    }
    char id[SESSION_HEX];
    const struct session *s;
    if (!web_req_session(req, id, sizeof(id)) ||
        session_lookup(&w->sessions, id, now_mono_ms(), &s) != 0) {
        http_reply_errorf(req, FERR_AUTH, "session: not logged in (no valid %s cookie)",
                          SESSION_COOKIE);
        return;
    }
    if (strcmp(method, "GET") == 0) {
        reply_session(w, req, s, NULL);
        return;
    }
    session_remove(&w->sessions, id);
    char cookie[256];
    session_set_cookie(cookie, sizeof(cookie), "", 0, false);
    const char *h[] = {"Set-Cookie", cookie, NULL};
    http_reply_full(req, 200, "application/json", "{}\n", 3, h);
}

bool web_handle(struct web *w, struct http_req *req)
{
    const char *path = http_req_path(req), *method = http_req_method(req);
    if (strcmp(path, "/v1/session") == 0) {
        handle_session(w, req);
        return true;
    }
    if (!webpath_is_static(path))
        return false;
    if (!safe_method(method)) {
        http_reply_errorf(req, FERR_METHOD, "%s is not allowed on the dashboard's files (GET)",
                          method);
        return true;
    }
    serve_static(w, req);
    return true;
}
