/*
 * json.c - the strict flat-object JSON reader (see json.h). Any thread.
 *
 * A recursive-descent reader over (p, end) with one cursor; every function
 * returns false with the reason set on the first error.
 */
#include "core/json.h"

#include <errno.h>
#include <string.h>

struct reader {
	const char *p, *end;
	const char *why;
};

static bool err(struct reader *r, const char *why)
{
	if (!r->why)
		r->why = why;
	return false;
}

static void skip_ws(struct reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static bool expect(struct reader *r, char ch)
{
	skip_ws(r);
	if (r->p == r->end || *r->p != ch)
		return false;
	r->p++;
	return true;
}

static int hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* Appends code point CP as UTF-8 to OUT (*N bytes used of CAP). */
static bool put_utf8(char *out, size_t *n, size_t cap, long cp)
{
	char tmp[4];
	size_t k;

	if (cp < 0x80) {
		tmp[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		tmp[0] = (char)(0xc0 | cp >> 6);
		tmp[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		tmp[0] = (char)(0xe0 | cp >> 12);
		tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		tmp[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		tmp[0] = (char)(0xf0 | cp >> 18);
		tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		tmp[3] = (char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (*n + k >= cap)
		return false;
	memcpy(out + *n, tmp, k);
	*n += k;
	return true;
}

/* \uXXXX at r->p (after the backslash and 'u'), with a surrogate pair. */
static bool read_unicode(struct reader *r, char *out, size_t *n, size_t cap)
{
	if (r->end - r->p < 4)
		return err(r, "bad \\u escape");
	long cp = hex4(r->p);
	r->p += 4;
	if (cp < 0)
		return err(r, "bad \\u escape");
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return err(r, "lone surrogate in a string");
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
			return err(r, "lone surrogate in a string");
		long lo = hex4(r->p + 2);
		if (lo < 0xdc00 || lo > 0xdfff)
			return err(r, "lone surrogate in a string");
		r->p += 6;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp == 0)
		return err(r, "NUL in a string");
	return put_utf8(out, n, cap, cp) || err(r, "string too long");
}

static bool read_escape(struct reader *r, char *out, size_t *n, size_t cap)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";

	if (r->p == r->end)
		return err(r, "unterminated string");
	char c = *r->p++;
	if (c == 'u')
		return read_unicode(r, out, n, cap);
	const char *k = c ? strchr(from, c) : NULL;
	if (!k)
		return err(r, "bad escape in a string");
	if (*n + 1 >= cap)
		return err(r, "string too long");
	out[(*n)++] = to[k - from];
	return true;
}

size_t json_utf8_len(const unsigned char *p, const unsigned char *end)
{
	size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
	if (len == 0 || p[0] > 0xf4 || (size_t)(end - p) < len)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
		return 0;
	return len;
}

/* A string at r->p (after whitespace) into OUT (CAP bytes, NUL-terminated). */
static bool read_string(struct reader *r, char *out, size_t cap)
{
	size_t n = 0;

	if (!expect(r, '"'))
		return err(r, "expected a string");
	while (r->p < r->end && *r->p != '"') {
		unsigned char c = (unsigned char)*r->p++;
		if (c < 0x20)
			return err(r, "control byte in a string");
		if (c == '\\') {
			if (!read_escape(r, out, &n, cap))
				return false;
			continue;
		}
		if (c >= 0x80) {
			size_t k = json_utf8_len((const unsigned char *)r->p - 1,
						 (const unsigned char *)r->end);
			if (k == 0)
				return err(r, "invalid UTF-8 in a string");
			if (n + k >= cap)
				return err(r, "string too long");
			memcpy(out + n, r->p - 1, k);
			n += k;
			r->p += k - 1;
			continue;
		}
		if (n + 1 >= cap)
			return err(r, "string too long");
		out[n++] = (char)c;
	}
	if (r->p == r->end)
		return err(r, "unterminated string");
	r->p++;
	out[n] = '\0';
	return true;
}

static bool read_int(struct reader *r, long long *out)
{
	bool neg = false;
	long long v = 0;
	int digits = 0;

	if (*r->p == '-') {
		neg = true;
		r->p++;
	}
	if (r->p == r->end || *r->p < '0' || *r->p > '9')
		return err(r, "bad number");
	if (*r->p == '0' && r->p + 1 < r->end && r->p[1] >= '0' && r->p[1] <= '9')
		return err(r, "leading zero in a number");
	while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
		if (++digits > 18)
			return err(r, "number too large");
		v = v * 10 + (*r->p++ - '0');
	}
	if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E'))
		return err(r, "not an integer");
	*out = neg ? -v : v;
	return true;
}

static bool read_word(struct reader *r, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
		return false;
	r->p += n;
	return true;
}

static bool read_value(struct reader *r, struct json_member *m)
{
	skip_ws(r);
	if (r->p == r->end)
		return err(r, "expected a value");
	if (*r->p == '"') {
		m->type = JSON_STRING;
		return read_string(r, m->str, sizeof(m->str));
	}
	if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) {
		m->type = JSON_INT;
		return read_int(r, &m->num);
	}
	m->type = JSON_BOOL;
	if (read_word(r, "true")) {
		m->b = true;
		return true;
	}
	if (read_word(r, "false")) {
		m->b = false;
		return true;
	}
	return err(r, "values must be strings, integers or booleans");
}

static bool read_member(struct reader *r, struct json_object *o)
{
	struct json_member *m;

	if (o->n == JSON_MAX_MEMBERS)
		return err(r, "too many members");
	m = &o->m[o->n];
	memset(m, 0, sizeof(*m));
	if (!read_string(r, m->key, sizeof(m->key)))
		return false;
	if (json_get(o, m->key))
		return err(r, "duplicate key");
	if (!expect(r, ':'))
		return err(r, "expected ':'");
	if (!read_value(r, m))
		return false;
	o->n++;
	return true;
}

int json_parse_object(const char *buf, size_t len, struct json_object *out, const char **why)
{
	struct reader r = {buf, buf + len, NULL};

	out->n = 0;
	if (!expect(&r, '{')) {
		*why = "expected a JSON object";
		return -EINVAL;
	}
	if (!expect(&r, '}')) {
		do {
			if (!read_member(&r, out))
				goto bad;
		} while (expect(&r, ','));
		if (!expect(&r, '}')) {
			err(&r, "expected ',' or '}'");
			goto bad;
		}
	}
	skip_ws(&r);
	if (r.p != r.end) {
		err(&r, "bytes after the object");
		goto bad;
	}
	return 0;
bad:
	*why = r.why ? r.why : "malformed JSON";
	return -EINVAL;
}

const struct json_member *json_get(const struct json_object *o, const char *key)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->m[i].key, key) == 0)
			return &o->m[i];
	return NULL;
}
