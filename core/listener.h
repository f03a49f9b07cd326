/*
 * listener.h - opening listening sockets. The main thread opens one socket
 * per bind per worker (SO_REUSEPORT, so the kernel spreads connections over
 * the workers): at start-up, where a bind failure is a start-up error (exit
 * 2), and at a reload that brings a new address (core/binds.h), where it
 * fails the reload.
 */
#ifndef FULCRUM_LISTENER_H
#define FULCRUM_LISTENER_H

#include <sys/types.h>

#include "config/config.h"

/* Opens a non-blocking listening socket on A. When A's port is 0 the kernel
 * picks one and A is updated, so the next worker binds the same port.
 * FIRST (the first worker's socket, outside a binary upgrade) also checks
 * that no other socket listens on A already: SO_REUSEPORT would otherwise
 * let a second fulcrum share the port silently. A unix socket's file gets
 * UNIX_MODE. Returns the fd or -errno; *WHAT names the failing step. */
int listener_open(struct cfg_addr *a, int backlog, bool first, mode_t unix_mode, const char **what);

/* The modes of unix socket files: anyone may connect to a listener's, as
 * with nginx (the directories on its path decide who reaches it); only its
 * owner to the admin API's. They are set through the process's umask
 * around bind(2), which is safe while only the main thread creates files:
 * no other thread may. */
#define LISTENER_UNIX_MODE 0666
#define ADMIN_UNIX_MODE	   0600

/* Whether A asks for any port (an IP address with port 0). */
bool listener_any_port(const struct cfg_addr *a);
/* Whether a socket bound at SS is where A says (any port when A's is 0). */
bool listener_bound_at(const struct sockaddr_storage *ss, const struct cfg_addr *a);

#endif
