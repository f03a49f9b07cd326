/*
 * proxy_internal.h - the steps of the http proxy shared by its files
 * (proxy.c: a connection's life; request.c; response.c) and reused by
 * forward mode (forward.c) and the cache glue (cache_http.c). Not for other
 * modules.
 *
 * Thread: the worker owning the connection.
 */
#ifndef FULCRUM_HTTP_PROXY_INTERNAL_H
#define FULCRUM_HTTP_PROXY_INTERNAL_H

#include <stdbool.h>

#include "core/conn.h"
#include "core/http/proxy.h"

/* Longest trailer section of a chunked body. */
#define TRAILER_MAX 16384
/* The response buffer: a response head must fit in it. */
#define RESP_HEAD_MAX 65536

static inline struct http_conn *http_of(const struct conn *c)
{
	return c->http;
}

/* buffers.c */

/* The client's buffer (rbuf), big enough for max_header_size: taken when a
 * request starts. 0 or -ENOMEM. */
int http_rbuf_get(struct conn *c);
void http_rbuf_put(struct conn *c, struct http_conn *hc);
/* The server's buffer (sbuf): taken when bytes arrive. 0 or -ENOMEM. */
int http_sbuf_get(struct conn *c);
void http_sbuf_put(struct conn *c, struct http_conn *hc);
/* Writes what Q holds to S: 1 when all is written, 0 when S is full,
 * -errno on error. Adds the bytes written to *COUNT. */
int http_outq_flush(struct side *s, struct outq *q, uint64_t *count);
/* Sets Q to the (up to three) non-empty slices given. */
void http_outq_set(struct outq *q, const void *a, size_t alen, const void *b, size_t blen,
		   const void *c, size_t clen);

/* account.c */

/* Counts the response in its server's requests_total (a 502 after failed
 * connects: the last server tried's; none: the pool's), once per request. */
void http_count_response(struct conn *c);
/* Adds what the request moved since the last call to the listener's byte
 * counters. */
void http_count_bytes(struct conn *c);
/* Writes the request's access-log line, and counts its bytes, duration and
 * retries. */
void http_log_request(struct conn *c);

/* proxy.c */

void http_set_phase(struct conn *c, enum http_phase p);
/* Runs the connection's current phase as far as it can go. */
void http_run(struct conn *c);

/* Answers the current request with STATUS and fulcrum's own short body
 * (http_reply is this without HEADERS); HEADERS, when not NULL, are extra
 * CRLF-terminated lines for the head. */
void http_reply_ex(struct conn *c, int status, const char *reason, bool close, const char *headers);

/* Gives back the server connection (to the idle pool when REUSE) and the
 * server's active count. */
void http_release_server(struct conn *c, bool reuse);
/* The server has sent the whole response: the request stops counting
 * against it, before the response's last bytes go out (see proxy.c). */
void http_server_done(struct conn *c);
/* Answers the current request with STATUS and a short text body; CLOSE:
 * the connection closes after it. REASON goes to the access log. */
void http_reply(struct conn *c, int status, const char *reason, bool close);

/* closing.c */

/* How long a lingering connection (closing after its answer) waits. */
#define LINGER_MS 1000

/* Whether the client has sent its last byte (a FIN after the request, and
 * nothing pipelined behind it, in rbuf or still in the socket): the answer
 * to this request ends the connection, and says so with Connection: close. */
bool http_client_done(struct conn *c);
/* Half-closes the client side and reads and drops what still comes, for
 * LINGER_MS at most (HP_LINGER; http_run_linger reads). */
void http_linger(struct conn *c);
void http_run_linger(struct conn *c);
/* A refused CONNECT: counts what the client sent behind it, in rbuf and
 * in the socket now, into its line, and drops it. */
void http_absorb_tunnel_bytes(struct conn *c);
/* Logs what the client pipelined behind the answer that ends the
 * connection (one line, reason unanswered_pipelined or shutdown). */
