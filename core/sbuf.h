/*
 * sbuf.h - a growable text buffer for building responses (admin API,
 * /metrics), with the escaping JSON strings and Prometheus label values
 * need.
 *
 * An allocation failure sets `oom`; later appends then do nothing, so a
 * builder checks once at the end instead of after every append. Owned by
 * whoever declared it; one thread.
 */
#ifndef FULCRUM_SBUF_H
#define FULCRUM_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *data; /* NUL-terminated while not oom; NULL until the first append */
	size_t len, cap;
	bool oom;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_add(struct sbuf *b, const char *s, size_t n);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* S as a JSON string, quotes included (RFC 8259 §7 escapes). */
void sbuf_json_str(struct sbuf *b, const char *s);
/* S as a Prometheus label value, quotes included: \\, \" and \n escaped. */
void sbuf_label(struct sbuf *b, const char *s);

#endif
