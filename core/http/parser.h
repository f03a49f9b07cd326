/*
 * parser.h - the strict HTTP/1.1 head parser (RFC 9110, RFC 9112).
 *
 * http_parse_request() and http_parse_response() take the bytes received so
 * far, (buf, len), and answer HTTP_DONE with a struct http_head, HTTP_NEED_MORE,
 * or an error that names its reason and the status it maps to. They are pure:
 * no I/O, no allocation, no state between calls. The caller passes the whole
 * buffer again after each read (only appended to); every call rescans from
 * the start with memchr, which is cheap next to the read that preceded it.
 * Feeding a message whole or one byte at a time gives the same final answer:
 * every check that runs before the head is complete (bare CR or LF, the line
 * and head limits) decides from the bytes it has seen, in order.
 *
 * The result is a set of offsets into the caller's buffer, no copies: the
 * head is valid for as long as those bytes stay where they are.
 *
 * Strictness is deliberate (SPEC §3, "Request smuggling is refused"). The
 * choices where the RFCs leave room:
 *  - up to HTTP_MAX_EMPTY_LINES empty lines before a request line are
 *    skipped (RFC 9112 §2.2); none before a status line;
 *  - lines end in CRLF only; a bare LF or a CR not followed by LF is an error;
 *  - "HTTP/1.0" and "HTTP/1.1" only: another well-formed version with major 1
 *    is 400 bad_version, one with another major digit 505;
 *  - a request target may hold bytes >= 0x80 (UTF-8 paths seen in the wild)
 *    but no control byte, space or DEL;
 *  - any transfer coding may precede "chunked" (the server judges it);
 *    "chunked" with parameters, twice, or not last is 400; a request whose
 *    Transfer-Encoding has no "chunked" is 501; a response's is read until
 *    close (RFC 9112 §6.3); Transfer-Encoding in an HTTP/1.0 message is an
 *    error in both directions;
 *  - Content-Length repeats (headers or a "5, 5" list) must all be equal.
 * Statuses are for requests: an invalid response is a 502 whatever its
 * reason, so the proxy should not use http_result_status() for them.
 */
#ifndef FULCRUM_HTTP_PARSER_H
#define FULCRUM_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define HTTP_MAX_HEADERS 1000 /* more fields in one head is 431 (502 from a server) */
/* More Connection tokens is 431 too: each names a field to drop, looked up
 * for every field, so this bounds that work. */
#define HTTP_MAX_CONNECTION_TOKENS 64
#define HTTP_MAX_EMPTY_LINES	   4 /* empty lines skipped before a request line */
#define HTTP_DEFAULT_URI_SIZE	   8192
#define HTTP_DEFAULT_HEADER_SIZE   16384

/*
 * What a parse (or a chunked-body step, see chunked.h) came to. Values from
 * HTTP_E_FIRST on are errors; http_result_name() gives the reason written in
 * the access log and http_result_status() the status answered to a client.
 */
enum http_result {
	HTTP_DONE,
	HTTP_NEED_MORE,
	HTTP_E_BAD_REQUEST_LINE,
	HTTP_E_BAD_METHOD,
	HTTP_E_BAD_TARGET,
	HTTP_E_BAD_VERSION,
	HTTP_E_UNSUPPORTED_VERSION,
	HTTP_E_BAD_STATUS_LINE,
	HTTP_E_URI_TOO_LONG,
	HTTP_E_HEAD_TOO_LARGE,
	HTTP_E_TOO_MANY_HEADERS,
	HTTP_E_BARE_CR,
	HTTP_E_BARE_LF,
	HTTP_E_OBS_FOLD,
	HTTP_E_SPACE_BEFORE_COLON,
	HTTP_E_BAD_HEADER_NAME,
	HTTP_E_BAD_HEADER_VALUE,
	HTTP_E_BAD_CONTENT_LENGTH,
	HTTP_E_CONFLICTING_CONTENT_LENGTH,
	HTTP_E_CL_AND_TE,
	HTTP_E_BAD_TRANSFER_ENCODING,
	HTTP_E_TE_NOT_CHUNKED,
	HTTP_E_TE_IN_HTTP10,
	HTTP_E_MISSING_HOST,
	HTTP_E_MULTIPLE_HOST,
	HTTP_E_BAD_HOST,
	HTTP_E_BAD_CHUNK_SIZE,
	HTTP_E_BAD_CHUNK_EXT,
	HTTP_E_BAD_CHUNK_END,
	HTTP_E_BAD_TRAILER,
	HTTP_E_TRAILER_TOO_LARGE,
	HTTP_RESULT_COUNT,
	HTTP_E_FIRST = HTTP_E_BAD_REQUEST_LINE,
};

