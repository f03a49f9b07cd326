/*
 * admin_ops.h - what the admin API's endpoints do, apart from HTTP: reading
 * the state (/status, /metrics) and changing servers at run time.
 *
 * Thread: the main thread only (admin.c calls these).
 *
 * How run-time changes reach the workers:
 *  - drain, enable, disable, weight: one atomic store into the shared
 *    struct lb_server, seen by the next pick on every worker; the health
 *    thread is asked to rebuild maglev/ring tables. disable also asks every
 *    worker to close what it holds to the server (conn_sweep_disabled).
 *  - add: a derived generation (gen_derive) whose pool lists the same
 *    server objects plus the new one, published like a reload.
 *  - delete: the server is drained and forgotten by the API (a tombstone):
 *    no new connection goes to it, existing ones finish, /status and
 *    /metrics no longer show it, and its name is free again.
 * A reload from the file hands every server it describes as before on to
 * the new generation, state included, and carries the counters (and the
 * state the API set) of the others over by name (admin_carry_over).
 */
#ifndef FULCRUM_ADMIN_OPS_H
#define FULCRUM_ADMIN_OPS_H

#include <stddef.h>

#include "core/admin.h"
#include "core/sbuf.h"

struct gen;
struct lb_pool;
struct lb_server;

/* An answer being built: status, body and the extra header some need. */
struct admin_reply {
	int status;
	const char *content_type;
	const char *allow; /* 405: the methods the path takes */
	bool head; /* answering a HEAD: the GET's head without its body */
	struct sbuf body;
};

/* Sets R to STATUS with the body {"error": MSG}. */
void admin_error(struct admin_reply *r, int status, const char *msg);

/* GET /status (SPEC §5). */
void admin_status(struct admin_reply *r, const struct admin_host *host);
/* GET /metrics: Prometheus text format (metrics.c). */
void admin_metrics(struct admin_reply *r, const struct admin_host *host);
/* POST /reload. */
void admin_reload(struct admin_reply *r, const struct admin_host *host);

/* GET or DELETE /pools/POOL/servers/SERVER, or POST/PUT
 * /pools/POOL/servers/SERVER/ACTION (drain, enable, disable, weight) with
 * BODY. METHOD is the request's. */
void admin_server_op(struct admin_reply *r, const struct admin_host *host, const char *method,
		     const char *pool, const char *server, const char *action, const char *body,
		     size_t body_len);
/* POST /pools/POOL/servers with BODY {"name", "address", "weight"}. */
void admin_server_add(struct admin_reply *r, const struct admin_host *host, const char *pool,
		      const char *body, size_t body_len);

/* Whether S was deleted through the API in generation G (main thread). */
bool admin_is_removed(const struct gen *g, const struct lb_server *s);
/* Whether S of POOL shows in /status and /metrics: a deleted server does,
 * in state drain, until its last connection ends ("drained first", SPEC
 * §5), unless another server of its name shows (a live one, or a newer
 * deleted one still draining): one entry per name. Main thread. */
bool admin_is_listed(const struct gen *g, const struct lb_pool *pool, const struct lb_server *s);

/*
 * Reload support (main thread, before TO is published). A server of TO that
 * the file describes as FROM's server of the same pool and name (address,
 * position, options; lb_server_same) is replaced by that very server: its
 * state, counters and in-flight count go on, and the connections FROM
 * keeps after the reload see a later drain, disable or health verdict. Any
 * other server of the same pool and name gets FROM's counters copied and,
 * when it keeps its address, the state the admin API gave it (drain,
 * disable, enable) unless the file changed its `disabled`: a drained server
 * stays drained until it is enabled or removed (SPEC §5). Weights are the
 * file's again.
 */
void admin_carry_over(struct gen *to, const struct gen *from);

#endif
