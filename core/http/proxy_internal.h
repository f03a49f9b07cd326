/*
 * proxy_internal.h - the few steps of the http proxy (proxy.c) that forward
 * mode (forward.c) reuses. Not for other modules.
 *
 * Thread: the worker owning the connection.
 */
#ifndef FULCRUM_HTTP_PROXY_INTERNAL_H
#define FULCRUM_HTTP_PROXY_INTERNAL_H

#include <stdbool.h>

#include "core/http/proxy.h"

void http_set_phase(struct conn *c, enum http_phase p);

/* Answers the current request with STATUS (see reply() in proxy.c);
 * HEADERS, when not NULL, are extra CRLF-terminated lines for the head. */
void http_reply_ex(struct conn *c, int status, const char *reason, bool close, const char *headers);

/*
 * Builds the head that goes to the server from H (parsed from the read
 * buffer): the kept lines, closed up in place, then X-Forwarded-* when the
 * listener adds them, then LINES (CRLF-terminated, may be NULL). MORE adds
 * fields to drop (may be NULL). Sets head_start, head_end and req_extra.
 * Returns 0 or -ENOMEM.
 */
int http_build_request_head(struct conn *c, const struct http_head *h,
			    const struct rewrite_opts *more, const char *lines);

/* Connects to hc->server, or to a server of hc->pool picked by the
 * balancer, with the pool's retries; the request then goes out. */
void http_connect_server(struct conn *c);

#endif
