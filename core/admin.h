/*
 * admin.h - the admin HTTP API on [global] admin (SPEC §5): health, metrics,
 * status, run-time server changes and reloads.
 *
 * Thread: the main thread only. Its listening socket and client connections
 * sit in the main thread's epoll next to the signalfd, each registered with
 * a struct ev_handler as data.ptr; main_loop() calls the handler. Requests
 * are small (ADMIN_MAX_REQUEST, head and body), answered once, with
 * "Connection: close"; a client has ADMIN_TIMEOUT_MS to send its request and
 * take the answer. Past ADMIN_MAX_CONNS clients the oldest is closed to make
 * room for the newest.
 */
#ifndef FULCRUM_ADMIN_H
#define FULCRUM_ADMIN_H

#include <stdint.h>

#include "config/config.h"

struct gen;
struct worker;

#define ADMIN_MAX_REQUEST (64 * 1024)
#define ADMIN_MAX_CONNS	  64
#define ADMIN_TIMEOUT_MS  10000

/* What the admin API needs from the process (core/main.c). */
struct admin_host {
	void *ctx;
	/* Reloads the configuration file like SIGHUP. Returns the new
	 * generation number, or -1 with ERRS filled ("FILE:LINE: ..."). */
	long long (*reload)(void *ctx, struct cfg_errors *errs);
	/* Publishes G (the caller's reference goes with it) in place of the
	 * running generation, once the health thread has adopted it; returns
	 * when no worker can still load the previous one. */
	void (*publish)(void *ctx, struct gen *g);
	struct worker *workers;
	int n_workers;
};

/* Opens the listener on CFG's [global] admin and watches it in EPFD; does
 * nothing when admin is empty. HOST must outlive the admin API. Returns 0,
 * or -errno after writing the cause on stderr (start-up exits 2). */
int admin_open(const struct cfg *cfg, int epfd, const struct admin_host *host);
/* Milliseconds until the next client deadline, or -1 when none. */
int admin_timeout_ms(void);
/* After each epoll batch: ends clients past their deadline and frees the
 * ones that ended during the batch. */
void admin_tick(void);
/* Closes the listener and every client. */
void admin_close(void);
/* The listening socket, or -1 (a binary upgrade hands it over). */
int admin_listen_fd(void);
/* A binary upgrade handed the listener over: stops accepting here but
 * leaves its socket file, now the new process's, in place. The clients
 * being answered carry on. */
void admin_release(void);
/* The process is stopping (SIGTERM, SIGINT): /healthz answers 503 from
 * now on, so a load balancer in front stops sending traffic here. */
void admin_set_stopping(void);

#endif
