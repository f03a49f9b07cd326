/*
 * cache_fill.h - what the two halves of the cache glue share (cache_http.c
 * answers requests, cache_fill.c stores responses): a miss being filled.
 * Not for other modules; the proxy uses cache_http.h.
 *
 * Thread: the worker owning the connection.
 */
#ifndef FULCRUM_HTTP_CACHE_FILL_H
#define FULCRUM_HTTP_CACHE_FILL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/cache.h"
#include "core/cache_policy.h"

struct conn;
struct http_conn;

#define CACHE_PASS_MS	    30000 /* how long a key whose response was not storable is not collapsed */
#define CACHE_PASS_ERROR_MS 1000 /* the same after a server error, which may pass */

/* A miss whose response may be stored. Owned by its http_conn, for one
 * request. */
struct cache_fill {
	struct cache *cache;
	struct cache_entry *e; /* NULL until the response head proved storable */
	struct cache_entry *stale; /* a stale entry the request revalidates (a reference) */
	/* The request is the client's own conditional one: it goes as it is,
	 * and stale is only held for the origin's 304 to update (RFC 9111
	 * §4.3.4) when it identifies that entry; the 304 goes to the client. */
	bool client_validates;
	struct cache_entry *answer; /* the entry a 304 confirmed, to answer with (a reference) */
	uint64_t reserved; /* bytes taken with cache_fill_reserve() */
	uint64_t wait_since_ms; /* waiting for another worker's fill of the key since; 0: not */
	bool claimed; /* this request fetches the key for the others (cache_pending_claim) */
	bool stuck; /* claimed, and its client holds the fill up (cache_fill_stuck) */
	uint64_t request_wall_ms;
	int64_t expect; /* body bytes the head announced; -1: until the end */
	bool authorized;
	bool plain; /* no Authorization, Range or conditional: its answer speaks for the key */
	struct cache_key key; /* host and target point into key_data */
	char key_data[];
};

/* Notes that the response to this GET may be stored under K (copied). RP
 * is the request's policy. STALE, when not NULL, is a stored entry to
 * revalidate (or, for a conditional request, one its 304 may update); the
 * fill takes its reference. On ENOMEM there is no fill. */
void cache_fill_note(struct http_conn *hc, struct cache *cache, const struct cache_key *k,
		     const struct cache_req_policy *rp, struct cache_entry *stale);
/* Whether the client of a fill others wait for holds it up (server bytes
 * wait for its socket), told as it changes: others stop waiting after a
 * while (cache_pending_claim). */
void cache_fill_stuck(struct http_conn *hc, bool stuck, uint64_t now_ms);
/* Frees hc->cache_fill and what it holds, and gives up its claim. */
void cache_fill_drop(struct http_conn *hc);
/* The request is over: stores the response if it all went by, then drops
 * the fill. */
void cache_fill_end(struct conn *c);

/* cache_http.c: queues E (a reference the request now holds) as the answer
 * in hc->resp_out: the stored head, the Age and X-Cache lines, the body
 * unless HEAD_ONLY. */
void cache_http_queue_entry(struct conn *c, struct cache_entry *e, bool head_only);

#endif
