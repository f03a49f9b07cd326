/*
 * reply.h - the responses fulcrum writes itself (SPEC §3 "Errors fulcrum
 * produces itself"): a status line, a short text body, and Connection: close
 * when the connection will be closed after it.
 */
#ifndef FULCRUM_HTTP_REPLY_H
#define FULCRUM_HTTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* "Sun, 06 Nov 1994 08:49:37 GMT" and its NUL. */
#define HTTP_DATE_SIZE 30

const char *http_status_text(int status);
/* The Date field's value for now (RFC 9110 §6.6.1 IMF-fixdate). */
void http_date_now(char out[HTTP_DATE_SIZE]);
/* Formats a complete response into BUF, dated DATE (http_date_now);
 * returns its length. HEAD: the same head without the body. */
size_t http_reply_format(char *buf, size_t cap, int status, bool close, bool head, const char *date,
			 const char *extra_headers);

#endif
