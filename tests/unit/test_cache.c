/*
 * test_cache.c - the HTTP cache's pure parts: RFC 9111 freshness and
 * storability (core/cache_policy.c), keys and Vary (core/cache_vary.c), and
 * the store with its LRU eviction and references (core/cache.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cache.h"
#include "core/cache_policy.h"

#define T0_MS UINT64_C(1700000000000) /* a wall-clock time requests are sent at */

/* ---- helpers ---------------------------------------------------------- */

static struct http_head resp_head;
static struct http_head req_head;

static const struct http_head *parse_resp(const char *text)
{
	cr_assert_eq(http_parse_response(text, strlen(text), NULL, &resp_head), HTTP_DONE, "%s",
		     text);
	return &resp_head;
}

static const struct http_head *parse_req(const char *text)
{
	cr_assert_eq(http_parse_request(text, strlen(text), NULL, &req_head), HTTP_DONE, "%s",
		     text);
	return &req_head;
}

/* The policy of response TEXT, received 10 ms after the request went out. */
static struct cache_resp_policy policy_of(const char *text, bool authorized)
{
	struct cache_resp_policy p;
	cache_response_policy(parse_resp(text), text, T0_MS, T0_MS + 10, authorized, &p);
	return p;
}

/* The IMF-fixdate of T0 plus DELTA seconds. */
static const char *date_at(int64_t delta, char *buf, size_t cap)
{
	time_t t = (time_t)(T0_MS / 1000) + delta;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	return buf;
}

/* ---- dates and numbers ------------------------------------------------ */

Test(cache_policy, http_dates)
{
	int64_t t;

	cr_assert_eq(cache_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t), 0);
	cr_assert_eq(t, 784111777);
	cr_assert_eq(cache_parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t), 0);
	cr_assert_eq(t, 784111777);
	cr_assert_eq(cache_parse_http_date("Sun Nov  6 08:49:37 1994", 24, &t), 0);
	cr_assert_eq(t, 784111777);
	cr_assert_eq(cache_parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", 29, &t), 0);
	cr_assert_eq(t, 0);
	cr_assert_eq(cache_parse_http_date("Tue, 29 Feb 2000 23:59:60 GMT", 29, &t), 0);

	static const char *const bad[] = {
		"0",
		"-1",
		"",
		"Sun, 06 Nov 1994 08:49:37 UTC",
		"Sun, 06 Nox 1994 08:49:37 GMT",
		"Sun, 32 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 24:49:37 GMT",
		"Sun, 06 Nov 1994 08:49 GMT",
		"Sun,  6 Nov 1994 08:49:37 GMT",
		"Sun Nov 6 08:49:37 1994",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(cache_parse_http_date(bad[i], strlen(bad[i]), &t), -EINVAL, "%s",
			     bad[i]);
}

Test(cache_policy, delta_seconds)
{
	cr_assert_eq(cache_parse_delta_seconds("0", 1), 0);
	cr_assert_eq(cache_parse_delta_seconds("60", 2), 60);
	cr_assert_eq(cache_parse_delta_seconds("99999999999999999999", 20), INT64_C(1) << 31);
	cr_assert_eq(cache_parse_delta_seconds("", 0), -1);
	cr_assert_eq(cache_parse_delta_seconds("1.5", 3), -1);
	cr_assert_eq(cache_parse_delta_seconds("-1", 2), -1);
}

/* ---- requests --------------------------------------------------------- */

Test(cache_policy, request_directives)
{
	struct cache_req_policy p;
	const char *t;

	t = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(!p.no_store && !p.no_cache && !p.authorized && !p.conditional && !p.range);

	t = "GET / HTTP/1.1\r\nHost: a\r\nCache-Control: no-store\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(p.no_store);

	t = "GET / HTTP/1.1\r\nHost: a\r\nCache-Control: max-age=0\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(p.no_cache && !p.no_store);

	t = "GET / HTTP/1.1\r\nHost: a\r\ncache-control: foo, NO-CACHE\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(p.no_cache);

	t = "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(p.no_cache);

	/* Pragma is ignored when Cache-Control is there (RFC 9111 §5.4). */
	t = "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nCache-Control: max-age=5\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(!p.no_cache);

	t = "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic eA==\r\nIf-None-Match: \"x\"\r\n"
	    "Range: bytes=0-1\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(p.authorized && p.conditional && p.range && p.range_field == 3 && !p.if_range);

	t = "GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nIf-Range: \"x\"\r\n"
	    "Range: bytes=2-3\r\n\r\n";
	cache_request_policy(parse_req(t), t, &p);
	cr_assert(p.range && p.range_field == -1 && p.if_range && p.conditional);
}

/* cache_byte_range over a body of LEN bytes: its result, and the range. */
static int range_of(const char *v, uint64_t len, uint64_t *a, uint64_t *b)
{
	*a = *b = 12345;
	return cache_byte_range(v, strlen(v), len, a, b);
}

Test(cache_policy, byte_ranges)
{
	uint64_t a, b;

	cr_assert(range_of("bytes=0-9", 100, &a, &b) == 1 && a == 0 && b == 9);
	cr_assert(range_of("BYTES=10-", 100, &a, &b) == 1 && a == 10 && b == 99);
	cr_assert(range_of("bytes=-30", 100, &a, &b) == 1 && a == 70 && b == 99);
	cr_assert(range_of("bytes=-300", 100, &a, &b) == 1 && a == 0 && b == 99);
	cr_assert(range_of("bytes=90-1000", 100, &a, &b) == 1 && a == 90 && b == 99);
	cr_assert(range_of("bytes=99-99", 100, &a, &b) == 1 && a == 99 && b == 99);
	cr_assert(range_of("bytes=5-99999999999999999999999", 100, &a, &b) == 1 && b == 99);
	/* Outside the body: 416. */
	cr_assert(range_of("bytes=100-", 100, &a, &b) == -1);
	cr_assert(range_of("bytes=100-200", 100, &a, &b) == -1);
	cr_assert(range_of("bytes=-0", 100, &a, &b) == -1);
	cr_assert(range_of("bytes=0-", 0, &a, &b) == -1);
	cr_assert(range_of("bytes=-5", 0, &a, &b) == 0);
	cr_assert(range_of("bytes=99999999999999999999999-", 100, &a, &b) == -1);
	/* Ignored: the whole body is the answer. */
	const char *ignored[] = {"bytes=0-1,5-6", "bytes=5-4",	"bytes=",     "bytes=-",
				 "bytes=a-b",	  "bytes=1-2x", "bytes 0-1",  "items=0-1",
				 "bytes=0-1 ",	  "bytes=--1",	"bytes=1--2", "bytes"};
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		cr_assert(range_of(ignored[i], 100, &a, &b) == 0 && a == 12345, "%s", ignored[i]);
}

/* ---- responses -------------------------------------------------------- */

Test(cache_policy, storable_statuses)
{
	static const int yes[] = {200, 203, 204, 300, 301, 404, 410};
	static const int no[] = {201, 206, 302, 304, 307, 400, 403, 500, 502, 503};
	char text[128];

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		snprintf(text, sizeof(text), "HTTP/1.1 %d X\r\nCache-Control: max-age=60\r\n\r\n",
			 yes[i]);
		cr_assert_null(policy_of(text, false).why_not, "%d", yes[i]);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		snprintf(text, sizeof(text), "HTTP/1.1 %d X\r\nCache-Control: max-age=60\r\n\r\n",
			 no[i]);
		cr_assert_str_eq(policy_of(text, false).why_not, "status", "%d", no[i]);
	}
}

