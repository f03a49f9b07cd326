/*
 * fuzz_json.c - libFuzzer target for the admin API's JSON reader
 * (core/json.c), which reads bodies from the network.
 *
 * Input: the body, in an allocation of exactly its size so that any read
 * past the end is caught. When the reader accepts it, every decoded string
 * must be well-formed UTF-8 without NUL (what /status later prints), every
 * key must be found again by json_get, and a second read must agree.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "core/json.h"

/* An independent check of RFC 3629 well-formedness, table-free. */
static int utf8_ok(const unsigned char *s)
{
	while (*s) {
		unsigned c = *s, n = c < 0x80	 ? 0
				     : c >= 0xf0 ? 3
				     : c >= 0xe0 ? 2
				     : c >= 0xc0 ? 1
						 : 9;
		if (n == 9)
			return 0;
		unsigned cp = n == 0 ? c : c & (0x3f >> n);
		for (unsigned i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i] & 0x3f);
		}
		static const unsigned min[] = {0, 0x80, 0x800, 0x10000};
		if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		s += n + 1;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	struct json_object a, b;
	const char *why = NULL;

	CHECK(buf != NULL);
	memcpy(buf, data, size);
	int rc = json_parse_object(buf, size, &a, &why);
	CHECK(rc == 0 || why != NULL);
	if (rc == 0) {
		CHECK(a.n <= JSON_MAX_MEMBERS);
		for (size_t i = 0; i < a.n; i++) {
			CHECK(json_get(&a, a.m[i].key) == &a.m[i]);
			if (a.m[i].type == JSON_STRING)
				CHECK(utf8_ok((const unsigned char *)a.m[i].str));
		}
		CHECK(json_parse_object(buf, size, &b, &why) == 0 && b.n == a.n);
	}
	free(buf);
	return 0;
}