/* "done", "need_more", "cl_and_te", ...: never NULL. */
const char *http_result_name(enum http_result r);
/* The status a request error is answered with (400, 414, 431, 501, 505); 0 if not an error. */
int http_result_status(enum http_result r);

static inline bool http_is_error(enum http_result r)
{
	return r >= HTTP_E_FIRST;
}

/* Whether the request error R was found in a head that otherwise parsed
 * whole, its framing included (a missing, repeated or bad Host): the bytes
 * after it can be told apart, a body from what is pipelined behind. */
static inline bool http_error_after_framing(enum http_result r)
{
	return r == HTTP_E_MISSING_HOST || r == HTTP_E_MULTIPLE_HOST || r == HTTP_E_BAD_HOST;
}

/* Limits from the listener's configuration; NULL means the defaults above. */
struct http_limits {
	size_t max_uri_size; /* longest request (or status) line, CRLF excluded: 414 past it */
	size_t max_header_size; /* longest head, final CRLFCRLF included: 431 past it */
};

/* Bytes buf[off, off + len) of the buffer that was parsed. */
struct http_slice {
	uint32_t off;
	uint32_t len;
};

/* Methods the proxy treats specially; any other token is HTTP_M_OTHER. */
enum http_method {
	HTTP_M_OTHER,
	HTTP_M_GET,
	HTTP_M_HEAD,
	HTTP_M_POST,
	HTTP_M_PUT,
	HTTP_M_DELETE,
	HTTP_M_CONNECT,
	HTTP_M_OPTIONS,
	HTTP_M_TRACE,
	HTTP_M_PATCH,
};

/* RFC 9112 §3.2: the four forms of a request target. */
enum http_target_form {
	HTTP_TARGET_ORIGIN, /* /path?query */
	HTTP_TARGET_ABSOLUTE, /* scheme://authority/path?query */
	HTTP_TARGET_AUTHORITY, /* host:port, CONNECT only */
	HTTP_TARGET_ASTERISK, /* *, OPTIONS only */
};

/* Header fields the parser recognises (by name, case-insensitively). */
enum http_hdr {
	HTTP_H_OTHER,
	HTTP_H_CONTENT_LENGTH,
	HTTP_H_TRANSFER_ENCODING,
	HTTP_H_HOST,
	HTTP_H_CONNECTION,
	HTTP_H_UPGRADE,
	HTTP_H_EXPECT,
	HTTP_H_KEEP_ALIVE,
	HTTP_H_PROXY_CONNECTION,
	HTTP_H_TE,
	HTTP_H_TRAILER,
};

struct http_header {
	struct http_slice name;
	struct http_slice value; /* leading and trailing SP/HTAB removed */
	enum http_hdr id;
};

/*
 * A parsed request or response head. Filled by the parse functions (a partial
 * fill on any result but HTTP_DONE means nothing); owned by the caller, who
 * keeps it next to the buffer its slices point into. Plain data, one thread.
 */
struct http_head {
	size_t head_len; /* bytes from buf[0] to the end of the empty line */
	int version_minor; /* 0 or 1 (1.2 and up count as 1) */

	/* requests */
	struct http_slice method;
	enum http_method method_id;
	struct http_slice target;
	enum http_target_form target_form;
	struct http_slice authority; /* absolute and authority forms, else len 0 */
	struct http_slice path; /* origin form: the target; absolute: after the authority */

	/* responses */
	int status;
	struct http_slice reason;

	struct http_header headers[HTTP_MAX_HEADERS];
	unsigned int header_count;

	/* facts derived from the fields while parsing */
	int64_t content_length; /* -1 when absent */
	bool content_length_recast; /* repeated (as a list or in several fields, all
				       equal) or with leading zeros: forwarded as
				       one field with the plain number */
	bool has_te; /* a Transfer-Encoding field is present */
	bool chunked; /* and its last coding is chunked */
	bool te_other; /* and it lists a coding other than chunked */
	uint16_t conn_tokens; /* Connection tokens, all fields together */
	uint16_t conn_options; /* of them, other than close, keep-alive and upgrade */
	bool conn_close; /* Connection lists these tokens */
	bool conn_keep_alive;
	bool conn_upgrade;
	bool has_upgrade; /* an Upgrade field is present */
	bool expect_continue; /* Expect: 100-continue */
	bool expect_other; /* an Expect field with any other value */
	unsigned int host_count;
	bool bad_host; /* a Host value that is no authority (requests refuse it) */
	struct http_slice host; /* the first Host field's value */
};