Test(cache_policy, refusals)
{
	static const struct {
		const char *text;
		const char *why;
	} rows[] = {
		{"HTTP/1.1 200 OK\r\n\r\n", "no_lifetime"},
		{"HTTP/1.1 200 OK\r\nCache-Control: public\r\n\r\n", "no_lifetime"},
		{"HTTP/1.1 200 OK\r\nCache-Control: max-age=60, no-store\r\n\r\n", "no_store"},
		{"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nCache-Control: private\r\n\r\n",
		 "private"},
		{"HTTP/1.1 200 OK\r\nCache-Control: private=\"x\", max-age=60\r\n\r\n", "private"},
		{"HTTP/1.1 200 OK\r\nCache-Control: no-cache, max-age=60\r\n\r\n", "no_cache"},
		{"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nSet-Cookie: a=b\r\n\r\n",
		 "set_cookie"},
		{"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: a, *\r\n\r\n", "vary_star"},
		{"HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\n\r\n", "stale"},
		{"HTTP/1.1 200 OK\r\nCache-Control: max-age=abc\r\n\r\n", "stale"},
		{"HTTP/1.1 200 OK\r\nExpires: 0\r\n\r\n", "stale"},
		{"HTTP/1.1 200 OK\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n", "stale"},
		{"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 60\r\n\r\n", "stale"},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct cache_resp_policy p = policy_of(rows[i].text, false);
		cr_assert_not_null(p.why_not, "%s", rows[i].text);
		cr_assert_str_eq(p.why_not, rows[i].why, "%s", rows[i].text);
	}
}

