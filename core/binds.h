/*
 * binds.h - the listening sockets of every worker, across reloads. Main
 * thread only.
 *
 * Each bind address of each listener has one socket per worker
 * (SO_REUSEPORT; a unix path has one socket, duplicated into each worker),
 * opened by the main thread, which also registers it in the worker's epoll.
 * A reload may add, remove, rename, reorder or rebind listeners: an address
 * that the new file still has keeps its sockets (nothing queued on them is
 * lost), a new one is bound before the new generation is published (so a
 * port in use fails the reload, not the process), and one that is gone is
 * dropped after it.
 *
 * Each address has an id for as long as it is bound (cfg_addr.bind_id):
 * its sockets carry it, and every generation's listener binds say which
 * listener has it there. So a worker finds the listener of a socket, or of
 * a connection that came in on it, in whatever generation it holds, and a
 * generation never sees another's listener.
 *
 * Dropping a socket: the main thread clears its live flag and removes it
 * from the worker's epoll at once, so no new connection is accepted on it;
 * it closes the fd only once the worker has moved past the batch that
 * could still name it (worker_unlisten, worker_past), and frees it once it
 * is out of the worker's list of listeners paused on EMFILE; binds_collect
 * does both on every turn of the main loop.
 */
#ifndef FULCRUM_BINDS_H
#define FULCRUM_BINDS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/upgrade.h"

struct worker;
struct cfg_errors;

/* Start-up, before the workers run: opens every bind of CFG for each of
 * the N workers WS (adopting what a binary upgrade handed over) and
 * registers them. 0, or -1 after one line on stderr naming the bind. */
int binds_open(struct cfg *cfg, struct worker *ws, int n);

/* Reload, before CFG is made a generation: binds every address CFG has and
 * the running set lacks, and gives each bind of CFG its id. 0, or -1 with a
 * FILE:LINE message in ERRS and nothing changed. Either binds_commit or
 * binds_abort must follow a 0. */
int binds_prepare(struct cfg *cfg, struct cfg_errors *errs);
/* After CFG is published: the new sockets start accepting, the kept ones
 * serve CFG's listeners, the others are dropped. */
void binds_commit(void);
/* The reload failed after binds_prepare: closes what it opened. */
void binds_abort(void);

/* A stop or a hand-over to a new process: drops every socket. */
void binds_drop_all(void);
/* Closes the dropped sockets whose worker has moved past them, and frees
 * them once out of its paused list. Returns true while some still wait
 * (call again soon). */
bool binds_collect(void);

/* For a binary upgrade: the sockets in service, in worker order within
 * each bind. Returns how many (*OUT is malloc'd; NULL when there are
 * none), or -ENOMEM. */
long binds_list(struct upgrade_sock **out);

/* At exit, once the workers are gone: closes and frees everything. */
void binds_free(void);
/* Start-up failed: removes the unix socket files binds_open made (not the
 * ones an upgrade's old process still serves). */
void binds_remove_unix_files(void);

#endif
