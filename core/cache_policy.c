/*
 * cache_policy.c - RFC 9111 freshness and storability (see cache_policy.h).
 * Pure; any thread.
 *
 * Times are whole seconds where the headers have them. The apparent age
 * (our clock minus the server's Date) ignores a difference of one second:
 * Date has one-second resolution, so a response generated at x.999 and read
 * at (x+1).001 would otherwise look one second old, and a max-age=1
 * response would be stale on arrival.
 */
#include "core/cache_policy.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define DELTA_MAX (INT64_C(1) << 31) /* RFC 9111 §1.2.2 */

/* Directives of the Cache-Control fields of one message that matter here. */
struct cc {
	bool any; /* at least one Cache-Control field */
	bool no_store, no_cache, private_, public_, must_revalidate, only_if_cached;
	int64_t max_age, s_maxage; /* -1 when absent, -2 when present but invalid */
	int64_t min_fresh; /* the largest valid one; -1 when none */
};

bool cache_status_is_storable(int status)
{
	switch (status) {
	case 200:
	case 203:
	case 204:
	case 300:
	case 301:
	case 404:
	case 410:
		return true;
	default:
		return false;
	}
}

int64_t cache_parse_delta_seconds(const char *s, size_t len)
{
	int64_t v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v < DELTA_MAX)
			v = v * 10 + (s[i] - '0');
	}
	return v < DELTA_MAX ? v : DELTA_MAX;
}

static bool name_is(const char *buf, const struct http_header *hd, const char *lit, size_t n)
{
	return hd->name.len == n && http_token_eq(buf + hd->name.off, n, lit);
}

/* The value of a delta-seconds directive; quotes are tolerated (RFC 9111
 * §5.2: senders must not quote, recipients should accept it). */
static int64_t directive_seconds(const char *v, size_t n)
{
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	int64_t s = cache_parse_delta_seconds(v, n);
	return s < 0 ? -2 : s;
}

/* Folds one directive NAME[=VALUE] into CC. Duplicates keep the smaller age,
 * which is the safe reading of a message that contradicts itself. */
static void cc_directive(struct cc *cc, const char *el, size_t len)
{
	const char *eq = memchr(el, '=', len);
	size_t nlen = eq ? (size_t)(eq - el) : len;
	while (nlen && http_is_ows((unsigned char)el[nlen - 1]))
		nlen--;
	const char *v = eq ? eq + 1 : NULL;
	size_t vlen = eq ? len - (size_t)(v - el) : 0;
	while (vlen && http_is_ows((unsigned char)*v)) {
		v++;
		vlen--;
	}

	if (http_token_eq(el, nlen, "no-store"))
		cc->no_store = true;
	else if (http_token_eq(el, nlen, "no-cache"))
		cc->no_cache = true;
	else if (http_token_eq(el, nlen, "private"))
		cc->private_ = true;
	else if (http_token_eq(el, nlen, "public"))
		cc->public_ = true;
	else if (http_token_eq(el, nlen, "must-revalidate") ||
		 http_token_eq(el, nlen, "proxy-revalidate"))
		cc->must_revalidate = true;
	else if (http_token_eq(el, nlen, "max-age")) {
		int64_t s = directive_seconds(v, vlen);
		if (cc->max_age == -1 || s < cc->max_age)
			cc->max_age = s;
	} else if (http_token_eq(el, nlen, "min-fresh")) {
		int64_t s = directive_seconds(v, vlen);
		if (s > cc->min_fresh)
			cc->min_fresh = s;
	} else if (http_token_eq(el, nlen, "only-if-cached")) {
		cc->only_if_cached = true;
	} else if (http_token_eq(el, nlen, "s-maxage")) {
		int64_t s = directive_seconds(v, vlen);
		if (cc->s_maxage == -1 || s < cc->s_maxage)
			cc->s_maxage = s;
	}
}

static void cc_add_field(struct cc *cc, const char *buf, const struct http_header *hd)
{
	const char *v = buf + hd->value.off, *el;
	size_t pos = 0, el_len;

	cc->any = true;
	while (http_list_next(v, hd->value.len, &pos, &el, &el_len))
		cc_directive(cc, el, el_len);
}