Test(cache_policy, lifetimes)
{
	char d[64], e[64], text[256];
	struct cache_resp_policy p;

	p = policy_of("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n", false);
	cr_assert_eq(p.lifetime_s, 60);
	cr_assert_eq(p.initial_age_ms, 10); /* the 10 ms policy_of gives the exchange */

	/* s-maxage wins over max-age in a shared cache, whatever the order. */
	p = policy_of("HTTP/1.1 200 OK\r\nCache-Control: s-maxage=5, max-age=60\r\n\r\n", false);
	cr_assert_eq(p.lifetime_s, 5);
	p = policy_of("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nCache-Control: "
		      "s-maxage=\"7\"\r\n\r\n",
		      false);
	cr_assert_eq(p.lifetime_s, 7);

	/* max-age wins over Expires. */
	snprintf(text, sizeof(text),
		 "HTTP/1.1 200 OK\r\nExpires: %s\r\nCache-Control: max-age=30\r\n\r\n",
		 date_at(1000, e, sizeof(e)));
	cr_assert_eq(policy_of(text, false).lifetime_s, 30);

	/* Expires minus Date, independent of our clock. */
	snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nDate: %s\r\nExpires: %s\r\n\r\n",
		 date_at(0, d, sizeof(d)), date_at(120, e, sizeof(e)));
	p = policy_of(text, false);
	cr_assert_null(p.why_not);
	cr_assert_eq(p.lifetime_s, 120);

	/* Without Date, Expires counts from when the response arrived. */
	snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nExpires: %s\r\n\r\n",
		 date_at(90, e, sizeof(e)));
	cr_assert_eq(policy_of(text, false).lifetime_s, 90);

	/* Expires before Date: stale. */
	snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nDate: %s\r\nExpires: %s\r\n\r\n",
		 date_at(0, d, sizeof(d)), date_at(-1, e, sizeof(e)));
	cr_assert_str_eq(policy_of(text, false).why_not, "stale");
}

Test(cache_policy, initial_age)
{
	char d[64], text[256];
	struct cache_resp_policy p;

	p = policy_of("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 20\r\n\r\n", false);
	cr_assert_eq(p.initial_age_ms, 20010); /* and the 10 ms it took */

	/* A Date 30 s behind our clock: apparent age 30. */
	snprintf(text, sizeof(text),
		 "HTTP/1.1 200 OK\r\nDate: %s\r\nCache-Control: max-age=60\r\n\r\n",
		 date_at(-30, d, sizeof(d)));
	cr_assert_eq(policy_of(text, false).initial_age_ms, 30000);

	/* One second behind is Date's resolution, not age. */
	snprintf(text, sizeof(text),
		 "HTTP/1.1 200 OK\r\nDate: %s\r\nCache-Control: max-age=1\r\n\r\n",
		 date_at(-1, d, sizeof(d)));
	p = policy_of(text, false);
	cr_assert_null(p.why_not);
	cr_assert_eq(p.initial_age_ms, 10);

	/* A Date in the future is no negative age. */
	snprintf(text, sizeof(text),
		 "HTTP/1.1 200 OK\r\nDate: %s\r\nCache-Control: max-age=60\r\n\r\n",
		 date_at(500, d, sizeof(d)));
	cr_assert_eq(policy_of(text, false).initial_age_ms, 10);

	/* The response took 3 s to come: that counts as age (§4.2.3). */
	struct cache_resp_policy q;
	const char *t = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 2\r\n\r\n";
	cache_response_policy(parse_resp(t), t, T0_MS, T0_MS + 3000, false, &q);
	cr_assert_eq(q.initial_age_ms, 5000);
	/* To the millisecond: 0.9 s of a max-age=1 answer went on the way. */
	t = "HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\n\r\n";
	cache_response_policy(parse_resp(t), t, T0_MS, T0_MS + 900, false, &q);
	cr_assert_null(q.why_not);
	cr_assert_eq(q.initial_age_ms, 900);
	cache_response_policy(parse_resp(t), t, T0_MS, T0_MS + 1000, false, &q);
	cr_assert_str_eq(q.why_not, "stale");
}

Test(cache_policy, authorization)
{
	cr_assert_str_eq(
		policy_of("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n", true).why_not,
		"authorization");
	static const char *const ok[] = {
		"HTTP/1.1 200 OK\r\nCache-Control: max-age=60, public\r\n\r\n",
		"HTTP/1.1 200 OK\r\nCache-Control: s-maxage=60\r\n\r\n",
		"HTTP/1.1 200 OK\r\nCache-Control: max-age=60, must-revalidate\r\n\r\n",
	};
	for (size_t i = 0; i < 3; i++) {
		struct cache_resp_policy p = policy_of(ok[i], true);
		cr_assert_null(p.why_not, "%s", ok[i]);
		cr_assert(p.auth_ok);
	}
	cr_assert(!policy_of("HTTP/1.1 200 OK\r\nCache-Control: max-age=6\r\n\r\n", false).auth_ok);
}

/* ---- Vary ------------------------------------------------------------- */

static int vary_of(const char *resp, const char *req, char *out, size_t cap)
{
	struct http_head r;
	struct cache_req rq = {.h = parse_req(req), .buf = req};

	cr_assert_eq(http_parse_response(resp, strlen(resp), NULL, &r), HTTP_DONE);
	return cache_vary_build(&r, resp, &rq, out, cap);
}

