/*
 * chunked.h - the chunked transfer coding (RFC 9112 §7.1), checked as it
 * streams past.
 *
 * The proxy relays a chunked body as it came (never re-encoded) and runs it
 * through a struct http_chunked to know where the message ends and to refuse
 * one that is malformed: a chunk size that is not 1 to 16 hex digits or does
 * not fit in 63 bits, whitespace other than the BWS the grammar allows,
 * extensions that are not token[=token / quoted-string], a missing CRLF after
 * a chunk's data, a bare CR or LF, trailer fields that would not pass as
 * header fields, or a trailer section past its limit. Pure and resumable: the
 * decoder keeps its own state between calls and never looks back at bytes
 * it has consumed, so the buffer can be released after each call.
 */
#ifndef FULCRUM_HTTP_CHUNKED_H
#define FULCRUM_HTTP_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#include "core/http/parser.h"

#define HTTP_CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions */

enum http_chunked_state {
	HTTP_CHUNK_SIZE, /* hex digits of a chunk size */
	HTTP_CHUNK_SIZE_WS, /* whitespace after the size: only ';' may follow */
	HTTP_CHUNK_EXT_PRE_NAME, /* after ';' */
	HTTP_CHUNK_EXT_NAME,
	HTTP_CHUNK_EXT_NAME_WS, /* whitespace after a name: '=' or ';' next */
	HTTP_CHUNK_EXT_PRE_VALUE, /* after '=' */
	HTTP_CHUNK_EXT_VALUE, /* a token value */
	HTTP_CHUNK_EXT_QUOTED, /* inside a quoted-string value */
	HTTP_CHUNK_EXT_QUOTED_PAIR, /* after a backslash in it */
	HTTP_CHUNK_EXT_AFTER_VALUE, /* after a quoted-string's closing quote */
	HTTP_CHUNK_EXT_VALUE_WS, /* whitespace after a value: ';' next */
	HTTP_CHUNK_SIZE_LF, /* the chunk line's CR was seen */
	HTTP_CHUNK_DATA,
	HTTP_CHUNK_DATA_CR, /* the CRLF that must follow a chunk's data */
	HTTP_CHUNK_DATA_LF,
	HTTP_CHUNK_TRAILER_START, /* a trailer field line, or the final CRLF */
	HTTP_CHUNK_TRAILER_NAME,
	HTTP_CHUNK_TRAILER_VALUE,
	HTTP_CHUNK_TRAILER_LF,
	HTTP_CHUNK_FINAL_LF,
	HTTP_CHUNK_DONE,
	HTTP_CHUNK_ERROR,
	HTTP_CHUNK_STATE_COUNT,
};

/*
 * One chunked body being decoded. Owned by the connection that relays the
 * body and touched by its worker only; plain data, set up by
 * http_chunked_init(), nothing to free.
 */
struct http_chunked {
	enum http_chunked_state state;
	enum http_result error; /* in HTTP_CHUNK_ERROR: what went wrong */
	uint64_t size; /* the chunk size read so far */
	uint64_t left; /* in HTTP_CHUNK_DATA: payload bytes still to come */
	unsigned int digits; /* hex digits of the size so far */
	size_t line_len; /* bytes of the current chunk-size line */
	size_t trailer_len; /* bytes of the trailer section so far */
	size_t max_trailer; /* limit of trailer_len */
};

const char *http_chunked_state_name(enum http_chunked_state s);

/* Start a body; max_trailer_size 0 means HTTP_DEFAULT_HEADER_SIZE. */
void http_chunked_init(struct http_chunked *c, size_t max_trailer_size);

/*
 * Consume buf[0, len): framing bytes, and at most one run of payload bytes,
 * which is then the last *data_len bytes of the *used consumed (0 if none).
 * Returns
 *  - HTTP_NEED_MORE: the body goes on; when *used < len, call again with
 *    buf + *used (this happens after a run of payload);
 *  - HTTP_DONE: the body ended with the last of the *used bytes; the bytes
 *    after it belong to the next message (and later calls answer DONE, 0);
 *  - an error (HTTP_E_BAD_CHUNK_SIZE, ...): *used bytes were valid, the next
 *    one is not; later calls answer the same error.
 */
enum http_result http_chunked_feed(struct http_chunked *c, const char *buf, size_t len,
				   size_t *used, size_t *data_len);

/*
 * Payload bytes of the current chunk still to come (0 outside a chunk's data).
 * The proxy may move that many bytes without looking at them (splice) and
 * then report them with http_chunked_skip(c, n), n <= that count.
 */
uint64_t http_chunked_data_left(const struct http_chunked *c);
void http_chunked_skip(struct http_chunked *c, uint64_t n);

#endif