static void cc_init(struct cc *cc)
{
	memset(cc, 0, sizeof(*cc));
	cc->max_age = cc->s_maxage = cc->min_fresh = -1;
}

static bool list_has(const char *buf, const struct http_header *hd, const char *token)
{
	const char *el;
	size_t pos = 0, el_len;

	while (http_list_next(buf + hd->value.off, hd->value.len, &pos, &el, &el_len))
		if (http_token_eq(el, el_len, token))
			return true;
	return false;
}

void cache_request_policy(const struct http_head *h, const char *buf, struct cache_req_policy *out)
{
	struct cc cc;
	bool pragma_no_cache = false;

	cc_init(&cc);
	memset(out, 0, sizeof(*out));
	out->if_none_match = out->if_modified_since = out->range_field = -1;
	for (unsigned i = 0; i < h->header_count; i++) {
		const struct http_header *hd = &h->headers[i];
		switch (hd->name.len) {
		case 5:
			if (name_is(buf, hd, "range", 5)) {
				out->range_field = out->range ? -1 : (int)i;
				out->range = true;
			}
			break;
		case 6:
			if (name_is(buf, hd, "pragma", 6))
				pragma_no_cache |= list_has(buf, hd, "no-cache");
			break;
		case 8:
			out->precondition |= name_is(buf, hd, "if-match", 8);
			out->if_range |= name_is(buf, hd, "if-range", 8);
			out->conditional |= name_is(buf, hd, "if-match", 8) || out->if_range;
			break;
		case 13:
			if (name_is(buf, hd, "cache-control", 13))
				cc_add_field(&cc, buf, hd);
			else if (name_is(buf, hd, "authorization", 13))
				out->authorized = true;
			else if (name_is(buf, hd, "if-none-match", 13)) {
				out->conditional = true;
				if (out->if_none_match < 0)
					out->if_none_match = (int)i;
			}
			break;
		case 17:
			if (name_is(buf, hd, "if-modified-since", 17)) {
				out->conditional = true;
				if (out->if_modified_since < 0)
					out->if_modified_since = (int)i;
			}
			break;
		case 19:
			out->precondition |= name_is(buf, hd, "if-unmodified-since", 19);
			out->conditional |= name_is(buf, hd, "if-unmodified-since", 19);
			break;
		default:
			break;
		}
	}
	out->no_store = cc.no_store;
	out->only_if_cached = cc.only_if_cached;
	out->max_age_s = cc.max_age >= 0 ? cc.max_age : -1;
	out->min_fresh_s = cc.min_fresh >= 0 ? cc.min_fresh : -1;
	/* RFC 9111 §5.4: Pragma counts only when Cache-Control is absent. */
	out->no_cache =
		cc.no_cache || cc.max_age == 0 || cc.max_age == -2 || (!cc.any && pragma_no_cache);
}

/* An entity-tag without its weakness indicator (RFC 9110 §8.8.3.2). */
static void strip_weak(const char **t, size_t *n)
{
	if (*n >= 2 && (*t)[0] == 'W' && (*t)[1] == '/') {
		*t += 2;
		*n -= 2;
	}
}

/* Reads the digits at *P (before END) into *V, saturating; false if none. */
static bool range_pos(const char **p, const char *end, uint64_t *v)
{
	const char *s = *p;

	*v = 0;
	for (; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
		unsigned d = (unsigned)(**p - '0');
		*v = *v > (UINT64_MAX - d) / 10 ? UINT64_MAX : *v * 10 + d;
	}
	return *p > s;
}

int cache_byte_range(const char *v, size_t n, uint64_t len, uint64_t *first, uint64_t *last)
{
	const char *p = v, *end = v + n;
	uint64_t a, b;

	if (n < 6 || !http_token_eq(p, 5, "bytes") || p[5] != '=')
		return 0;
	p += 6;
	if (memchr(p, ',', (size_t)(end - p)))
		return 0;
	if (p < end && *p == '-') {
		p++;
		if (!range_pos(&p, end, &b) || p != end)
			return 0;
		if (b == 0)
			return -1;
		if (len == 0)
			return 0; /* satisfiable (RFC 9110 §14.1.1), and nothing to cut */
		*first = b >= len ? 0 : len - b;
		*last = len - 1;
		return 1;
	}
	if (!range_pos(&p, end, &a) || p == end || *p++ != '-')
		return 0;
	bool open = p == end;
	if (!open && (!range_pos(&p, end, &b) || p != end || b < a))
		return 0;
	if (a >= len)
		return -1;
	*first = a;
	*last = open || b >= len ? len - 1 : b;
	return 1;
}