static bool matches(const char *vary, int len, const char *req)
{
	struct cache_req rq = {.h = parse_req(req), .buf = req};
	return cache_vary_matches(vary, (size_t)len, &rq);
}

Test(cache_vary, build_and_match)
{
	const char *resp = "HTTP/1.1 200 OK\r\nVary: Accept-Encoding, accept-language\r\n"
			   "Vary: ACCEPT-ENCODING\r\n\r\n";
	const char *gzip = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n";
	const char *br = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\n\r\n";
	const char *none = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	const char *empty = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding:\r\n\r\n";
	const char *two = "GET / HTTP/1.1\r\nHost: a\r\naccept-encoding: gzip\r\n"
			  "Accept-Encoding: br\r\n\r\n";
	const char *joined = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, br\r\n\r\n";
	char v[CACHE_VARY_MAX];

	int n = vary_of(resp, gzip, v, sizeof(v));
	cr_assert_gt(n, 0);
	cr_assert(matches(v, n, gzip));
	cr_assert(matches(v, n, "GET /x HTTP/1.1\r\nAccept-Encoding: gzip\r\nHost: b\r\n\r\n"));
	cr_assert(!matches(v, n, br));
	cr_assert(!matches(v, n, none));
	cr_assert(!matches(v, n,
			   "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n"
			   "Accept-Language: en\r\n\r\n"));

	/* Absent and empty are different requests. */
	n = vary_of(resp, none, v, sizeof(v));
	cr_assert(matches(v, n, none));
	cr_assert(!matches(v, n, empty));
	n = vary_of(resp, empty, v, sizeof(v));
	cr_assert(matches(v, n, empty));
	cr_assert(!matches(v, n, none));

	/* Repeated fields compare as their joined value. */
	n = vary_of(resp, two, v, sizeof(v));
	cr_assert(matches(v, n, joined));
	cr_assert(matches(v, n, two));

	/* No Vary: an empty record that matches anything. */
	cr_assert_eq(vary_of("HTTP/1.1 200 OK\r\n\r\n", gzip, v, sizeof(v)), 0);
	cr_assert(matches(v, 0, br));

	cr_assert_eq(vary_of("HTTP/1.1 200 OK\r\nVary: *\r\n\r\n", gzip, v, sizeof(v)), -1);
	cr_assert_eq(vary_of(resp, gzip, v, 8), -1);
}

Test(cache_vary, lines_form_agrees_with_parsed_form)
{
	const char *req = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding:  gzip \r\nX-A: 1\r\n"
			  "x-a: 2\r\n\r\n";
	const char *lines = "Host: a\r\nAccept-Encoding:  gzip \r\nX-A: 1\r\nx-a: 2\r\n";
	struct cache_req parsed = {.h = parse_req(req), .buf = req};
	struct cache_req raw = {.lines = lines, .lines_len = strlen(lines)};
	char a[64], b[64];

	cr_assert_eq(cache_req_field(&parsed, "accept-encoding", 15, a, sizeof(a)), 4);
	cr_assert_eq(cache_req_field(&raw, "accept-encoding", 15, b, sizeof(b)), 4);
	cr_assert_eq(memcmp(a, "gzip", 4), 0);
	cr_assert_eq(memcmp(b, "gzip", 4), 0);
	cr_assert_eq(cache_req_field(&parsed, "x-a", 3, a, sizeof(a)), 4);
	cr_assert_eq(cache_req_field(&raw, "x-a", 3, b, sizeof(b)), 4);
	cr_assert_eq(memcmp(a, "1, 2", 4), 0);
	cr_assert_eq(memcmp(b, "1, 2", 4), 0);
	cr_assert_eq(cache_req_field(&raw, "x-b", 3, b, sizeof(b)), -1);
	cr_assert_eq(cache_req_field(&raw, "x-a", 3, b, 3), -2);

	struct http_head r;
	const char *resp = "HTTP/1.1 200 OK\r\nVary: accept-encoding, X-A\r\n\r\n";
	cr_assert_eq(http_parse_response(resp, strlen(resp), NULL, &r), HTTP_DONE);
	char v[256];
	int n = cache_vary_build(&r, resp, &raw, v, sizeof(v));
	cr_assert_gt(n, 0);
	cr_assert(cache_vary_matches(v, (size_t)n, &parsed));
}

/* ---- the store -------------------------------------------------------- */

static struct cache_key key_of(const char *host, const char *target)
{
	struct cache_key k = {
		.scope = 7,
		.host = host,
		.host_len = (uint32_t)strlen(host),
		.target = target,
		.target_len = (uint32_t)strlen(target),
	};
	cache_key_hash(&k);
	return k;
}

