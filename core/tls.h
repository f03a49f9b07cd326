/*
 * tls.h - TLS with OpenSSL 3: termination on listeners, TLS to servers, and
 * SNI passthrough routing on tcp listeners.
 *
 * Contexts (tls_ctx.c). Each configuration generation carries a struct
 * tls_gen, built by the main thread in gen_new() and freed with the
 * generation: per listener with certificates, one SSL_CTX per tls_cert/
 * tls_key pair (the first is the default; the others are switched to when
 * the ClientHello's SNI matches one of their names); per pool with
 * tls = on, one client SSL_CTX. An SSL_CTX is shared by every worker, which
 * OpenSSL allows for handshakes; after publication nothing in a tls_gen
 * changes. A reload builds new contexts, so renewed certificates are used by
 * the connections accepted after it; running ones keep theirs (an SSL holds
 * a reference on its SSL_CTX).
 *
 * Session resumption (tls_ticket.c, tls_ctx.c): session tickets whose keys
 * come from one process-wide secret, the same for every worker and every
 * generation, and change every TLS_TICKET_PERIOD_S (the previous period's
 * key still decrypts, and such a ticket is renewed); plus OpenSSL's
 * session-ID cache in each listener's default context for clients without
 * tickets.
 *
 * Connections (tls_conn.c). A TLS side is a struct side whose io is
 * tls_io_ops and whose io_ctx is the SSL (see core/io.h for the contract),
 * so the tcp and http code read and write through io_recv/io_send without
 * knowing it. A terminating listener's connection goes through a handshake
 * stage (its own conn_ops, with handshake_timeout) before its mode starts.
 * A server side is made TLS after its connect completes; its handshake runs
 * implicitly inside the first reads and writes.
 *
 * Passthrough (tls_peek.c, tls_sni.c): on a tcp listener without
 * certificates whose routes name hosts, the ClientHello is peeked (never
 * consumed) until its SNI is known, the route picks the pool, and the bytes
 * are then relayed untouched (spliced).
 *
 * Threads: tls_gen_new/tls_gen_free on the main thread; everything else on
 * the worker that owns the connection.
 */
#ifndef FULCRUM_TLS_H
#define FULCRUM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct conn;
struct gen;
struct side;
struct lb_pool;
struct lb_server;
struct tls_gen;

/* ---- contexts, per generation (tls_ctx.c) ------------------------------ */

/* Builds the contexts CFG needs (none is fine). Returns NULL, after logging
 * which file or setting failed, when one cannot be built. */
struct tls_gen *tls_gen_new(const struct cfg *cfg);
void tls_gen_free(struct tls_gen *t);

/* ---- connections (tls_conn.c) ------------------------------------------ */

/* Whether connections of C's listener are TLS-terminated. */
bool tls_conn_terminates(const struct conn *c);

/* Worker: starts the server handshake on C's client socket. When it
 * succeeds, C's client side stays TLS and conn_start() runs again (and the
 * mode then sees a TLS side); when it fails or handshake_timeout passes, C
 * is closed with CR_TLS_HANDSHAKE or CR_TLS_TIMEOUT. */
void tls_accept_start(struct conn *c);

/* Worker: makes S, a socket just connected to server SRV of pool P
 * (generation G), a TLS client side when P has tls = on; otherwise does
 * nothing. SNI is tls_sni, else SRV's host when it is a name; with
 * tls_verify the certificate must chain to tls_ca (or the system's store)
 * and match that name (or the address). A session from an earlier
 * connection of this worker to the same server is offered for resumption.
 * A pool that is not one of G's (a forward origin's) gets no TLS.
 * Returns 0, or -ENOMEM (S is unchanged). */
int tls_server_side(struct side *s, const struct gen *g, const struct lb_pool *p,
		    const struct lb_server *srv);

bool tls_side_is_tls(const struct side *s);

/* Worker: drives the handshake of S, a TLS client side to a server, so that
 * it is part of connecting: bounded by connect_timeout and, when it fails,
 * retried on another server like a refused connect. Returns 1 when done
 * (or S is not TLS), 0 while it waits for the socket, -errno on failure
 * (the reason is logged, but for a server that just closed: -ECONNRESET). */
int tls_side_handshake(struct side *s);

/* The server name the client asked for on TLS side S (NULL when S is not
 * TLS or the client sent none); its length in *LEN. */
const char *tls_side_sni(const struct side *s, size_t *len);

/* ---- SNI passthrough (tls_peek.c) -------------------------------------- */

/* Whether C's listener routes plain (not terminated) TLS by SNI: a tcp
 * listener without certificates with at least one route naming a host. */
bool tls_peek_wanted(const struct conn *c);

/* Worker: the passthrough stage. Peeks at what the client sends (nothing
 * is consumed: the bytes stay in the socket for the server) until the
 * ClientHello's SNI is known, or the hello is complete without one; then
 * sets c->pool by the listener's routes and calls conn_start() again.
 * Bytes that are no ClientHello carry no SNI; a hello not whole within
 * handshake_timeout, or cut by the client's FIN, is judged by what came:
 * these go to the listener's pool like any tcp client. A hello larger
 * than TLS_HELLO_MAX is closed with CR_TLS_BAD_HELLO; no route and no
 * listener pool gives CR_NO_SERVER. */
void tls_peek_start(struct conn *c);

#endif
