/*
 * conn.h - a client connection and the server connection paired with it,
 * from accept to close.
 *
 * Ownership: a struct conn belongs to the worker that accepted it; no other
 * thread touches it. It holds one reference on the configuration generation
 * it started under, so reloads never change a running connection. One
 * function ends it, conn_close(): it closes both fds (which takes them out of
 * epoll), cancels the timer, returns pipes and buffers, writes the log line,
 * and moves the conn to the worker's closed list; the memory is freed after
 * the current epoll batch, so a stale event for the same object lands on a
 * closed conn and is dropped.
 */
#ifndef FULCRUM_CONN_H
#define FULCRUM_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/relay.h"
#include "core/timer.h"
#include "core/worker.h"

#define CLOSE_REASONS(X)                                                                           \
	X(CR_NONE, "-")                                                                            \
	X(CR_CLIENT_TIMEOUT, "client_timeout")                                                     \
	X(CR_SERVER_TIMEOUT, "server_timeout")                                                     \
	X(CR_CONNECT_TIMEOUT, "connect_timeout")                                                   \
	X(CR_CONNECT_FAILED, "connect_failed")                                                     \
	X(CR_SERVER_TLS, "server_tls_failed")                                                      \
	X(CR_NO_SERVER, "no_server")                                                               \
	X(CR_SERVERS_FULL, "servers_full")                                                         \
	X(CR_CLIENT_RESET, "client_reset")                                                         \
	X(CR_CLIENT_CLOSED, "client_closed")                                                       \
	X(CR_CLIENT_TLS, "client_tls_error")                                                       \
	X(CR_SERVER_RESET, "server_reset")                                                         \
	X(CR_MAX_CONNECTIONS, "max_connections")                                                   \
	X(CR_SHUTDOWN, "shutdown")                                                                 \
	X(CR_NO_MEMORY, "no_memory")                                                               \
	X(CR_OUT_OF_RESOURCES, "out_of_resources")                                                 \
	X(CR_INTERNAL, "internal_error")                                                           \
	X(CR_REQUEST_ERROR, "request_error")                                                       \
	X(CR_PROXY_PROTOCOL, "proxy_protocol")                                                     \
	X(CR_SERVER_DISABLED, "server_disabled")                                                   \
	X(CR_TLS_HANDSHAKE, "tls_handshake_failed")                                                \
	X(CR_TLS_TIMEOUT, "tls_handshake_timeout")                                                 \
	X(CR_TLS_BAD_HELLO, "tls_bad_client_hello")

#define CR_ENUM(e, s) e,
enum close_reason { CLOSE_REASONS(CR_ENUM) CR_COUNT };
#undef CR_ENUM

const char *close_reason_name(enum close_reason r);

#define CONN_STATES(X)                                                                             \
	X(CS_CONNECTING, "connecting")                                                             \
	X(CS_RELAY, "relay")                                                                       \
	X(CS_CLOSED, "closed")

#define CS_ENUM(e, s) e,
enum conn_state { CONN_STATES(CS_ENUM) CS_COUNT };
#undef CS_ENUM

/* The client's address: IPv4, IPv6, or AF_UNIX (no address). */
union conn_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct http_conn;

/* What a listener's mode does with a connection (tcp.c, http/proxy.c). */
struct conn_ops {
	void (*start)(struct conn *c); /* accepted */
	/* An event on socket FROM, or FROM = NULL: resumed, or bytes that came
	 * with an earlier event may be waiting. */
	void (*process)(struct conn *c, const struct side *from);
	void (*on_timer)(struct conn *c);
	void (*drain)(struct conn *c); /* the worker is stopping gracefully */
	/* True while a request is in flight, which a stop's deadline lets
	 * finish; NULL: never (tcp, a TLS handshake, a PROXY header). */
	bool (*answering)(const struct conn *c);
	/* The server C holds was disabled through the admin API while C was
	 * still connecting to it, before anything of the client's went there:
	 * C goes on to another server and true is returned; false (or NULL)
	 * when it is too late, and the sweep closes C. */
	bool (*withdraw)(struct conn *c);
};

