/*
 * sbuf.c - growable text buffers and their escapers (see sbuf.h). Any
 * thread, one buffer per thread.
 */
#include "core/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

void sbuf_init(struct sbuf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

void sbuf_free(struct sbuf *b)
{
	free(b->data);
	sbuf_init(b);
}

/* Room for N more bytes and the NUL. */
static bool reserve(struct sbuf *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void sbuf_puts(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];

	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		sbuf_add(b, small, (size_t)n);
		return;
	}
	if (!reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sbuf_json_str(struct sbuf *b, const char *s)
{
	sbuf_add(b, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		switch (ch) {
		case '"':
			sbuf_add(b, "\\\"", 2);
			break;
		case '\\':
			sbuf_add(b, "\\\\", 2);
			break;
		case '\n':
			sbuf_add(b, "\\n", 2);
			break;
		case '\r':
			sbuf_add(b, "\\r", 2);
			break;
		case '\t':
			sbuf_add(b, "\\t", 2);
			break;
		default:
			if (ch < 0x20 || ch == 0x7f) {
				sbuf_printf(b, "\\u%04x", ch);
			} else if (ch < 0x80) {
				sbuf_add(b, s, 1);
			} else {
				/* A name from the file may hold any byte: only
				 * well-formed UTF-8 goes out as it is. */
				const unsigned char *p = (const unsigned char *)s;
				size_t k = json_utf8_len(p, p + strnlen(s, 4));
				if (k) {
					sbuf_add(b, s, k);
					s += k - 1;
				} else {
					sbuf_printf(b, "\\u%04x", ch);
				}
			}
		}
	}
	sbuf_add(b, "\"", 1);
}

void sbuf_label(struct sbuf *b, const char *s)
{
	sbuf_add(b, "\"", 1);
	for (; *s; s++) {
		if (*s == '\\')
			sbuf_add(b, "\\\\", 2);
		else if (*s == '"')
			sbuf_add(b, "\\\"", 2);
		else if (*s == '\n')
			sbuf_add(b, "\\n", 2);
		else
			sbuf_add(b, s, 1);
	}
	sbuf_add(b, "\"", 1);
}