/*
 * Parse a request head at the start of buf[0, len). Returns HTTP_DONE with
 * *out filled (out->head_len bytes belong to the head; any bytes after it are
 * body or the next request), HTTP_NEED_MORE, or an error.
 */
enum http_result http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
				    struct http_head *out);

/* The same for a response head; out->status is 100..599. */
enum http_result http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
				     struct http_head *out);

/* How the body after a head is delimited (RFC 9112 §6.3). */
enum http_body {
	HTTP_BODY_NONE,
	HTTP_BODY_LENGTH, /* content_length bytes, > 0 */
	HTTP_BODY_CHUNKED,
	HTTP_BODY_UNTIL_CLOSE, /* responses only */
	HTTP_BODY_TUNNEL, /* 101, or 2xx to CONNECT: the connection becomes a tunnel */
};

enum http_body http_request_body(const struct http_head *req);
/* req_method: the method of the request this response answers. */
enum http_body http_response_body(const struct http_head *resp, enum http_method req_method);

/* Whether the connection may carry another message after this one. */
bool http_is_keep_alive(const struct http_head *h);
/* The same for a client's request; PROXY (a forward listener): without a
 * Connection field, the Proxy-Connection field older clients send instead
 * (curl -0 -x: "Proxy-Connection: Keep-Alive") is honoured, as Squid does. */
bool http_client_keep_alive(const struct http_head *h, const char *buf, bool proxy);

/* The host a request is for: an absolute target's authority (RFC 9112
 * §3.2.2: the Host field is then ignored), else the Host field. */
static inline struct http_slice http_request_host(const struct http_head *h)
{
	return h->target_form == HTTP_TARGET_ABSOLUTE ? h->authority : h->host;
}

/* Whether s[0, n) is a valid Host field value: a name, an IPv4 address or a
 * bracketed IP literal, with an optional port. */
bool http_is_host_value(const char *s, size_t n);

/* RFC 9110 §9.2.2: safe to send again after a failure. */
bool http_method_is_idempotent(enum http_method m);

/* Header fields that concern one hop only and are never forwarded (SPEC §3). */
bool http_header_is_hop_by_hop(const struct http_header *hd);

/* Whether a[0, n) and b[0, n) are equal, ignoring ASCII case. */
bool http_case_eq(const char *a, const char *b, size_t n);

/* Whether s[0, len) equals the lowercase literal lit, ignoring ASCII case. */
bool http_token_eq(const char *s, size_t len, const char *lit);

/*
 * Index of the first header at or after index from whose name is name
 * (case-insensitive), or -1. buf is the parsed buffer.
 */
int http_header_find(const struct http_head *h, const char *buf, const char *name,
		     unsigned int from);

/*
 * Walk a comma-separated field value (RFC 9110 §5.6.1): *pos starts at 0; each
 * call stores the next non-empty element, trimmed of SP/HTAB, in *elem and
 * *elem_len (pointing into val) and returns true, or returns false at the end.
 * Commas inside a quoted-string do not split.
 */
bool http_list_next(const char *val, size_t len, size_t *pos, const char **elem, size_t *elem_len);

/* Whether the Connection fields of h list the field name name[0, len). */
bool http_connection_lists(const struct http_head *h, const char *buf, const char *name,
			   size_t len);

static inline const char *http_slice_ptr(const char *buf, struct http_slice s)
{
	return buf + s.off;
}

/*
 * RFC 9110 §5.6.2: a token character, ALPHA / DIGIT / one of !#$%&'*+-.^_`|~.
 * The masks hold one bit per byte value below 128.
 */
static inline bool http_is_tchar(unsigned char c)
{
	const uint64_t lo = UINT64_C(0x03ff6cfa00000000), hi = UINT64_C(0x57ffffffc7fffffe);

	return c < 64 ? (lo >> c) & 1 : c < 128 && ((hi >> (c - 64)) & 1);
}

/* A byte allowed inside a field value: HTAB, SP, VCHAR, obs-text. */
static inline bool http_is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static inline bool http_is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Walking a head kept as text (a stored response, say): the length of the
 * line at P, its LF included, or all up to END for a last one without. */
static inline size_t http_line_len(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));
	return lf ? (size_t)(lf + 1 - p) : (size_t)(end - p);
}

/* Whether the field line LINE[0, LEN) is named NAME (lower case). */
static inline bool http_line_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

#endif