/* A complete entry of BODY_LEN bytes, fresh for LIFETIME_MS from NOW. */
static struct cache_entry *entry(const char *target, size_t body_len, int64_t lifetime_ms,
				 uint64_t now, const char *vary, int vary_len)
{
	struct cache_key k = key_of("example.com", target);
	const char *head = "HTTP/1.1 200 OK\r\nContent-Type: x\r\n";
	struct cache_entry *e = cache_entry_new(&k, vary, vary_len > 0 ? (size_t)vary_len : 0,
						strlen(head), body_len);
	cr_assert_not_null(e);
	cr_assert_eq(cache_entry_set_head(e, head, strlen(head), NULL, 0), 0);
	char *body = calloc(1, body_len + 1);
	cr_assert_eq(cache_entry_append(&e, body, body_len, UINT64_MAX), 0);
	free(body);
	e->status = 200;
	e->stored_ms = now;
	e->lifetime_ms = lifetime_ms;
	cache_entry_end(&e, false);
	return e;
}

static const struct cache_req no_fields = {.lines = "", .lines_len = 0};

static bool present(struct cache *c, const char *target, uint64_t now)
{
	struct cache_key k = key_of("example.com", target);
	struct cache_entry *e = cache_lookup(c, &k, &no_fields, false, now, NULL);
	cache_entry_put(e);
	return e != NULL;
}

Test(cache_store, hit_stale_and_age)
{
	struct cache *c = cache_new(1 << 20);
	struct cache_key k = key_of("example.com", "/a");
	bool stale = false;

	cache_insert(c, entry("/a", 100, 2000, 1000, NULL, 0));
	struct cache_entry *e = cache_lookup(c, &k, &no_fields, false, 1500, NULL);
	cr_assert_not_null(e);
	cr_assert_eq(e->body_len, 100);
	cr_assert_eq(cache_entry_age_ms(e, 2999), 1999);
	cache_entry_put(e);

	/* Other hosts, targets and scopes miss. */
	struct cache_key other = key_of("example.org", "/a");
	cr_assert_null(cache_lookup(c, &other, &no_fields, false, 1500, NULL));
	other = key_of("example.com", "/a?");
	cr_assert_null(cache_lookup(c, &other, &no_fields, false, 1500, NULL));
	other = k;
	other.scope = 8;
	cache_key_hash(&other);
	cr_assert_null(cache_lookup(c, &other, &no_fields, false, 1500, NULL));

	/* Stale at lifetime: a miss, or a stale match when asked for. */
	cr_assert_null(cache_lookup(c, &k, &no_fields, false, 3000, NULL));
	e = cache_lookup(c, &k, &no_fields, false, 3000, &stale);
	cr_assert_not_null(e);
	cr_assert(stale);
	cache_entry_put(e);

	/* Not auth_ok: no answer to a request with Authorization. */
	cr_assert_null(cache_lookup(c, &k, &no_fields, true, 1500, NULL));
	cache_free(c);
}

Test(cache_store, lru_eviction_within_budget)
{
	/* 64k with 20k bodies: three fit, the fourth evicts the least
	 * recently used. */
	struct cache *c = cache_new(64 << 10);
	uint64_t bytes, n;

	cache_insert(c, entry("/1", 20 << 10, 60000, 0, NULL, 0));
	cache_insert(c, entry("/2", 20 << 10, 60000, 0, NULL, 0));
	cache_insert(c, entry("/3", 20 << 10, 60000, 0, NULL, 0));
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 3);
	cr_assert_leq(bytes, 64 << 10);
	cr_assert(present(c, "/1", 1)); /* /1 is now the most recent; /2 the oldest */
	cache_insert(c, entry("/4", 20 << 10, 60000, 0, NULL, 0));
	cr_assert(!present(c, "/2", 2));
	cr_assert(present(c, "/1", 2));
	cr_assert(present(c, "/3", 2));
	cr_assert(present(c, "/4", 2));
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 3);
	cr_assert_leq(bytes, 64 << 10);

	/* Larger than the whole budget: not stored, nothing evicted. */
	cache_insert(c, entry("/big", 70 << 10, 60000, 0, NULL, 0));
	cr_assert(!present(c, "/big", 3));
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 3);

	/* A smaller budget (a reload) is caught up by the next insert. */
	cache_set_budget(c, 30 << 10);
	cache_insert(c, entry("/5", 1 << 10, 60000, 0, NULL, 0));
	cache_usage(c, &bytes, &n);
	cr_assert_leq(bytes, 30 << 10);
	cr_assert(present(c, "/5", 4));
	cache_free(c);
}

