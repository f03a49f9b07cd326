/*
 * proxy.h - http mode: HTTP/1.1 reverse proxying of one client connection,
 * request after request (SPEC §3 "http mode").
 *
 * A connection is in one phase at a time:
 *   IDLE     keep-alive, between requests; holds no buffer
 *   HEAD     reading a request head (request_timeout runs)
 *   AUTH     forward mode with `auth`: waiting for the hasher thread's
 *            verdict on the client's credentials
 *   RESOLVE  forward mode: waiting for the origin's name to resolve
 *   CACHE_WAIT waiting for another request's fetch of the same cacheable
 *            response (cache_http.h); then the request starts again
 *   CONNECT  waiting for a new server connection
 *   EXCHANGE the request (head, then body) goes to the server while its
 *            response (head, then body) comes back; both must end
 *   TUNNEL   after a 101: bytes both ways, like tcp mode
 *   REPLY    writing a response fulcrum made itself
 *   LINGER   after an error reply: reading and dropping what the client
 *            still sends, so closing does not reset the reply away
 * Pipelined requests wait in the read buffer and start when the previous
 * response has ended, so responses go out in order.
 *
 * Thread: the worker owning the connection.
 */
#ifndef FULCRUM_HTTP_PROXY_H
#define FULCRUM_HTTP_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "balancer/lb.h"
#include "core/http/chunked.h"
#include "core/http/parser.h"
#include "core/http/rewrite.h"

struct cache_entry;
struct cache_fill;
struct conn;
struct fwd_conn;
struct side;
struct upstream;
struct lb_pool;
struct lb_server;

#define HTTP_PHASES(X)                                                                             \
	X(HP_IDLE, "idle")                                                                         \
	X(HP_HEAD, "head")                                                                         \
	X(HP_AUTH, "auth")                                                                         \
	X(HP_RESOLVE, "resolve")                                                                   \
	X(HP_CACHE_WAIT, "cache_wait")                                                             \
	X(HP_CONNECT, "connect")                                                                   \
	X(HP_EXCHANGE, "exchange")                                                                 \
	X(HP_TUNNEL, "tunnel")                                                                     \
	X(HP_REPLY, "reply")                                                                       \
	X(HP_LINGER, "linger")

#define HP_ENUM(e, s) e,
enum http_phase { HTTP_PHASES(HP_ENUM) HP_COUNT };
#undef HP_ENUM

#define HTTP_LOG_TARGET_MAX 512

/* A queue of slices to write to one socket. */
struct outq {
	struct iovec iov[5];
	uint8_t n, i;
};

/* The http state of a client connection; owned by its conn. */
struct http_conn {
	enum http_phase phase;
	uint32_t seq; /* requests started on this connection */
	struct upstream *u;

	char *rbuf; /* bytes from the client: the head, body, pipelined requests */
	uint32_t rlen, rcap;
	uint32_t rpos; /* bytes of rbuf the current request has used up */
	uint32_t head_seen; /* rlen when the head was last found incomplete, else 0 */
	uint32_t rsend; /* chunked body: checked bytes at rpos not yet sent */
	char *sbuf; /* bytes from the server */
	uint32_t slen, scap;
	uint32_t spos, ssend;

