/*
 * origin.h - the origins a worker's forward listeners talk to: one run-time
 * struct lb_server per address of each host:port, so that the http proxy's
 * connect path, retries and idle-connection pool (keyed by lb_server) serve
 * forward mode unchanged.
 *
 * An origin is found by "host:port" and the addresses its name resolves to
 * now. When a lookup brings a different set of addresses, the old origin
 * leaves the table (its idle connections are closed) and a new one takes
 * its place; connections still using the old one keep it alive by their
 * reference.
 *
 * The table is bounded: past ORIGIN_TABLE_MAX origins, the least recently
 * used one that no connection holds goes (with its idle connections). When
 * every origin is in use, a new one is made outside the table, for the
 * connection that asked only, and its connections are never pooled.
 *
 * Ownership: the worker; no other thread sees an origin. A connection holds
 * a reference from origin_get() to origin_put().
 */
#ifndef FULCRUM_HTTP_ORIGIN_H
#define FULCRUM_HTTP_ORIGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dns.h"
#include "core/util.h"

struct worker;
struct lb_server;

#define ORIGIN_BUCKETS	 64
#define ORIGIN_TABLE_MAX 256
#define ORIGIN_MAX_ADDRS 8 /* of a name's addresses, the first are tried */

struct origin {
	struct list hnode; /* in the table's bucket, while listed */
	struct list lru; /* in the table's lru list, while listed */
	uint64_t hash;
	int refs; /* connections holding it */
	bool listed; /* in the table: its connections may be pooled */
	unsigned n;
	struct lb_server *servers[ORIGIN_MAX_ADDRS]; /* all named "host:port" */
	char key[]; /* "host:port", "[v6]:port" */
};

struct origin_table {
	struct worker *w;
	struct list buckets[ORIGIN_BUCKETS];
	struct list lru; /* least recently used first */
	unsigned count;
};

void origin_table_init(struct origin_table *t, struct worker *w);
/* Frees every origin; none may be held. */
void origin_table_deinit(struct origin_table *t);

/*
 * The origin for HOST (lower-case name or address literal without brackets)
 * and PORT whose addresses are ADDRS[0, N) (N > 0, ports ignored), with a
 * reference taken. NULL on allocation failure.
 */
struct origin *origin_get(struct origin_table *t, const char *host, uint16_t port,
			  const union dns_addr *addrs, unsigned n);
/* Drops a reference from origin_get(). */
void origin_put(struct origin_table *t, struct origin *o);

#endif
