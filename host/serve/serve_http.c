/*
 * serve_http.c — the HTTP side of `etx serve` (serve.h), on libmicrohttpd: a well-kept C
 * HTTP server (Debian's libmicrohttpd-dev) that parses requests, chunks responses and
 * bounds connections, so etx holds no HTTP parser of its own. One thread per connection
 * (MHD_USE_THREAD_PER_CONNECTION): a connection may block while its job runs — it waits
 * on the job's condition variable, and looks at its socket every 100 ms so that a client
 * that went away cancels its job (its engine requests end, its KV blocks are freed).
 *
 *   GET  /health               {"status": "ok"|"draining", "running", "queued", "kv_blocks_used"}:
 *                              the engine's requests in the batch, waiting (the server's
 *                              queue included), and the KV blocks requests hold
 *   GET  /v1/models            the one model
 *   POST /v1/completions       serve_req.c / serve_resp.c
 *   POST /v1/chat/completions
 *
 * Limits: a body over --max-body is refused with 413 (from its Content-Length before it
 * is read, else once it passes the limit); beyond --max-queue engine requests waiting,
 * 429 with Retry-After; while draining, 503. With --api-key, every /v1/ route needs
 * "Authorization: Bearer KEY", compared in time independent of where it differs.
 *
 * serve_run: binds (127.0.0.1 unless told otherwise), prints the address, runs until
 * SIGINT/SIGTERM, then drains: new requests get 503, in-flight ones finish (at most
 * --drain-timeout seconds; after that they are cancelled), then it exits 0. A second
 * signal cancels at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "common.h"
#include "serve.h"

typedef struct {
    Server* s;
    struct MHD_Connection* conn;
    char* body;
    size_t len;
    int too_large;
    ServeJob* job;   // once queued; the HTTP side's reference
    char* ev;        // stream: events produced and not yet handed to libmicrohttpd
    size_t ev_len, ev_off;
    int ev_end;      // the stream's last event was produced
} Conn;

// 1 when the client closed its end (or the socket failed): a peek reads end-of-file.
static int client_gone(struct MHD_Connection* c) {
    const union MHD_ConnectionInfo* ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return 1;
    char b;
    const ssize_t r = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void abs_time_ms(struct timespec* ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += (long)ms * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

static enum MHD_Result send_text(struct MHD_Connection* c, int status, char* text, const char* type,
                                 const char* retry_after) {
    struct MHD_Response* r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection* c, int status, char* json) {
    return send_text(c, status, json, "application/json", NULL);
}

static enum MHD_Result send_error(struct MHD_Connection* c, int status, const char* msg, const char* param) {
    return send_text(c, status, serve_error_json(status, msg, param), "application/json",
                     status == 429 || status == 503 ? "1" : NULL);
}

// Constant time in the key's content: every byte of the expected key is looked at.
static int key_matches(const char* given, const char* key) {
    const size_t lg = given ? strlen(given) : 0, lk = strlen(key);
    unsigned d = (unsigned)(lg != lk);
    for (size_t i = 0; i < lk; i++) d |= (unsigned char)(i < lg ? given[i] : 0) ^ (unsigned char)key[i];
    return d == 0;
}

static int authorized(const Server* s, struct MHD_Connection* c) {
    if (!s->cfg.api_key) return 1;
    const char* h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    return key_matches(h + 7, s->cfg.api_key);
}

static enum MHD_Result health(Server* s, struct MHD_Connection* c) {
    char* t = xmalloc(256);
    pthread_mutex_lock(&s->mu);
    snprintf(t, 256, "{\"status\":\"%s\",\"running\":%d,\"queued\":%d,\"kv_blocks_used\":%d}",
             s->draining ? "draining" : "ok", s->eng_running, s->queued + s->eng_waiting, s->kv_blocks_used);
    const int draining = s->draining;
    pthread_mutex_unlock(&s->mu);
    return send_json(c, draining ? 503 : 200, t);
}

static enum MHD_Result models(Server* s, struct MHD_Connection* c) {
    char* q = batch_json_quote(s->cfg.model_name, strlen(s->cfg.model_name));
    char* t = xmalloc(strlen(q) + 128);
    sprintf(t, "{\"object\":\"list\",\"data\":[{\"id\":%s,\"object\":\"model\",\"created\":0,\"owned_by\":\"etx\"}]}",
            q);
    free(q);
    return send_json(c, 200, t);
}

// The stream's body (libmicrohttpd calls it on the connection's thread when it can send).
static ssize_t stream_reader(void* cls, uint64_t pos, char* buf, size_t max) {
    Conn* cc = cls;
    Server* s = cc->s;
    ServeJob* j = cc->job;
    for (;;) {
        if (cc->ev_off < cc->ev_len) {
            size_t n = cc->ev_len - cc->ev_off < max ? cc->ev_len - cc->ev_off : max;
            memcpy(buf, cc->ev + cc->ev_off, n);
            cc->ev_off += n;
            return (ssize_t)n;
        }
        if (cc->ev_end) return MHD_CONTENT_READER_END_OF_STREAM;
        cc->ev_len = cc->ev_off = 0;
        pthread_mutex_lock(&s->mu);
        cc->ev_end = serve_stream_events(s, j, &cc->ev, &cc->ev_len);
        if (!cc->ev_end && cc->ev_len == 0) {
            struct timespec ts;
            abs_time_ms(&ts, 100);
            pthread_cond_timedwait(&j->cv, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
        if (cc->ev_len == 0 && !cc->ev_end && client_gone(cc->conn)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static enum MHD_Result post(Server* s, Conn* cc, ServeKind kind) {
    struct MHD_Connection* c = cc->conn;
    if (cc->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is over %zu bytes (--max-body)", s->cfg.max_body);
        return send_error(c, 413, msg, "");
    }
    char msg[600], param[160];
    ServeJob* j = NULL;
    int rc = serve_parse_request(s, kind, cc->body ? cc->body : "", cc->len, &j, msg, sizeof msg, param, sizeof param);
    if (rc) return send_error(c, rc, msg, param);
    j->created = (long long)time(NULL);
    pthread_mutex_lock(&s->mu);
    rc = serve_enqueue_locked(s, j);
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        serve_job_free(j);
        return send_error(c, rc,
                          rc == 429 ? "too many requests in flight (--max-queue); retry later"
                                    : "the server is shutting down",
                          "");
    }
    cc->job = j;
    if (j->stream) {
        struct MHD_Response* r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, cc, NULL);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ok;
    }
    pthread_mutex_lock(&s->mu);
    while (j->n_done < j->n_choices) {
        struct timespec ts;
        abs_time_ms(&ts, 100);
        pthread_cond_timedwait(&j->cv, &s->mu, &ts);
        if (j->n_done == j->n_choices) break;
        pthread_mutex_unlock(&s->mu);
        const int gone = client_gone(c);
        pthread_mutex_lock(&s->mu);
        if (gone) {
            pthread_mutex_unlock(&s->mu);
            return MHD_NO; // the connection closes; its completion callback cancels the job
        }
    }
    int failed = j->failed, cancelled = 0;
    for (int k = 0; k < j->n_choices; k++) cancelled |= strcmp(j->choices[k].finish, "cancelled") == 0;
    char* body = failed || cancelled ? NULL : serve_response_json(s, j);
    char err[ETX_MSG_LEN + 32] = "";
    if (failed)
        for (int k = 0; k < j->n_choices && !err[0]; k++)
            if (j->choices[k].error[0]) snprintf(err, sizeof err, "generation failed: %s", j->choices[k].error);
    pthread_mutex_unlock(&s->mu);
    if (failed) return send_error(c, 500, err, "");
    if (cancelled) return send_error(c, 503, "the request was cancelled: the server is shutting down", "");
    return send_json(c, 200, body);
}

static enum MHD_Result on_request(void* cls, struct MHD_Connection* c, const char* url, const char* method,
                                  const char* version, const char* upload, size_t* upload_size, void** con_cls) {
    Server* s = cls;
    Conn* cc = *con_cls;
    if (!cc) { // the headers: refuse an announced oversized body before reading it
        cc = xcalloc(1, sizeof *cc);
        cc->s = s;
        cc->conn = c;
        *con_cls = cc;
        const char* cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body) cc->too_large = 1;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cc->too_large && cc->len + *upload_size <= s->cfg.max_body) {
            cc->body = xrealloc(cc->body, cc->len + *upload_size + 1);
            memcpy(cc->body + cc->len, upload, *upload_size);
            cc->len += *upload_size;
            cc->body[cc->len] = '\0';
        } else {
            cc->too_large = 1;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    const int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/health") == 0) return is_get ? health(s, c) : send_error(c, 405, "use GET /health", "");
    const int completions = strcmp(url, "/v1/completions") == 0, chat = strcmp(url, "/v1/chat/completions") == 0;
    const int model_list = strcmp(url, "/v1/models") == 0;
    if (!completions && !chat && !model_list) {
        char msg[200];
        snprintf(msg, sizeof msg, "no route %.120s (routes: /health, /v1/models, /v1/completions, /v1/chat/completions)",
                 url);
        return send_error(c, 404, msg, "");
    }
    if (!authorized(s, c)) return send_error(c, 401, "a valid API key is required: Authorization: Bearer KEY", "");
    if (model_list) return is_get ? models(s, c) : send_error(c, 405, "use GET /v1/models", "");
    if (!is_post) return send_error(c, 405, "use POST", "");
    return post(s, cc, chat ? SERVE_CHAT : SERVE_COMPLETION);
}

static void on_completed(void* cls, struct MHD_Connection* c, void** con_cls, enum MHD_RequestTerminationCode toe) {
    Server* s = cls;
    Conn* cc = *con_cls;
    if (!cc) return;
    if (cc->job) {
        pthread_mutex_lock(&s->mu);
        serve_http_release_locked(s, cc->job);
        pthread_mutex_unlock(&s->mu);
    }
    free(cc->body);
    free(cc->ev);
    free(cc);
    *con_cls = NULL;
}

// libmicrohttpd's messages, prefixed; the two it prints when etx ends a connection on
// purpose (a client gone mid-request) are not errors and are left out.
static void mhd_log(void* cls, const char* fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (strstr(msg, "application error generating response") || strstr(msg, "Application reported internal error"))
        return;
    fprintf(stderr, "etx serve: libmicrohttpd: %s%s", msg, msg[0] && msg[strlen(msg) - 1] == '\n' ? "" : "\n");
}

int serve_run(Server* s) {
    // signals are taken by sigwait below: blocked in this thread, so the threads started
    // here inherit it (cmd_serve blocks them earlier still, before the model load starts
    // OpenMP's workers; this keeps serve_run right for any caller)
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    const int v6 = strchr(s->cfg.host, ':') != NULL;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    int ok = v6 ? inet_pton(AF_INET6, s->cfg.host, &a6.sin6_addr) : inet_pton(AF_INET, s->cfg.host, &a4.sin_addr);
    if (ok != 1) {
        fprintf(stderr, "etx serve: --host %s is not an IPv4 or IPv6 address\n", s->cfg.host);
        return CLI_EXIT_REFUSED;
    }
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)s->cfg.port);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)s->cfg.port);

    pthread_t engine;
    if (pthread_create(&engine, NULL, serve_engine_main, s) != 0) {
        fprintf(stderr, "etx serve: cannot start the engine thread\n");
        return CLI_EXIT_FAILED;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (v6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon* d = MHD_start_daemon(
        flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        v6 ? (struct sockaddr*)&a6 : (struct sockaddr*)&a4, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
    int rc = 0;
    if (!d) {
        fprintf(stderr, "etx serve: cannot listen on %s port %d: %s\n", s->cfg.host, s->cfg.port,
                errno ? strerror(errno) : "libmicrohttpd refused to start");
        rc = CLI_EXIT_FAILED;
    } else {
        const union MHD_DaemonInfo* di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        const int port = di ? di->port : s->cfg.port;
        fprintf(stderr, "etx serve: listening on http://%s%s%s:%d (model %s, context %d, batch %d)\n", v6 ? "[" : "",
                s->cfg.host, v6 ? "]" : "", port, s->cfg.model_name, s->cfg.ctx, s->cfg.max_batch);
        fflush(stderr);
        int sig = 0;
        while (sigwait(&set, &sig) != 0) {
        }
        pthread_mutex_lock(&s->mu);
        s->draining = 1;
        const int in_flight = s->jobs;
        pthread_mutex_unlock(&s->mu);
        fprintf(stderr, "etx serve: %s: draining %d request(s) in flight (at most %.0f s)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", in_flight, s->cfg.drain_s);
        const double t0 = etx_now_s();
        struct timespec tick = {0, 50000000L};
        for (;;) {
            pthread_mutex_lock(&s->mu);
            const int left = s->jobs;
            pthread_mutex_unlock(&s->mu);
            if (left == 0) break;
            const int again = sigtimedwait(&set, NULL, &tick) > 0;
            if (again || etx_now_s() - t0 > s->cfg.drain_s) {
                fprintf(stderr, "etx serve: %s: cancelling %d request(s)\n", again ? "second signal" : "drain timeout",
                        left);
                pthread_mutex_lock(&s->mu);
                s->abort = 1;
                pthread_cond_signal(&s->work);
                pthread_mutex_unlock(&s->mu);
                break;
            }
        }
        MHD_stop_daemon(d);
    }
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    s->abort = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(engine, NULL);
    if (!rc) fprintf(stderr, "etx serve: stopped\n");
    return rc;
}