Test(cache_store, variants_replace_and_invalidate)
{
	struct cache *c = cache_new(1 << 20);
	const char *resp = "HTTP/1.1 200 OK\r\nVary: Accept-Encoding\r\n\r\n";
	const char *gzip = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n";
	const char *br = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\n\r\n";
	char vg[256], vb[256];
	int ng = vary_of(resp, gzip, vg, sizeof(vg));
	int nb = vary_of(resp, br, vb, sizeof(vb));
	struct cache_key k = key_of("example.com", "/v");
	uint64_t bytes, n;

	cache_insert(c, entry("/v", 10, 60000, 0, vg, ng));
	cache_insert(c, entry("/v", 20, 60000, 0, vb, nb));
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 2);

	struct cache_req rq = {.h = parse_req(gzip), .buf = gzip};
	struct cache_entry *e = cache_lookup(c, &k, &rq, false, 1, NULL);
	cr_assert_not_null(e);
	cr_assert_eq(e->body_len, 10);
	cache_entry_put(e);
	rq = (struct cache_req){.h = parse_req(br), .buf = br};
	e = cache_lookup(c, &k, &rq, false, 1, NULL);
	cr_assert_not_null(e);
	cr_assert_eq(e->body_len, 20);

	/* A new gzip response replaces the old one; the reader of the br
	 * variant keeps its entry across the invalidation. */
	cache_insert(c, entry("/v", 30, 60000, 0, vg, ng));
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 2);
	cache_invalidate(c, &k);
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 0);
	cr_assert_eq(bytes, 0);
	cr_assert_eq(e->body_len, 20);
	cr_assert(!e->linked);
	cache_entry_put(e);
	cache_free(c);
}

Test(cache_store, variants_per_key_are_bounded)
{
	/* A client sending a new value of the Vary field every time cannot
	 * grow the key's chain, which every lookup walks under the lock. */
	struct cache *c = cache_new(64 << 20);
	const char *resp = "HTTP/1.1 200 OK\r\nVary: Accept-Language\r\n\r\n";
	struct cache_key k = key_of("example.com", "/v");
	uint64_t bytes, n;
	char req[128], v[256];

	for (int i = 0; i < 3 * CACHE_MAX_VARIANTS; i++) {
		snprintf(req, sizeof(req),
			 "GET / HTTP/1.1\r\nHost: a\r\nAccept-Language: x%d\r\n\r\n", i);
		int nv = vary_of(resp, req, v, sizeof(v));
		cr_assert_gt(nv, 0);
		cache_insert(c, entry("/v", 10, 60000, 0, v, nv));
	}
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, CACHE_MAX_VARIANTS);
	/* The newest variant is one of those kept. */
	struct cache_req rq = {.h = parse_req(req), .buf = req};
	struct cache_entry *e = cache_lookup(c, &k, &rq, false, 1, NULL);
	cr_assert_not_null(e);
	cache_entry_put(e);
	cache_free(c);
}

Test(cache_store, head_filter_and_decoded_length)
{
	struct cache_key k = key_of("example.com", "/c");
	const char *head = "HTTP/1.1 200 OK\r\nAge: 5\r\nTransfer-Encoding: chunked\r\n"
			   "X-Cache: MISS\r\nCache-Control: max-age=5\r\n";
	struct cache_entry *e = cache_entry_new(&k, NULL, 0, strlen(head), 0);

	cr_assert_eq(cache_entry_set_head(e, head, strlen(head), NULL, 0), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(cache_entry_append(&e, "0123456789abcdef", 16, 1 << 20), 0);
	cache_entry_end(&e, true);
	const char *want = "HTTP/1.1 200 OK\r\nCache-Control: max-age=5\r\nContent-Length: 160\r\n";
	cr_assert_eq(e->head_len, strlen(want));
	cr_assert_eq(memcmp(e->head, want, e->head_len), 0);
	cr_assert_eq(e->body_len, 160);
	cr_assert_eq(memcmp(e->body + 144, "0123456789abcdef", 16), 0);
	/* The room grown for a body of unknown length (16 KiB at first) is
	 * given back: the entry is charged what it holds. */
	cr_assert_eq(e->body_cap, 160);
	cr_assert_eq(e->charge,
		     sizeof(*e) + e->host_len + e->target_len + e->head_cap + e->body_cap);

	/* Growing past the largest object fails and leaves the entry whole. */
	char *more = calloc(1, 1 << 15);
	cr_assert_eq(cache_entry_append(&e, more, 1 << 15, 1 << 14), -EFBIG);
	free(more);
	cr_assert_eq(e->body_len, 160);
	cache_entry_put(e);
}

Test(cache_store, many_entries_grow_the_table)
{
	struct cache *c = cache_new(64 << 20);
	char target[32];
	uint64_t bytes, n;

	for (int i = 0; i < 5000; i++) {
		snprintf(target, sizeof(target), "/k%d", i);
		cache_insert(c, entry(target, 8, 60000, 0, NULL, 0));
	}
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 5000);
	for (int i = 0; i < 5000; i += 97) {
		snprintf(target, sizeof(target), "/k%d", i);
		cr_assert(present(c, target, 1), "%s", target);
	}
	cache_free(c);
}

/* ---- revalidation ----------------------------------------------------- */

