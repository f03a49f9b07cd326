/*
 * forward.h - forward mode (SPEC §3 "forward mode"): a proxy for clients.
 * The destination of each request comes from the request itself:
 *
 *   CONNECT host:port     auth, connect_ports, allow/deny on the name, then
 *                         resolution, deny on every address, a connection,
 *                         "200 Connection Established" and a spliced tunnel
 *                         (the http proxy's TUNNEL phase: half-close, the
 *                         tunnel_timeout, bytes counted, one log line)
 *   GET http://h:p/x ...  the same checks, then the request goes to h:p in
 *                         origin-form ("GET /x"), with Host set from the URI,
 *                         Via: 1.1 fulcrum added and Proxy-Authorization and
 *                         the hop-by-hop fields removed, through the http
 *                         proxy's exchange (bodies, keep-alive, pooling)
 *   GET /x (origin-form)  400: this listener is not a web server
 *
 * Everything after the destination is chosen is the http proxy's own code
 * (proxy.c): forward.c turns each destination into a small per-connection
 * pool of the origin's addresses (see origin.h), which the proxy connects
 * to, retries across, and pools connections for, as it does for a
 * configured pool.
 *
 * Statuses: 400 malformed destination, 403 denied (ACL, connect_ports, or an
 * address the name resolves to), 407 with Proxy-Authenticate when auth is on
 * and the credentials are missing or wrong, 502 unknown name, a lookup or
 * connect that failed or passed connect_timeout, 504 server_timeout
 * passed before the response.
 *
 * Thread: the worker owning the connection.
 */
#ifndef FULCRUM_HTTP_FORWARD_H
#define FULCRUM_HTTP_FORWARD_H

#include <stdbool.h>

struct conn;
struct fwd_conn;
struct http_head;
struct sockaddr;
struct worker;

/* A complete request head H is in the connection's read buffer (its body
 * framing already noted by the proxy): check it, and send it on or answer. */
void forward_begin(struct conn *c, const struct http_head *h);
/* Whether the forward listener's deny rules now refuse the origin address
 * SA for this request's port (a cache hit fetched from there earlier). */
bool forward_denies_origin(const struct conn *c, const struct sockaddr *sa);
/* The connection to a CONNECT's origin is up: answer 200, then tunnel. */
void forward_established(struct conn *c);
/* The resolve phase's deadline (connect_timeout) has passed. */
void forward_on_timer(struct conn *c);
/* Worker thread, when its doorbell rang: verdicts of the credential hasher
 * (auth.h) resume the connections that waited in AUTH. */
void forward_collect(struct worker *w);
/* request_timeout passed in AUTH: 503, and the verdict goes to the cache. */
void forward_auth_timeout(struct conn *c);
/* Frees a connection's forward state (NULL is fine); a pending lookup is
 * cancelled. */
void forward_conn_free(struct fwd_conn *f);
/* Frees a worker's forward state: resolver, origins, credential cache. The
 * worker's connections and idle pooled connections are gone already. */
void forward_worker_free(struct worker *w);

#endif
