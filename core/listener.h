/*
 * listener.h - opening listening sockets. The main thread opens one socket
 * per bind per worker (SO_REUSEPORT, so the kernel spreads connections over
 * the workers) before any worker starts, so a bind failure is a start-up
 * error (exit 2) and nothing binds after privileges are dropped.
 */
#ifndef FULCRUM_LISTENER_H
#define FULCRUM_LISTENER_H

#include "config/config.h"

/* Opens a non-blocking listening socket on A. When A's port is 0 the kernel
 * picks one and A is updated, so the next worker binds the same port.
 * FIRST (the first worker's socket, outside a binary upgrade) also checks
 * that no other socket listens on A already: SO_REUSEPORT would otherwise
 * let a second fulcrum share the port silently. Returns the fd or -errno; *WHAT names the failing
 * step. */
int listener_open(struct cfg_addr *a, int backlog, bool first, const char **what);

#endif