bool cache_not_modified(const struct cache_req_policy *rp, const struct http_head *h,
			const char *buf, const char *etag, size_t etag_len,
			const char *last_modified, size_t lm_len)
{
	strip_weak(&etag, &etag_len);
	if (rp->if_none_match >= 0) {
		const struct http_header *hd = &h->headers[rp->if_none_match];
		const char *el;
		size_t pos = 0, el_len;
		while (http_list_next(buf + hd->value.off, hd->value.len, &pos, &el, &el_len)) {
			if (el_len == 1 && el[0] == '*')
				return true;
			strip_weak(&el, &el_len);
			if (etag_len && el_len == etag_len && memcmp(el, etag, etag_len) == 0)
				return true;
		}
		return false;
	}
	if (rp->if_modified_since < 0 || lm_len == 0)
		return false;
	const struct http_header *hd = &h->headers[rp->if_modified_since];
	int64_t since, modified;
	return cache_parse_http_date(buf + hd->value.off, hd->value.len, &since) == 0 &&
	       cache_parse_http_date(last_modified, lm_len, &modified) == 0 && modified <= since;
}

/* The header facts a response policy needs, found in one pass. */
struct resp_fields {
	struct cc cc;
	const struct http_header *expires, *date, *age;
	bool set_cookie, vary_star;
};

static void scan_response(const struct http_head *resp, const char *buf, struct resp_fields *f)
{
	memset(f, 0, sizeof(*f));
	cc_init(&f->cc);
	for (unsigned i = 0; i < resp->header_count; i++) {
		const struct http_header *hd = &resp->headers[i];
		if (name_is(buf, hd, "cache-control", 13))
			cc_add_field(&f->cc, buf, hd);
		else if (name_is(buf, hd, "expires", 7))
			f->expires = f->expires ? f->expires : hd;
		else if (name_is(buf, hd, "date", 4))
			f->date = f->date ? f->date : hd;
		else if (name_is(buf, hd, "age", 3))
			f->age = f->age ? f->age : hd;
		else if (name_is(buf, hd, "set-cookie", 10))
			f->set_cookie = true;
		else if (name_is(buf, hd, "vary", 4))
			f->vary_star |= list_has(buf, hd, "*");
	}
}

/* Date value of the response (its Date field, else when it arrived). */
static int64_t date_value(const struct resp_fields *f, const char *buf, int64_t response_s)
{
	int64_t d;

	if (f->date && cache_parse_http_date(buf + f->date->value.off, f->date->value.len, &d) == 0)
		return d;
	return response_s;
}

/* §4.2.1: s-maxage, then max-age, then Expires minus Date. -1 when the
 * response gives no explicit lifetime; 0 when it is stale at once. */
static int64_t lifetime(const struct resp_fields *f, const char *buf, int64_t date_s)
{
	int64_t e;

	if (f->cc.s_maxage != -1)
		return f->cc.s_maxage < 0 ? 0 : f->cc.s_maxage;
	if (f->cc.max_age != -1)
		return f->cc.max_age < 0 ? 0 : f->cc.max_age;
	if (!f->expires)
		return -1;
	/* §5.3: an invalid Expires, "0" included, means already expired. */
	if (cache_parse_http_date(buf + f->expires->value.off, f->expires->value.len, &e) < 0)
		return 0;
	return e > date_s ? e - date_s : 0;
}

/* RFC 9111 §5.1: of a list-valued Age, the first member counts; an invalid
 * one is ignored (0). */