Test(cache_store, validators_are_found)
{
	struct cache_key k = key_of("example.com", "/v");
	const char *head = "HTTP/1.1 200 OK\r\nETag:  \"abc\" \r\nlast-modified: Sat, 01 Jan 2000 "
			   "00:00:00 GMT\r\n";
	struct cache_entry *e = cache_entry_new(&k, NULL, 0, strlen(head), 0);

	cr_assert_eq(cache_entry_set_head(e, head, strlen(head), NULL, 0), 0);
	cr_assert_eq(e->etag_len, 5);
	cr_assert_eq(memcmp(e->head + e->etag_off, "\"abc\"", 5), 0);
	cr_assert_eq(e->lm_len, 29);
	cr_assert_eq(memcmp(e->head + e->lm_off, "Sat, 01 Jan 2000 00:00:00 GMT", 29), 0);
	cache_entry_put(e);
}

Test(cache_policy, merge_head_with_304)
{
	const char *stored = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nCache-Control: max-age=1\r\n"
			     "ETag: \"a\"\r\nX-Old: 1\r\nx-two: a\r\nX-Two: b\r\n";
	const char *nm = "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\n"
			 "Content-Length: 0\r\nConnection: close, x-hop\r\nX-Hop: 1\r\n"
			 "X-Cache: HIT\r\nX-Two:c\r\nX-New: 2\r\n\r\n";
	const char *want = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"a\"\r\nX-Old: 1\r\n"
			   "Date: Sat, 28 Nov 2026 21:00:00 GMT\r\n"
			   "Cache-Control: max-age=60\r\nX-Two: c\r\nX-New: 2\r\n\r\n";
	const char *now = "Sat, 28 Nov 2026 21:00:00 GMT";
	char out[512];

	size_t n =
		cache_merge_head(stored, strlen(stored), parse_resp(nm), nm, now, out, sizeof(out));
	cr_assert_eq(n, strlen(want), "%.*s", (int)n, out);
	cr_assert_eq(memcmp(out, want, n), 0, "%.*s", (int)n, out);
	cr_assert_eq(cache_merge_head(stored, strlen(stored), parse_resp(nm), nm, now, out, 40), 0);
}

Test(cache_policy, merge_head_dates_a_304_without_date)
{
	const char *stored = "HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 20:00:00 GMT\r\n"
			     "Cache-Control: max-age=2\r\n";
	const char *now = "Sat, 28 Nov 2026 21:00:00 GMT";
	const char *bare = "HTTP/1.1 304 Not Modified\r\nETag: \"b\"\r\n\r\n";
	const char *dated =
		"HTTP/1.1 304 Not Modified\r\nDate: Sat, 28 Nov 2026 20:30:00 GMT\r\n\r\n";
	char out[512];

	/* No Date in the 304: the old one goes, now comes. */
	size_t n = cache_merge_head(stored, strlen(stored), parse_resp(bare), bare, now, out,
				    sizeof(out));
	const char *want = "HTTP/1.1 200 OK\r\nCache-Control: max-age=2\r\n"
			   "Date: Sat, 28 Nov 2026 21:00:00 GMT\r\nETag: \"b\"\r\n\r\n";
	cr_assert_eq(n, strlen(want), "%.*s", (int)n, out);
	cr_assert_eq(memcmp(out, want, n), 0, "%.*s", (int)n, out);
	/* The 304's own Date wins over now. */
	n = cache_merge_head(stored, strlen(stored), parse_resp(dated), dated, now, out,
			     sizeof(out));
	want = "HTTP/1.1 200 OK\r\nCache-Control: max-age=2\r\n"
	       "Date: Sat, 28 Nov 2026 20:30:00 GMT\r\n\r\n";
	cr_assert_eq(n, strlen(want), "%.*s", (int)n, out);
	cr_assert_eq(memcmp(out, want, n), 0, "%.*s", (int)n, out);
}

Test(cache_store, fill_reservations_are_bounded_by_the_budget)
{
	struct cache *c = cache_new(100000);

	cr_assert(cache_fill_reserve(c, 60000));
	cr_assert(!cache_fill_reserve(c, 50000));
	cr_assert(cache_fill_reserve(c, 40000));
	cache_fill_release(c, 60000);
	cr_assert(cache_fill_reserve(c, 50000));
	cache_fill_release(c, 90000);
	cr_assert(cache_fill_reserve(c, 100000));
	cache_fill_release(c, 100000);
	cache_free(c);
}

Test(cache_store, one_claim_per_key)
{
	struct cache *c = cache_new(1 << 20);
	struct cache_key a = key_of("example.com", "/a"), b = key_of("example.com", "/b");

	cr_assert_eq(cache_pending_claim(c, &a, 0), 1);
	cr_assert_eq(cache_pending_claim(c, &a, 0), 0);
	cr_assert_eq(cache_pending_claim(c, &b, 0), 1);
	cache_pending_release(c, &a);
	cr_assert_eq(cache_pending_claim(c, &a, 0), 1);
	cache_pending_release(c, &a);
	cache_pending_release(c, &a); /* releasing what is not claimed is harmless */
	cr_assert_eq(cache_pending_claim(c, &b, 0), 0);
	cache_free(c); /* frees the claim of /b still held */
}

