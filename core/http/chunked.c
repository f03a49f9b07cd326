/*
 * chunked.c - the chunked-body decoder: a byte-at-a-time state machine for
 * the framing, with payload runs taken in one piece.
 *
 * Pure code, run by the worker that owns the connection. Invariant: the
 * state alone says what the next byte may be; nothing before it is kept, so
 * bytes may arrive in pieces of any size with the same outcome.
 * Grammar (RFC 9112 §7.1):
 *   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *   last-chunk = 1*("0") [ chunk-ext ] CRLF, then trailer fields, CRLF
 */
#include "core/http/chunked.h"

static const char *const state_names[HTTP_CHUNK_STATE_COUNT] = {
	[HTTP_CHUNK_SIZE] = "size",
	[HTTP_CHUNK_SIZE_WS] = "size_ws",
	[HTTP_CHUNK_EXT_PRE_NAME] = "ext_pre_name",
	[HTTP_CHUNK_EXT_NAME] = "ext_name",
	[HTTP_CHUNK_EXT_NAME_WS] = "ext_name_ws",
	[HTTP_CHUNK_EXT_PRE_VALUE] = "ext_pre_value",
	[HTTP_CHUNK_EXT_VALUE] = "ext_value",
	[HTTP_CHUNK_EXT_QUOTED] = "ext_quoted",
	[HTTP_CHUNK_EXT_QUOTED_PAIR] = "ext_quoted_pair",
	[HTTP_CHUNK_EXT_AFTER_VALUE] = "ext_after_value",
	[HTTP_CHUNK_EXT_VALUE_WS] = "ext_value_ws",
	[HTTP_CHUNK_SIZE_LF] = "size_lf",
	[HTTP_CHUNK_DATA] = "data",
	[HTTP_CHUNK_DATA_CR] = "data_cr",
	[HTTP_CHUNK_DATA_LF] = "data_lf",
	[HTTP_CHUNK_TRAILER_START] = "trailer_start",
	[HTTP_CHUNK_TRAILER_NAME] = "trailer_name",
	[HTTP_CHUNK_TRAILER_VALUE] = "trailer_value",
	[HTTP_CHUNK_TRAILER_LF] = "trailer_lf",
	[HTTP_CHUNK_FINAL_LF] = "final_lf",
	[HTTP_CHUNK_DONE] = "done",
	[HTTP_CHUNK_ERROR] = "error",
};

const char *http_chunked_state_name(enum http_chunked_state s)
{
	if ((unsigned int)s >= HTTP_CHUNK_STATE_COUNT || !state_names[s])
		return "unknown";
	return state_names[s];
}

void http_chunked_init(struct http_chunked *c, size_t max_trailer_size)
{
	*c = (struct http_chunked){
		.state = HTTP_CHUNK_SIZE,
		.error = HTTP_DONE,
		.max_trailer = max_trailer_size ? max_trailer_size : HTTP_DEFAULT_HEADER_SIZE,
	};
}