static int64_t age_value(const struct http_header *hd, const char *buf)
{
	const char *el;
	size_t el_len, pos = 0;

	if (!http_list_next(buf + hd->value.off, hd->value.len, &pos, &el, &el_len))
		return 0;
	int64_t age = cache_parse_delta_seconds(el, el_len);
	return age < 0 ? 0 : age;
}

/* RFC 9111 §4.2.3: the age the response had when it came, in
 * milliseconds (corrected_initial_age). */
static int64_t initial_age_ms(const struct resp_fields *f, const char *buf, int64_t date_s,
			      uint64_t request_wall_ms, uint64_t response_wall_ms)
{
	/* Date has whole seconds: a one-second lag is its rounding, not age. */
	int64_t response_s = (int64_t)(response_wall_ms / 1000);
	int64_t apparent = response_s - date_s > 1 ? response_s - date_s : 0;
	int64_t age = f->age ? age_value(f->age, buf) : 0;
	/* The time the response took counts to the millisecond: a 0.9 s
	 * origin leaves a max-age=1 answer fresh for 0.1 s, not 1 s. */
	int64_t delay_ms = response_wall_ms > request_wall_ms
				   ? (int64_t)(response_wall_ms - request_wall_ms)
				   : 0;
	int64_t corrected = (age < 0 ? 0 : age) * 1000 + delay_ms;

	return apparent * 1000 > corrected ? apparent * 1000 : corrected;
}

void cache_response_policy(const struct http_head *resp, const char *buf, uint64_t request_wall_ms,
			   uint64_t response_wall_ms, bool authorized,
			   struct cache_resp_policy *out)
{
	struct resp_fields f;

	memset(out, 0, sizeof(*out));
	scan_response(resp, buf, &f);
	out->auth_ok = f.cc.public_ || f.cc.s_maxage != -1 || f.cc.must_revalidate;
	if (!cache_status_is_storable(resp->status))
		out->why_not = "status";
	else if (f.cc.no_store)
		out->why_not = "no_store";
	else if (f.cc.private_)
		out->why_not = "private";
	else if (f.cc.no_cache)
		out->why_not = "no_cache";
	else if (f.set_cookie)
		out->why_not = "set_cookie";
	else if (f.vary_star)
		out->why_not = "vary_star";
	else if (authorized && !out->auth_ok)
		out->why_not = "authorization";
	if (out->why_not)
		return;

	int64_t date_s = date_value(&f, buf, (int64_t)(response_wall_ms / 1000));
	out->lifetime_s = lifetime(&f, buf, date_s);
	out->initial_age_ms = initial_age_ms(&f, buf, date_s, request_wall_ms, response_wall_ms);
	if (out->lifetime_s < 0)
		out->why_not = "no_lifetime";
	else if (out->lifetime_s * 1000 <= out->initial_age_ms)
		out->why_not = "stale";
}

/* ---- updating a stored head ------------------------------------------- */

/* Whether field HD of the 304 H stays out of a stored head. */
static bool not_taken_from_304(const struct http_head *h, const char *buf,
			       const struct http_header *hd)
{
	const char *n = buf + hd->name.off;

	return hd->id == HTTP_H_CONTENT_LENGTH || hd->id == HTTP_H_TRANSFER_ENCODING ||
	       http_header_is_hop_by_hop(hd) || name_is(buf, hd, "x-cache", 7) ||
	       http_connection_lists(h, buf, n, hd->name.len);
}

/* Whether the 304 H has a field, taken into the stored head, named N[0, LEN). */
static bool replaced_by_304(const struct http_head *h, const char *buf, const char *n, size_t len)
{
	for (unsigned i = 0; i < h->header_count; i++) {
		const struct http_header *hd = &h->headers[i];
		if (hd->name.len == len && strncasecmp(buf + hd->name.off, n, len) == 0 &&
		    !not_taken_from_304(h, buf, hd))
			return true;
	}
	return false;
}

static bool put(char *out, size_t cap, size_t *at, const char *p, size_t n)
{
	if (*at + n > cap)
		return false;
	memcpy(out + *at, p, n);
	*at += n;
	return true;
}

