/*
 * reply.h - the responses fulcrum writes itself (SPEC §3 "Errors fulcrum
 * produces itself"): a status line, a short text body, and Connection: close
 * when the connection will be closed after it.
 */
#ifndef FULCRUM_HTTP_REPLY_H
#define FULCRUM_HTTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

const char *http_status_text(int status);
/* Formats a complete response into BUF; returns its length. HEAD: the same
 * head without the body. */
size_t http_reply_format(char *buf, size_t cap, int status, bool close, bool head,
			 const char *extra_headers);

#endif
