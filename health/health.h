/*
 * health.h - the health-check thread (SPEC §4).
 *
 * One thread with its own epoll runs every pool's active checks (tcp, http,
 * none) and takes in what the workers saw (server->fails, the consecutive
 * connection failures they count without locks). It alone decides whether a
 * server is up or down for health reasons, applying rise/fall and
 * max_fails/fail_timeout, logs every change with its reason, and rebuilds and
 * publishes the maglev/ring tables when the set of up servers changes. It
 * never writes the state of a server in SRV_DRAIN or SRV_DISABLED (those
 * belong to the admin API); it keeps its own verdict and applies it when the
 * server is back in SRV_UP or SRV_DOWN.
 *
 * Workers never wait on it. The main thread hands it each new generation
 * before publishing that generation (hc_set_gen), and waits the short time
 * the handover takes.
 */
#ifndef FULCRUM_HEALTH_H
#define FULCRUM_HEALTH_H

#include "core/gen.h"

/* Main thread, once the workers run: starts the health thread on generation
 * G (it takes its own reference). Returns 0 or -errno. */
int hc_start(struct gen *g);

/*
 * Main thread: hands the health thread a new generation G (it takes its own
 * reference and drops the one it held on the previous generation). Servers
 * with the same pool name, server name and address carry their health over:
 * up or down, the rise/fall runs, a passive mark-down. Returns once G's server
 * states and tables reflect that, so the caller publishes G afterwards and no
 * worker sees a known-down server come back up for a moment. No-op when the
 * thread is not running.
 */
void hc_set_gen(struct gen *g);

/* Main thread (the admin API, after it changed a server's state): asks the
 * health thread to rebuild every maglev/ring table of its generation.
 * Returns at once; the rebuild happens on the health thread, which alone
 * rebuilds the tables of published pools (the main thread builds those of
 * a generation before it is published). */
void hc_rebuild_tables(void);

/* Main thread: stops and joins the health thread, closing every check in
 * flight and dropping its generation reference. Safe to call when it never
 * started. */
void hc_stop(void);

#endif