size_t cache_merge_head(const char *stored, size_t len, const struct http_head *not_modified,
			const char *buf, const char *date, char *out, size_t cap)
{
	const struct http_head *h = not_modified;
	const char *p = stored, *end = stored + len;
	size_t at = 0;
	bool dated = replaced_by_304(h, buf, "date", 4);

	while (p < end) {
		size_t n = http_line_len(p, end);
		const char *colon = p == stored ? NULL : memchr(p, ':', n);
		bool old_date = colon && !dated && colon - p == 4 && strncasecmp(p, "date", 4) == 0;
		if (!colon || !(replaced_by_304(h, buf, p, (size_t)(colon - p)) || old_date))
			if (!put(out, cap, &at, p, n))
				return 0;
		p += n;
	}
	if (!dated && (!put(out, cap, &at, "Date: ", 6) ||
		       !put(out, cap, &at, date, strlen(date)) || !put(out, cap, &at, "\r\n", 2)))
		return 0;
	for (unsigned i = 0; i < h->header_count; i++) {
		const struct http_header *hd = &h->headers[i];
		if (not_taken_from_304(h, buf, hd))
			continue;
		if (!put(out, cap, &at, buf + hd->name.off, hd->name.len) ||
		    !put(out, cap, &at, ": ", 2) ||
		    !put(out, cap, &at, buf + hd->value.off, hd->value.len) ||
		    !put(out, cap, &at, "\r\n", 2))
			return 0;
	}
	return put(out, cap, &at, "\r\n", 2) ? at : 0;
}

/* ---- HTTP-date -------------------------------------------------------- */

static int month_index(const char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

	for (int i = 0; i < 12; i++)
		if (memcmp(s, months + 3 * i, 3) == 0)
			return i;
	return -1;
}

/* Days from 1970-01-01 to Y-M-D (M 1..12), proleptic Gregorian; Howard
 * Hinnant's days_from_civil. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* N digits at S as a number, or -1. */
static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* "HH:MM:SS" at S into seconds of the day, or -1. */
static int time_of_day(const char *s)
{
	int h = digits(s, 2), m = digits(s + 3, 2), sec = digits(s + 6, 2);
	if (h < 0 || m < 0 || sec < 0 || s[2] != ':' || s[5] != ':' || h > 23 || m > 59 || sec > 60)
		return -1;
	return h * 3600 + m * 60 + sec;
}

static int finish_date(int64_t year, int mon, int day, int tod, int64_t *out)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (mon < 0 || day < 1 || day > mdays[mon] || tod < 0 || year < 1900)
		return -EINVAL;
	*out = days_from_civil(year, mon + 1, day) * 86400 + tod;
	return 0;
}

int cache_parse_http_date(const char *s, size_t len, int64_t *out)
{
	const char *comma = memchr(s, ',', len);

	if (!comma) {
		/* asctime: "Sun Nov  6 08:49:37 1994" */
		if (len != 24 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
			return -EINVAL;
		int day = s[8] == ' ' ? digits(s + 9, 1) : digits(s + 8, 2);
		return finish_date(digits(s + 20, 4), month_index(s + 4), day, time_of_day(s + 11),
				   out);
	}
	size_t rest = len - (size_t)(comma + 1 - s);
	const char *p = comma + 1;
	if (rest == 25 && p[0] == ' ' && p[3] == ' ' && p[7] == ' ' && p[12] == ' ' &&
	    p[21] == ' ' && memcmp(p + 22, "GMT", 3) == 0)
		/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
		return finish_date(digits(p + 8, 4), month_index(p + 4), digits(p + 1, 2),
				   time_of_day(p + 13), out);
	if (rest == 23 && p[0] == ' ' && p[3] == '-' && p[7] == '-' && p[10] == ' ' &&
	    p[19] == ' ' && memcmp(p + 20, "GMT", 3) == 0) {
		/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit year
		 * below 70 is 20yy (RFC 9110 §5.6.7's 50-year rule, simplified). */
		int yy = digits(p + 8, 2);
		if (yy < 0)
			return -EINVAL;
		return finish_date(yy < 70 ? 2000 + yy : 1900 + yy, month_index(p + 4),
				   digits(p + 1, 2), time_of_day(p + 11), out);
	}
	return -EINVAL;
}
