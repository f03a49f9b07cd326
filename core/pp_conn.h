/*
 * pp_conn.h - the PROXY protocol on a worker's connections (SPEC §7): reading
 * the header every connection of a `proxy_protocol = accept` listener must
 * start with, and sending one to servers with `proxy_protocol=v1|v2`.
 * The header format itself is core/proxy_proto.c.
 *
 * Thread: the worker owning the connection.
 */
#ifndef FULCRUM_PP_CONN_H
#define FULCRUM_PP_CONN_H

struct conn;
struct lb_server;

/*
 * Puts a just-accepted connection C in the PROXY-header state: it reads the
 * header (and never a byte past it) within the listener's request_timeout,
 * takes the client address it carries as C's peer (UNKNOWN and LOCAL keep
 * the real one), then hands C to its mode with conn_start(). A missing,
 * malformed or late header closes C with CR_PROXY_PROTOCOL and a logged
 * reason.
 */
void pp_accept_start(struct conn *c);

/*
 * Sends the PROXY header server S wants (nothing when it wants none) on FD,
 * its newly connected socket, for client connection C: C's peer as the
 * source; as the destination, the one of the PROXY header C came with, else
 * the address C reached us on. Returns 0, or
 * -errno when the header could not be written whole.
 */
int pp_send_header(const struct conn *c, const struct lb_server *s, int fd);

#endif
