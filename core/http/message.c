/*
 * message.c - what a parsed head means for the message around it: how its
 * body is framed (RFC 9112 §6.3), whether the connection stays open, which
 * fields are hop-by-hop, and the field lookups the proxy needs. Pure code,
 * any thread; the parsing itself is in parser.c.
 */
#include "core/http/parser.h"

#include <string.h>

enum http_body http_request_body(const struct http_head *req)
{
	if (req->chunked)
		return HTTP_BODY_CHUNKED;
	return req->content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
}

enum http_body http_response_body(const struct http_head *resp, enum http_method req_method)
{
	int s = resp->status;

	if (s == 101 || (req_method == HTTP_M_CONNECT && s >= 200 && s < 300))
		return HTTP_BODY_TUNNEL;
	if (req_method == HTTP_M_HEAD || s < 200 || s == 204 || s == 304)
		return HTTP_BODY_NONE;
	if (resp->chunked)
		return HTTP_BODY_CHUNKED;
	if (resp->has_te)
		return HTTP_BODY_UNTIL_CLOSE;
	if (resp->content_length >= 0)
		return resp->content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	return HTTP_BODY_UNTIL_CLOSE;
}

bool http_is_keep_alive(const struct http_head *h)
{
	if (h->conn_close)
		return false;
	return h->version_minor == 1 || h->conn_keep_alive;
}

bool http_client_keep_alive(const struct http_head *h, const char *buf, bool proxy)
{
	int i;

	if (!proxy || h->conn_close || h->conn_keep_alive ||
	    (i = http_header_find(h, buf, "proxy-connection", 0)) < 0)
		return http_is_keep_alive(h);
	const struct http_header *hd = &h->headers[i];
	const char *el;
	size_t el_len, pos = 0;
	bool ka = h->version_minor == 1;
	while (http_list_next(buf + hd->value.off, hd->value.len, &pos, &el, &el_len)) {
		if (http_token_eq(el, el_len, "close"))
			return false;
		if (http_token_eq(el, el_len, "keep-alive"))
			ka = true;
	}
	return ka;
}

bool http_method_is_idempotent(enum http_method m)
{
	switch (m) {
	case HTTP_M_GET:
	case HTTP_M_HEAD:
	case HTTP_M_PUT:
	case HTTP_M_DELETE:
	case HTTP_M_OPTIONS:
	case HTTP_M_TRACE:
		return true;
	default:
		return false;
	}
}

bool http_header_is_hop_by_hop(const struct http_header *hd)
{
	switch (hd->id) {
	case HTTP_H_CONNECTION:
	case HTTP_H_KEEP_ALIVE:
	case HTTP_H_PROXY_CONNECTION:
	case HTTP_H_TE:
	case HTTP_H_TRAILER:
	case HTTP_H_UPGRADE:
		return true;
	default:
		return false;
	}
}

int http_header_find(const struct http_head *h, const char *buf, const char *name,
		     unsigned int from)
{
	size_t n = strlen(name);

	for (unsigned int i = from; i < h->header_count; i++) {
		const struct http_header *hd = &h->headers[i];

		if (hd->name.len == n && http_case_eq(buf + hd->name.off, name, n))
			return (int)i;
	}
	return -1;
}

bool http_list_next(const char *val, size_t len, size_t *pos, const char **elem, size_t *elem_len)
{
	size_t i = *pos, s, e;
	bool quoted = false;

	while (i < len && (http_is_ows(val[i]) || val[i] == ','))
		i++;
	if (i == len) {
		*pos = len;
		return false;
	}
	for (s = i; i < len; i++) {
		if (quoted && val[i] == '\\' && i + 1 < len)
			i++;
		else if (val[i] == '"')
			quoted = !quoted;
		else if (!quoted && val[i] == ',')
			break;
	}
	for (e = i; e > s && http_is_ows(val[e - 1]); e--)
		;
	*elem = val + s;
	*elem_len = e - s;
	*pos = i;
	return true;
}

bool http_connection_lists(const struct http_head *h, const char *buf, const char *name, size_t len)
{
	if (h->conn_options == 0)
		return false; /* only close, keep-alive or upgrade: no field named */
	for (unsigned int i = 0; i < h->header_count; i++) {
		const struct http_header *hd = &h->headers[i];
		const char *el;
		size_t el_len, pos = 0;

		if (hd->id != HTTP_H_CONNECTION)
			continue;
		while (http_list_next(buf + hd->value.off, hd->value.len, &pos, &el, &el_len))
			if (el_len == len && http_case_eq(el, name, len))
				return true;
	}
	return false;
}
