/*
 * tcp.h - tcp mode: pick a server, connect without blocking (retrying on
 * other servers), then relay both directions until both are shut.
 */
#ifndef FULCRUM_TCP_H
#define FULCRUM_TCP_H

#include <stdbool.h>

struct conn;
struct side;

/* Called once the client connection is accepted. */
void tcp_start(struct conn *c);
/* Called on every event of either socket, and to resume after a budget. */
void tcp_process(struct conn *c, const struct side *from);
void tcp_on_timer(struct conn *c);
/* conn_ops.withdraw: a connection still connecting goes to another server. */
bool tcp_withdraw(struct conn *c);

#endif
