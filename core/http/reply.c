/*
 * reply.c - fulcrum's own responses (see reply.h). Formatting only, and the
 * clock for their Date field.
 */
#include "core/http/reply.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The body is "STATUS TEXT\n". */
static size_t strlen_text(const char *text)
{
	return 4 + strlen(text) + 1;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 407:
		return "Proxy Authentication Required";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 416:
		return "Range Not Satisfiable";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

void http_date_now(char out[HTTP_DATE_SIZE])
{
	/* Formatted once a second per thread. strftime's %a and %b follow the
	 * locale; fulcrum never sets one, so they are the C locale's English
	 * names the field needs. */
	static _Thread_local char cached[HTTP_DATE_SIZE];
	static _Thread_local time_t cached_sec;
	time_t now = time(NULL);
	struct tm tm;

	if (now != cached_sec || !cached[0]) {
		if (!gmtime_r(&now, &tm) ||
		    strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
			cached[0] = '\0';
		cached_sec = now;
	}
	memcpy(out, cached, HTTP_DATE_SIZE);
}

size_t http_reply_format(char *buf, size_t cap, int status, bool close, bool head, const char *date,
			 const char *extra_headers)
{
	const char *text = http_status_text(status);
	/* A HEAD gets the head a GET would get, without the body (RFC 9110
	 * §9.3.2): a body would put a kept-alive connection out of step. */
	int n = snprintf(
		buf, cap,
		"HTTP/1.1 %d %s\r\n%s%s%sContent-Type: text/plain\r\nContent-Length: %zu\r\n"
		"%s%s\r\n",
		status, text, date && *date ? "Date: " : "", date ? date : "",
		date && *date ? "\r\n" : "", strlen_text(text),
		close ? "Connection: close\r\n" : "", extra_headers ? extra_headers : "");
	if (n >= 0 && !head && (size_t)n < cap)
		n += snprintf(buf + n, cap - (size_t)n, "%d %s\n", status, text);
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