Test(cache_store, a_claim_held_up_by_its_client_stops_others_waiting)
{
	struct cache *c = cache_new(1 << 20);
	struct cache_key a = key_of("example.com", "/a");

	cr_assert_eq(cache_pending_claim(c, &a, 1000), 1);
	cache_pending_stuck(c, &a, 1000);
	cr_assert_eq(cache_pending_claim(c, &a, 1000 + CACHE_PENDING_STUCK_MS - 1), 0);
	cr_assert_eq(cache_pending_claim(c, &a, 1000 + CACHE_PENDING_STUCK_MS), -EBUSY);
	cache_pending_stuck(c, &a, 0); /* it moves again */
	cr_assert_eq(cache_pending_claim(c, &a, 5000), 0);
	cache_pending_release(c, &a);
	cache_pending_stuck(c, &a, 7000); /* not claimed: nothing to mark */
	cr_assert_eq(cache_pending_claim(c, &a, 9000), 1);
	cache_free(c);
}

Test(cache_store, pass_markers)
{
	struct cache *c = cache_new(1 << 20);
	struct cache_key k = key_of("example.com", "/p");
	const char *resp = "HTTP/1.1 200 OK\r\nVary: Accept-Encoding\r\n\r\n";
	const char *gzip = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n";
	const char *br = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\n\r\n";
	char vg[256];
	int ng = vary_of(resp, gzip, vg, sizeof(vg));
	struct cache_req rg = {.h = parse_req(gzip), .buf = gzip};

	/* A stored variant still answers; other requests see the marker. */
	cache_insert(c, entry("/p", 10, 60000, 0, vg, ng));
	cache_insert_pass(c, &k, 0, 1000);
	struct cache_entry *e = cache_lookup(c, &k, &rg, false, 1, NULL);
	cr_assert(e && !e->pass && e->body_len == 10);
	cache_entry_put(e);
	struct cache_req rb = {.h = parse_req(br), .buf = br};
	e = cache_lookup(c, &k, &rb, false, 1, NULL);
	cr_assert(e && e->pass);
	cache_entry_put(e);
	e = cache_lookup(c, &k, &no_fields, true, 1, NULL);
	cr_assert(e && e->pass, "markers concern requests with Authorization too");
	cache_entry_put(e);

	/* Markers expire, and a storable response replaces them. */
	cr_assert_null(cache_lookup(c, &k, &rb, false, 1000, NULL));
	cache_insert_pass(c, &k, 0, 1000);
	cache_insert(c, entry("/p", 20, 60000, 0, NULL, 0));
	e = cache_lookup(c, &k, &rb, false, 1, NULL);
	cr_assert(e && !e->pass && e->body_len == 20);
	cache_entry_put(e);
	uint64_t bytes, n;
	cache_usage(c, &bytes, &n);
	cr_assert_eq(n, 2);
	cache_free(c);
}

Test(cache_policy, not_modified)
{
	const char *lm = "Sat, 01 Jan 2000 00:00:00 GMT";
	static const struct {
		const char *fields;
		bool want;
	} rows[] = {
		{"If-None-Match: \"a\"\r\n", true},
		{"If-None-Match: W/\"a\"\r\n", true},
		{"If-None-Match: \"b\", \"a\"\r\n", true},
		{"If-None-Match: *\r\n", true},
		{"If-None-Match: \"b\"\r\n", false},
		{"If-None-Match: a\r\n", false},
		{"If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n", true},
		{"If-Modified-Since: Sat, 01 Jan 2000 00:00:01 GMT\r\n", true},
		{"If-Modified-Since: Fri, 31 Dec 1999 23:59:59 GMT\r\n", false},
		{"If-Modified-Since: yesterday\r\n", false},
		{"If-None-Match: \"b\"\r\nIf-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
		 false},
	};
	char text[512];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct cache_req_policy rp;
		snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: a\r\n%s\r\n", rows[i].fields);
		const struct http_head *h = parse_req(text);
		cache_request_policy(h, text, &rp);
		cr_assert(rp.conditional && !rp.precondition);
		cr_assert_eq(cache_not_modified(&rp, h, text, "W/\"a\"", 5, lm, strlen(lm)),
			     rows[i].want, "%s", rows[i].fields);
	}
	struct cache_req_policy rp;
	const char *t = "GET / HTTP/1.1\r\nHost: a\r\nIf-Unmodified-Since: x\r\n\r\n";
	cache_request_policy(parse_req(t), t, &rp);
	cr_assert(rp.precondition);
}
