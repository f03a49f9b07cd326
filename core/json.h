/*
 * json.h - a strict reader for the small JSON bodies of the admin API: one
 * flat object whose members are strings, integers or booleans, such as
 * {"weight": 3} or {"name": "s4", "address": "10.0.0.4:80", "weight": 1}.
 *
 * Strict (RFC 8259): one object and only whitespace around it, no trailing
 * commas, no duplicate keys, strings with valid escapes and no control
 * bytes, integers without fraction, exponent or leading zeros. Anything
 * else (nested values, null, floats) is refused: the admin API answers 400.
 * Pure: no I/O, no allocation, no globals.
 */
#ifndef FULCRUM_JSON_H
#define FULCRUM_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_MEMBERS 8
#define JSON_MAX_KEY	 32 /* bytes, NUL included */
#define JSON_MAX_STR	 256 /* bytes, NUL included */

enum json_type { JSON_STRING, JSON_INT, JSON_BOOL };

struct json_member {
	char key[JSON_MAX_KEY];
	enum json_type type;
	char str[JSON_MAX_STR]; /* JSON_STRING, decoded (UTF-8), no NUL inside */
	long long num; /* JSON_INT */
	bool b; /* JSON_BOOL */
};

struct json_object {
	struct json_member m[JSON_MAX_MEMBERS];
	size_t n;
};

/* The length of the well-formed UTF-8 sequence of two to four bytes at P
 * (before END; RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF), or 0. Writers of JSON pass such sequences as they are and
 * escape any other byte at or above 0x80. */
size_t json_utf8_len(const unsigned char *p, const unsigned char *end);

/* Reads BUF (LEN bytes) into *OUT. Returns 0, or -EINVAL with *WHY set to a
 * short reason. */
int json_parse_object(const char *buf, size_t len, struct json_object *out, const char **why);

/* The member named KEY, or NULL. */
const struct json_member *json_get(const struct json_object *o, const char *key);

#endif
