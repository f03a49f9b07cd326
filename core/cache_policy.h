/*
 * cache_policy.h - the RFC 9111 rules of fulcrum's HTTP cache (SPEC §3
 * "Caching"): which requests may be answered from it, which responses may be
 * stored, and how long a stored response stays fresh.
 *
 * Pure functions over parsed heads (core/http/parser.h): no I/O, no
 * allocation, no clock (the caller passes the times), any thread.
 *
 * fulcrum is a shared cache (RFC 9111 §1), so s-maxage wins over max-age,
 * private responses are never stored, and a request with Authorization is
 * neither answered from nor stored unless the response says public,
 * s-maxage or must-revalidate (§3.5).
 */
#ifndef FULCRUM_CACHE_POLICY_H
#define FULCRUM_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/http/parser.h"

/* What a request says about the cache. */
struct cache_req_policy {
	bool no_store; /* Cache-Control: no-store: neither answered from nor stored */
	bool no_cache; /* no-cache, max-age=0, Pragma: no-cache: ask the server, store */
	bool authorized; /* an Authorization field */
	bool conditional; /* If-None-Match, If-Modified-Since, If-Match, ... */
	bool precondition; /* If-Match or If-Unmodified-Since: for the server to judge */
	bool range; /* a Range field */
	bool if_range; /* an If-Range field */
	int range_field; /* index of the Range field when there is one only, else -1 */
	bool only_if_cached; /* answer from the cache or 504, never ask the server */
	int64_t max_age_s, min_fresh_s; /* the client's limits on a stored answer; -1: none */
	int if_none_match, if_modified_since; /* indexes of the first such fields, or -1 */
};

void cache_request_policy(const struct http_head *h, const char *buf, struct cache_req_policy *out);

/*
 * RFC 9110 §13.1.2, §13.1.3, §13.2.2: whether the GET or HEAD request H
 * (parsed from BUF, policy RP) is answered 304 by a stored response with
 * the validators ETAG[0, ETAG_LEN) and LAST_MODIFIED[0, LM_LEN) (len 0:
 * none). If-None-Match, when present, decides (weak comparison, "*" matches
 * anything); else If-Modified-Since against Last-Modified.
 */
bool cache_not_modified(const struct cache_req_policy *rp, const struct http_head *h,
			const char *buf, const char *etag, size_t etag_len,
			const char *last_modified, size_t lm_len);

/*
 * RFC 9110 §14.1.2: the range a Range field value V[0, N) asks of a body of
 * LEN bytes, when it asks for one ("bytes=FIRST-LAST", "bytes=FIRST-",
 * "bytes=-SUFFIX"). Returns 1 with [*FIRST, *LAST] (LAST included) when it
 * overlaps the body, -1 when it does not (416), and 0 when the field is to
 * be ignored (another unit, several ranges, not a valid range): the whole
 * body is the answer then, as §14.2 allows.
 */
int cache_byte_range(const char *v, size_t n, uint64_t len, uint64_t *first, uint64_t *last);

/* What a response allows, worked out when it arrives. */
struct cache_resp_policy {
	const char *why_not; /* NULL when storable; else a short reason ("no_store", ...) */
	int64_t lifetime_s; /* freshness lifetime (RFC 9111 §4.2.1) */
	int64_t initial_age_ms; /* corrected_initial_age (§4.2.3) */
	bool auth_ok; /* public, s-maxage, must-revalidate: may answer Authorization */
};

/*
 * Decides whether the response RESP (parsed from BUF) to a GET may be stored
 * and for how long. REQUEST_WALL_MS and RESPONSE_WALL_MS are the wall-clock
 * times the request went out and the response head came back; AUTHORIZED:
 * the request carried Authorization.
 */
void cache_response_policy(const struct http_head *resp, const char *buf, uint64_t request_wall_ms,
			   uint64_t response_wall_ms, bool authorized,
			   struct cache_resp_policy *out);

/*
 * RFC 9111 §3.2: the stored head STORED[0, LEN) (status line and field
 * lines, each with its CRLF, no empty line) updated by a 304 NOT_MODIFIED
 * parsed from BUF: each field of the 304 replaces the stored fields of its
 * name, except Content-Length, Transfer-Encoding, X-Cache and hop-by-hop
 * fields, which are not taken from it. A 304 without Date gets DATE (an
 * HTTP-date: now), as RFC 9110 §6.6.1 has a recipient with a clock add it,
 * so the stored Date, and the age worked out from it, are not the old
 * answer's. Writes the new head to OUT with the empty line that ends it and
 * returns its length, or 0 when it needs more than CAP bytes.
 */
size_t cache_merge_head(const char *stored, size_t len, const struct http_head *not_modified,
			const char *buf, const char *date, char *out, size_t cap);

/* Whether STATUS may be stored (SPEC §3: 200, 203, 204, 300, 301, 404, 410). */
bool cache_status_is_storable(int status);

/*
 * An HTTP-date (RFC 9110 §5.6.7) in any of its three forms: IMF-fixdate,
 * obsolete RFC 850 or asctime. Stores seconds since the epoch in *OUT and
 * returns 0, or returns -EINVAL.
 */
int cache_parse_http_date(const char *s, size_t len, int64_t *out);

/* RFC 9111 §1.2.2: delta-seconds, 1*DIGIT, clamped to 2^31. -1 when invalid. */
int64_t cache_parse_delta_seconds(const char *s, size_t len);

#endif