static int hex_value(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Move to s and accept the byte. */
static enum http_result go(struct http_chunked *c, enum http_chunked_state s)
{
	c->state = s;
	return HTTP_NEED_MORE;
}

/* The hex digits of the size, and what may directly follow them. */
static enum http_result step_size(struct http_chunked *c, unsigned char ch)
{
	int v = hex_value(ch);

	if (v >= 0) {
		if (++c->digits > 16 || c->size > (UINT64_C(1) << 59) - 1)
			return HTTP_E_BAD_CHUNK_SIZE;
		c->size = c->size * 16 + (uint64_t)v;
		return HTTP_NEED_MORE;
	}
	if (ch == '\n')
		return HTTP_E_BARE_LF;
	if (c->digits == 0)
		return HTTP_E_BAD_CHUNK_SIZE;
	if (ch == '\r')
		return go(c, HTTP_CHUNK_SIZE_LF);
	if (ch == ';')
		return go(c, HTTP_CHUNK_EXT_PRE_NAME);
	if (http_is_ows(ch))
		return go(c, HTTP_CHUNK_SIZE_WS);
	return HTTP_E_BAD_CHUNK_SIZE;
}

/* Inside a quoted-string extension value. */
static enum http_result step_quoted(struct http_chunked *c, unsigned char ch)
{
	if (!http_is_field_char(ch))
		return ch == '\n' ? HTTP_E_BARE_LF : HTTP_E_BAD_CHUNK_EXT;
	if (c->state == HTTP_CHUNK_EXT_QUOTED_PAIR)
		return go(c, HTTP_CHUNK_EXT_QUOTED);
	if (ch == '\\')
		return go(c, HTTP_CHUNK_EXT_QUOTED_PAIR);
	if (ch == '"')
		return go(c, HTTP_CHUNK_EXT_AFTER_VALUE);
	return HTTP_NEED_MORE;
}

/*
 * Chunk extensions, after the size. BWS may come before ';' and around '=',
 * never at the end of the line.
 */
static enum http_result step_ext(struct http_chunked *c, unsigned char ch)
{
	enum http_chunked_state s = c->state;
	bool ws = http_is_ows(ch), tchar = http_is_tchar(ch);

	if (s == HTTP_CHUNK_EXT_QUOTED || s == HTTP_CHUNK_EXT_QUOTED_PAIR)
		return step_quoted(c, ch);
	if (ch == '\n')
		return HTTP_E_BARE_LF;
	if (ch == ';' && s != HTTP_CHUNK_EXT_PRE_NAME && s != HTTP_CHUNK_EXT_PRE_VALUE)
		return go(c, HTTP_CHUNK_EXT_PRE_NAME);
	switch (s) {
	case HTTP_CHUNK_SIZE_WS:
		return ws ? HTTP_NEED_MORE : HTTP_E_BAD_CHUNK_SIZE;
	case HTTP_CHUNK_EXT_PRE_NAME:
	case HTTP_CHUNK_EXT_PRE_VALUE:
		if (ws)
			return HTTP_NEED_MORE;
		if (tchar)
			return go(c, s == HTTP_CHUNK_EXT_PRE_NAME ? HTTP_CHUNK_EXT_NAME
								  : HTTP_CHUNK_EXT_VALUE);
		if (ch == '"' && s == HTTP_CHUNK_EXT_PRE_VALUE)
			return go(c, HTTP_CHUNK_EXT_QUOTED);
		return HTTP_E_BAD_CHUNK_EXT;
	case HTTP_CHUNK_EXT_NAME:
	case HTTP_CHUNK_EXT_VALUE:
	case HTTP_CHUNK_EXT_AFTER_VALUE:
		if (tchar && s != HTTP_CHUNK_EXT_AFTER_VALUE)
			return HTTP_NEED_MORE;
		if (ch == '\r')
			return go(c, HTTP_CHUNK_SIZE_LF);
		break;
	default:
		break;
	}
	if (ch == '=' && (s == HTTP_CHUNK_EXT_NAME || s == HTTP_CHUNK_EXT_NAME_WS))
		return go(c, HTTP_CHUNK_EXT_PRE_VALUE);
	if (ws && (s == HTTP_CHUNK_EXT_NAME || s == HTTP_CHUNK_EXT_NAME_WS))
		return go(c, HTTP_CHUNK_EXT_NAME_WS);
	if (ws)
		return go(c, HTTP_CHUNK_EXT_VALUE_WS);
	return HTTP_E_BAD_CHUNK_EXT;
}

/* The LF of the chunk-size line: data follows, or the trailer after "0". */
static enum http_result step_size_lf(struct http_chunked *c, unsigned char ch)
{
	if (ch != '\n')
		return HTTP_E_BARE_CR;
	if (c->size == 0)
		return go(c, HTTP_CHUNK_TRAILER_START);
	c->left = c->size;
	return go(c, HTTP_CHUNK_DATA);
}

/* The CRLF after a chunk's data; then the next chunk-size line. */
static enum http_result step_data_end(struct http_chunked *c, unsigned char ch)
{
	if (c->state == HTTP_CHUNK_DATA_CR) {
		if (ch == '\r')
			return go(c, HTTP_CHUNK_DATA_LF);
		return ch == '\n' ? HTTP_E_BARE_LF : HTTP_E_BAD_CHUNK_END;
	}
	if (ch != '\n')
		return HTTP_E_BARE_CR;
	c->size = 0;
	c->digits = 0;
	c->line_len = 0;
	return go(c, HTTP_CHUNK_SIZE);
}

/* Trailer fields, checked like header fields (parser.c), then the final CRLF. */
static enum http_result step_trailer(struct http_chunked *c, unsigned char ch)
{
	if (++c->trailer_len > c->max_trailer)
		return HTTP_E_TRAILER_TOO_LARGE;
	switch (c->state) {
	case HTTP_CHUNK_TRAILER_START:
		if (ch == '\r')
			return go(c, HTTP_CHUNK_FINAL_LF);
		if (http_is_tchar(ch))
			return go(c, HTTP_CHUNK_TRAILER_NAME);
		if (http_is_ows(ch))
			return HTTP_E_OBS_FOLD;
		return ch == '\n' ? HTTP_E_BARE_LF : HTTP_E_BAD_TRAILER;
	case HTTP_CHUNK_TRAILER_NAME:
		if (http_is_tchar(ch))
			return HTTP_NEED_MORE;
		if (ch == ':')
			return go(c, HTTP_CHUNK_TRAILER_VALUE);
		return http_is_ows(ch) ? HTTP_E_SPACE_BEFORE_COLON : HTTP_E_BAD_TRAILER;
	case HTTP_CHUNK_TRAILER_VALUE:
		if (ch == '\r')
			return go(c, HTTP_CHUNK_TRAILER_LF);
		if (http_is_field_char(ch))
			return HTTP_NEED_MORE;
		return ch == '\n' ? HTTP_E_BARE_LF : HTTP_E_BAD_TRAILER;
	case HTTP_CHUNK_TRAILER_LF:
		return ch == '\n' ? go(c, HTTP_CHUNK_TRAILER_START) : HTTP_E_BARE_CR;
	default: /* HTTP_CHUNK_FINAL_LF */
		if (ch != '\n')
			return HTTP_E_BARE_CR;
		c->state = HTTP_CHUNK_DONE;
		return HTTP_DONE;
	}
}

/* One framing byte: HTTP_NEED_MORE (taken), HTTP_DONE (taken, body over), or an error. */
static enum http_result step(struct http_chunked *c, unsigned char ch)
{
	switch (c->state) {
	case HTTP_CHUNK_SIZE:
		if (++c->line_len > HTTP_CHUNK_LINE_MAX)
			return HTTP_E_BAD_CHUNK_EXT;
		return step_size(c, ch);
	case HTTP_CHUNK_SIZE_WS:
	case HTTP_CHUNK_EXT_PRE_NAME:
	case HTTP_CHUNK_EXT_NAME:
	case HTTP_CHUNK_EXT_NAME_WS:
	case HTTP_CHUNK_EXT_PRE_VALUE:
	case HTTP_CHUNK_EXT_VALUE:
	case HTTP_CHUNK_EXT_QUOTED:
	case HTTP_CHUNK_EXT_QUOTED_PAIR:
	case HTTP_CHUNK_EXT_AFTER_VALUE:
	case HTTP_CHUNK_EXT_VALUE_WS:
		if (++c->line_len > HTTP_CHUNK_LINE_MAX)
			return HTTP_E_BAD_CHUNK_EXT;
		return step_ext(c, ch);
	case HTTP_CHUNK_SIZE_LF:
		return step_size_lf(c, ch);
	case HTTP_CHUNK_DATA_CR:
	case HTTP_CHUNK_DATA_LF:
		return step_data_end(c, ch);
	default:
		return step_trailer(c, ch);
	}
}

enum http_result http_chunked_feed(struct http_chunked *c, const char *buf, size_t len,
				   size_t *used, size_t *data_len)
{
	enum http_result r = HTTP_NEED_MORE;
	size_t i = 0;

	*data_len = 0;
	if (c->state == HTTP_CHUNK_DONE || c->state == HTTP_CHUNK_ERROR) {
		*used = 0;
		return c->state == HTTP_CHUNK_DONE ? HTTP_DONE : c->error;
	}
	while (i < len && r == HTTP_NEED_MORE) {
		if (c->state == HTTP_CHUNK_DATA) {
			size_t n = len - i < c->left ? len - i : (size_t)c->left;

			http_chunked_skip(c, n);
			*data_len = n;
			i += n;
			break;
		}
		r = step(c, (unsigned char)buf[i]);
		if (r == HTTP_NEED_MORE || r == HTTP_DONE)
			i++;
	}
	*used = i;
	if (http_is_error(r)) {
		c->state = HTTP_CHUNK_ERROR;
		c->error = r;
	}
	return r;
}

uint64_t http_chunked_data_left(const struct http_chunked *c)
{
	return c->state == HTTP_CHUNK_DATA ? c->left : 0;
}

void http_chunked_skip(struct http_chunked *c, uint64_t n)
{
	if (c->state != HTTP_CHUNK_DATA)
		return;
	c->left -= n < c->left ? n : c->left;
	if (c->left == 0)
		c->state = HTTP_CHUNK_DATA_CR;
}