struct conn {
	const struct conn_ops *ops;
	struct http_conn *http; /* http and forward modes */
	struct list node; /* worker->conns, then worker->closed */
	struct list pending_node; /* worker->pending: out of budget, or a write held back */
	struct worker *w;
	struct gen *gen; /* one reference held */
	const struct cfg_listener *lc;
	uint32_t listener; /* index of lc in gen->cfg->listeners */
	uint32_t bind; /* the id of the bind it came in on (cfg_addr.bind_id) */
	uint32_t ttfb_ms; /* tcp mode: 1 + ms to the server's first byte; 0 = none yet */
	uint16_t status; /* a status fulcrum answered outside http mode, 0 = none */

	struct side cli, srv;
	struct half up; /* client -> server */
	struct half down; /* server -> client */

	enum conn_state state;
	enum close_reason reason; /* while connecting: why the last try failed */
	struct timer timer;
	uint64_t start_ms, start_wall_ms, last_active_ms;
	union conn_addr peer;
	/* The destination an accepted PROXY header named, which goes on in
	 * the header to a server (the address the client reached, as HAProxy
	 * passes it on); AF_UNSPEC when there was none: fulcrum's own address.
	 * (struct conn stays in the same allocation size class with it.) */
	union conn_addr pp_dst;

	struct lb_pool *pool;
	struct lb_server *server; /* the last server chosen (kept for the log) */
	bool server_held; /* c->server counts this conn in its active count */
	/* When c->server was taken: a failure of work given to a server before
	 * its last recovery says nothing of it now (lb_server_failed). */
	uint64_t server_taken_ms;
	struct lb_tried tried;
	/* Of up.bytes and down.bytes, what the listener's byte counters have
	 * (conn_count_bytes); http keeps its own (http_count_bytes). */
	uint64_t counted_in, counted_out;
};

/* Worker thread: takes ownership of FD, accepted on bind BIND of listener
 * LISTENER (an index into the worker's generation). */
void conn_accept(struct worker *w, uint32_t listener, uint32_t bind, int fd,
		 const union conn_addr *peer);
/* Hands an accepted connection to its listener's mode (after the PROXY
 * header, when the listener takes one). */
void conn_start(struct conn *c);
/* Worker thread: closes every connection, and every idle pooled server
 * connection, whose server is in SRV_DISABLED (conn_sweep.c). */
void conn_sweep_disabled(struct worker *w);
void conn_close(struct conn *c, enum close_reason reason);
void conn_side_init(struct conn *c, struct side *s, int fd);
/* An epoll event for side S of its connection. */
void conn_side_event(struct side *s, uint32_t events);
/* Worker thread: the worker is stopping gracefully. */
void conn_drain(struct conn *c);
/* Worker thread: C has a request in flight (conn_ops.answering). */
bool conn_answering(const struct conn *c);
/* Closes the server socket and gives back the server's active count. */
void conn_release_server(struct conn *c);
/* Adds the bytes moved since the last call to the listener's counters. */
void conn_count_bytes(struct conn *c);
void conn_set_state(struct conn *c, enum conn_state s);
/* The balancing key of the client's address (not its port): source hashing,
 * and the fallback of every hash key a request lacks (SPEC §4). */
uint64_t conn_client_hash(const struct conn *c);
/* One step of connecting side S to server SRV of POOL once the non-blocking
 * connect is under way: the connect's outcome, then the PROXY header when
 * SRV wants one, then, when TLS is allowed and the pool has tls = on, the
 * TLS handshake (tls_side_handshake). Connecting is all of these: they share
 * connect_timeout, and a failure of any is a failed connect. Returns 1 when
 * all are done, 0 while one waits for the socket, -errno on failure
 * (-ENOMEM: fulcrum's shortage, not the server's). */
int conn_connect_step(struct conn *c, struct side *s, const struct lb_pool *pool,
		      const struct lb_server *srv, bool tls);
/* Whether the client has reset its connection: checked while fulcrum waits
 * on something else (a server's connect), so that the client does not hold
 * its place, and a server slot, until then. A FIN alone is not a reset. */
bool conn_client_reset(const struct conn *c);
/* Worker thread: resumes a conn that ran out of budget or held a write back. */
void conn_resume(struct conn *c);
/* Queues C to run again after this batch's events (worker->pending): its
 * budget ran out with bytes still ready, or a write waits for the batch's
 * end. Once only, however often it is asked. */
void conn_queue_resume(struct conn *c);
/* Worker thread: while an event batch runs, queues C to be resumed after it
 * and returns true; the caller holds its write back until then. Otherwise
 * returns false and the write goes out now. See worker.c on why. */
bool conn_defer_write(struct conn *c);

#endif