void http_log_unanswered(struct conn *c);
/* Ends the connection after a whole exchange: what the client still sent
 * is logged, and the connection lingers rather than close on unread bytes. */
void http_close_after_answer(struct conn *c);
/* Drops the CRLFs a client sent between requests from rbuf; whether
 * nothing else is there (the connection stays idle). */
bool http_between_requests(struct conn *c);

/* request.c */

/* Forgets the last request: the connection starts reading a new one. */
void http_new_request(struct conn *c);
/* Starts the request's clock (its log times, the duration histogram) now:
 * at its first byte. */
void http_request_clock(struct conn *c);
/* Between two requests, or before a request's first byte: moves C to the
 * generation its worker runs now, when it can be (see request.c). */
void http_take_current_gen(struct conn *c);
/* Looks for a complete request head in rbuf and starts it. */
void http_start_request(struct conn *c);
/* A request that ends before its head was parsed (an error, a timeout, the
 * client leaving): takes the log's method, target and version from rbuf when
 * a whole request line came (else the log shows "- - -"), and the bytes
 * received so far. */
void http_note_unparsed_request(struct conn *c);
/* Turns the absolute-form request line of H in rbuf into origin-form, in
 * place, and moves hc->head_start to it (call after the head is built). */
void http_origin_form(struct http_conn *hc, const struct http_head *h);
/* 1 when the request is all sent, 0 to wait, -1 after ending. */
int http_send_request(struct conn *c);
/*
 * Builds the head that goes to the server from H (parsed from the read
 * buffer): the kept lines, closed up in place, then X-Forwarded-* when the
 * listener adds them, then LINES (CRLF-terminated, may be NULL). MORE adds
 * fields to drop (may be NULL). Sets head_start, head_end and req_extra.
 * Returns 0 or -ENOMEM.
 */
int http_build_request_head(struct conn *c, const struct http_head *h,
			    const struct rewrite_opts *more, const char *lines);

/* connect.c */

/* Connects to hc->server, or to a server of hc->pool picked by the
 * balancer, with the pool's retries; the request then goes out. */
void http_connect_server(struct conn *c);

/* Counts a failure of hc->server for passive health and logs WHAT failed. */
void http_server_failed(struct conn *c, int err, const char *what);
/* Whether the pool's retries allow another server. */
bool http_can_retry(const struct conn *c);
/* A connect to hc->server failed with ERR: counts it for passive health and
 * lets the server go. Returns true when another server may be tried, else
 * answers 502 with REASON and returns false. */
bool http_connect_failed(struct conn *c, int err, const char *reason);
/* HP_CONNECT: the connect finished, or failed (then retries). */
void http_check_connect(struct conn *c);
/* A pooled connection failed before any response byte: sends the request
 * again on a fresh one when that is safe. Whether it did (or, with no
 * descriptor left for a fresh one, answered the client itself). */
bool http_retry_stale(struct conn *c);
/* The server closed, reset or let server_timeout pass before any response
 * byte: an idempotent request still whole in rbuf (no body, or a
 * Content-Length one that came with its head) goes to another server when
 * retries allow and one is left (SPEC §3). ERR and WHAT go to the log.
 * Whether it did. */
bool http_retry_next(struct conn *c, int err, const char *what);

/* response.c */

/* 1 when the response has all gone to the client, 0 to wait, -1 after
 * ending. */
int http_relay_response(struct conn *c);

/* timeout.c */

/* The server's socket has room for the rest of the request, if any. */
bool http_server_takes_request(const struct conn *c);
/* Keeps the connection's timer no later than its phase's deadline. */
void http_arm_timer(struct conn *c);

/* pick.c: the request's key for the hashing balances (hash_key, falling
 * back to the client address), and the server its sticky cookie names
 * while that one is valid and usable, or NULL (hc->set_cookie tells
 * whether the answer must set the cookie). */
uint64_t http_request_key(const struct conn *c, const struct http_head *h, const char *buf);
struct lb_server *http_sticky_server(struct conn *c, const struct http_head *h, const char *buf);

#endif
