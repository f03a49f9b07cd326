/*
 * upgrade.h - seamless binary upgrade (README "Upgrading the binary"):
 * on SIGUSR2 a running fulcrum starts the binary now at its path, with its
 * own command line, and hands it its listening sockets; once the new
 * process runs its workers, the old one stops accepting, drains like on
 * SIGTERM and exits 0. No listening socket is ever closed or opened again
 * on the way, so no connection attempt is refused and none waiting in an
 * accept queue is reset.
 *
 * The hand-over is by inheritance across posix_spawn: the old process
 * gives the child duplicates of its listening sockets and of its admin
 * listener that stay open across exec, and the write end of a pipe; their
 * numbers, with each socket's listener name and bind as written in the
 * file, travel in the environment variable FULCRUM_INHERIT. The new
 * process adopts, in place of binding, every socket whose listener and
 * bind its configuration still has, in the same order (worker i takes the
 * socket worker i had), and closes the others. It writes one byte into the
 * pipe once its workers run; if it exits first (a bad configuration, a
 * failed start-up, a crash), the pipe reads end-of-file instead, and the
 * old process logs why and keeps serving.
 *
 * Thread: the main thread only, in both processes.
 */
#ifndef FULCRUM_UPGRADE_H
#define FULCRUM_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define UPGRADE_ENV "FULCRUM_INHERIT"
/* How long the old process waits for the new one to say it runs before it
 * kills it and keeps serving. */
#define UPGRADE_READY_TIMEOUT_MS 30000
/* After the new process is ready, the old one closes its listeners and
 * ends each connection after its current response (keep-alive clients
 * reconnect, to the new process), but closes idle connections only this
 * much later, like SIGTERM. So a client that connected just before the
 * hand-over has this long to send its first bytes (or finish its TLS
 * handshake or PROXY header), and a keep-alive connection still idle then
 * has been idle that long, which makes a request racing the close rare. */
#define UPGRADE_HANDOFF_MS 1000

/* Start-up, first thing: remembers the running binary (/proc/self/exe)
 * and ARGV (kept, not copied) for a later upgrade, and takes what an old
 * process handed over in FULCRUM_INHERIT (removing it from the
 * environment). Returns 0, or -1 after writing the cause on stderr when
 * the value cannot be used (start-up then fails, and the old process
 * carries on). */
int upgrade_init(char **argv);

/* --- the new process ---------------------------------------------------- */

/* True when this process was started by an upgrade and holds sockets
 * handed over. */
bool upgrade_inherited(void);
/* The listening socket handed over for bind A of LISTENER for WORKER, made
 * close-on-exec and given BACKLOG; A takes its address when its port is 0.
 * Returns the fd, or -ENOENT when there is none (bind it then). */
int upgrade_adopt(const char *listener, struct cfg_addr *a, int worker, int backlog);
/* Sockets handed over that no worker adopted because the old process ran
 * more workers: WORKER (of N_WORKERS) takes its share of them too, so the
 * connections queued in them are accepted rather than reset. Returns the
 * next one of bind A of LISTENER for WORKER, as upgrade_adopt does, or
 * -ENOENT when none is left. */
int upgrade_adopt_surplus(const char *listener, struct cfg_addr *a, int worker, int n_workers,
			  int backlog);
/* The admin listener handed over for the admin address TEXT (parsed into
 * A), given BACKLOG; or -ENOENT when there is none. */
int upgrade_adopt_admin(const char *text, const struct cfg_addr *a, int backlog);
/* Once every worker and the admin API have adopted theirs: closes the
 * sockets handed over that nothing adopted (listeners the new
 * configuration dropped). */
void upgrade_close_unused(void);
/* Once the workers run: tells the old process to hand over, then removes
 * the socket files of unix binds CFG dropped. */
void upgrade_ready(const struct cfg *cfg);

/* --- the old process ---------------------------------------------------- */

/* A listening socket to hand over: its listener's name and its bind as
 * written (unix listeners: one socket, not every worker's duplicate). */
struct upgrade_sock {
	const char *listener, *bind;
	int fd;
};

/* Main thread, on SIGUSR2: starts the new process, handing it SOCKS (in
 * worker order within each bind) and ADMIN_FD (-1: none) on CFG's admin
 * address, and watches its pipe in EPFD (registered with data.ptr at a
 * struct ev_handler). Returns 0, or -errno after logging why; the running
 * process carries on either way. */
int upgrade_begin(const struct cfg *cfg, const struct upgrade_sock *socks, size_t n_socks,
		  int admin_fd, int epfd);

enum upgrade_outcome {
	UPGRADE_NONE, /* none started, or still waiting */
	UPGRADE_READY, /* the new process runs: stop accepting and drain */
	UPGRADE_FAILED, /* it is gone; this process carries on */
};

/* After each epoll batch: what became of the upgrade in progress, reported
 * once. Also enforces UPGRADE_READY_TIMEOUT_MS. */
enum upgrade_outcome upgrade_poll(void);
/* Milliseconds until upgrade_poll() must run again, or -1. */
int upgrade_timeout_ms(void);
/* True once a new process started (and did not fail): the pid file and
 * the unix socket files are its, not to be removed at exit. */
bool upgrade_handed_over(void);
/* True while a new process is starting up on what this one handed it. */
bool upgrade_in_progress(void);

#endif