	/* the request: its first byte, for its times in the log and the
	 * duration histogram (http_request_clock) */
	uint64_t req_start_ms, req_start_wall_ms;
	uint64_t req_start_us; /* CLOCK_MONOTONIC, for the duration histogram */
	/* Since when its head is awaited, for request_timeout: the accept (or
	 * the handshake) for a connection's first request, which the client
	 * may leave idle, and its first byte for later ones. */
	uint64_t head_since_ms;
	char method[32]; /* for the log */
	char target[HTTP_LOG_TARGET_MAX];
	uint16_t method_len, target_len;
	bool line_unknown; /* the log has no request line: method etc. are "-" */
	enum http_method method_id;
	uint8_t minor;
	bool client_ka; /* the client connection may carry another request */
	bool upgrade;
	bool connect_tunnel; /* forward CONNECT: once connected, 200 and a tunnel */
	enum http_body req_body;
	uint64_t req_left;
	uint64_t req_length; /* Content-Length: the body's bytes, from body_start in rbuf */
	uint32_t body_start;
	/* A chunked body fulcrum answered before sending any of it: where it
	 * ends in rbuf, when all of it is in (http_reply_ex); else 0. */
	uint32_t body_end;
	uint64_t req_body_len; /* chunked: payload bytes so far, for max_body_size */
	struct http_chunked req_ch;
	bool req_head_sent, req_done;
	bool req_body_flowed; /* a byte of the request body reached the server */
	/* A write of the body failed: nothing more is sent, and what the
	 * server answered before it stopped reading is read (response.c). */
	bool req_write_failed;
	/* http_drain resumed the connection for bytes it saw waiting */
	bool drain_resumed;
	/* Expect: 100-continue with a body, and neither a byte of it from the
	 * client (bytes_in still head_in) nor an interim answer yet */
	bool awaits_continue;
	/* ... and the client named Expect in Connection: the expectation is
	 * fulcrum's, not the server's (it never sees it), so the 100 is too */
	bool continue_here;
	uint8_t interim; /* interim (1xx) heads the server sent for this request */
	uint64_t lingered; /* bytes read and dropped while lingering (proxy.c) */
	uint32_t head_in; /* bytes_in once the head was read */
	bool up_armed, down_armed; /* c->up / c->down carry this request's body */
	uint32_t head_start, head_end; /* the kept head in rbuf, for a resend */
	struct outq req_out;
	struct rewrite_extra req_extra;
	char client_ip[48]; /* the client's address for X-Forwarded-For, once made */
	uint8_t client_ip_len;

	/* where it goes */
	struct lb_pool *pool;
	struct lb_server *server;
	struct lb_tried tried;
	/* How the last try failed, for the answer once no server is left:
	 * 502 with its connect or TLS reason, or 504 server_timeout. */
	const char *try_failure;
	int try_failure_status;
	uint64_t key;
	bool set_cookie; /* sticky: tell the client which server it got */
	bool pinned; /* sticky: the first try goes to the cookie's server */
	bool host_short; /* the answer is fulcrum's own shortage: no server's */

	/* the response */
	int status;
	bool counted; /* status is in requests_total (http_count_response) */
	enum http_body resp_body;
	uint64_t resp_left;
	struct http_chunked resp_ch;
	bool resp_started; /* bytes of the final response went to the client */
	bool resp_head_sent, resp_done, server_ka;
	bool dechunk; /* chunked response to an HTTP/1.0 client: send it decoded */
	int64_t ttfb_ms;
	struct outq resp_out;
	struct rewrite_extra resp_extra;

	uint64_t bytes_in, bytes_out; /* this request's, heads included */
	uint64_t counted_in, counted_out; /* of those, already in the listener's stats */
	char reply[512]; /* a response of fulcrum's own */
	bool reply_close;
	const char *reason; /* why this request ended early, for the log */
	struct fwd_conn *fwd; /* forward mode's state (forward.c); NULL in http mode */
	/* the cache (cache_http.c), on listeners with cache > 0 */
	struct cache_entry *cache_hit; /* a hit being written: one reference held */
	struct cache_fill *cache_fill; /* a miss whose response may be stored */
};

struct http_conn *http_conn_new(void);
/* Logs the request under way and frees what HC holds; the upstream is
 * closed, not pooled. UNSENT: bytes read for the client that it was never
 * sent (they leave BYTES_OUT). */
void http_conn_free(struct conn *c, struct http_conn *hc, uint64_t unsent);

void http_start(struct conn *c);
void http_process(struct conn *c, const struct side *from);
void http_on_timer(struct conn *c);
/* The worker is stopping: close the connection if it is between requests,
 * else make the current response its last. */
void http_drain(struct conn *c);
/* conn_ops.answering: a request is in flight (its head read, its answer
 * not yet sent in full), not a tunnel. */
bool http_answering(const struct conn *c);
/* conn_ops.withdraw: a request whose server connection is still being made
 * (HP_CONNECT) goes to another server. */
bool http_withdraw(struct conn *c);

#endif
