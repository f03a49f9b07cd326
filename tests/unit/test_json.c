/*
 * test_json.c - the strict flat-object JSON reader (core/json.c) and the
 * escapers of core/sbuf.c.
 *
 * Table-driven: each row is a body the admin API could get, with whether it
 * must be accepted; accepted rows also name one member to check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/json.h"
#include "core/sbuf.h"

struct row {
	const char *text;
	bool ok;
	const char *key; /* a member to look at, for ok rows */
	enum json_type type;
	const char *str;
	long long num;
};

static const struct row rows[] = {
	{"{\"weight\": 3}", true, "weight", JSON_INT, NULL, 3},
	{" \r\n\t{ \"weight\" :0 } \n", true, "weight", JSON_INT, NULL, 0},
	{"{\"weight\": -12}", true, "weight", JSON_INT, NULL, -12},
	{"{}", true, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"s4\", \"address\": \"10.0.0.4:80\", \"weight\": 1}", true, "address",
	 JSON_STRING, "10.0.0.4:80", 0},
	{"{\"name\": \"a\\\"b\\\\c\\/d\\n\"}", true, "name", JSON_STRING, "a\"b\\c/d\n", 0},
	{"{\"name\": \"\\u00e9\\ud83d\\ude00\"}", true, "name", JSON_STRING,
	 "\xc3\xa9\xf0\x9f\x98\x80", 0},
	{"{\"backup\": true}", true, "backup", JSON_BOOL, NULL, 0},
	{"", false, NULL, JSON_INT, NULL, 0},
	{"[]", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": 3,}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": 3} x", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": 3}{}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": 3.5}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": 1e3}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": 03}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": -}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": 1234567890123456789}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": null}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": [1]}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": {\"a\": 1}}", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\" 3}", false, NULL, JSON_INT, NULL, 0},
	{"{weight: 3}", false, NULL, JSON_INT, NULL, 0},
	{"{'weight': 3}", false, NULL, JSON_INT, NULL, 0},
	{"{\"a\": 1, \"a\": 2}", false, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"a\nb\"}", false, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"a\\xb\"}", false, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"\\u12\"}", false, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"\\u0000\"}", false, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"\\ud83d\"}", false, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"\\ude00\"}", false, NULL, JSON_INT, NULL, 0},
	{"{\"name\": \"abc", false, NULL, JSON_INT, NULL, 0},
	{"{\"weight\": tru}", false, NULL, JSON_INT, NULL, 0},
	{"{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9}", false, NULL,
	 JSON_INT, NULL, 0},
};

Test(json, table)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		struct json_object o;
		const char *why = NULL;
		int rc = json_parse_object(w->text, strlen(w->text), &o, &why);

		cr_assert_eq(rc == 0, w->ok, "row %zu %s: rc %d (%s)", i, w->text, rc,
			     why ? why : "-");
		if (!w->ok) {
			cr_assert_not_null(why, "row %zu: no reason", i);
			continue;
		}
		if (!w->key)
			continue;
		const struct json_member *m = json_get(&o, w->key);
		cr_assert_not_null(m, "row %zu: no member %s", i, w->key);
		cr_assert_eq(m->type, w->type, "row %zu: type", i);
		if (w->type == JSON_STRING)
			cr_assert_str_eq(m->str, w->str, "row %zu", i);
		if (w->type == JSON_INT)
			cr_assert_eq(m->num, w->num, "row %zu", i);
		if (w->type == JSON_BOOL)
			cr_assert(m->b, "row %zu", i);
	}
}

Test(json, string_too_long)
{
	char body[600];
	struct json_object o;
	const char *why;

	strcpy(body, "{\"name\": \"");
	memset(body + 10, 'a', 300);
	strcpy(body + 310, "\"}");
	cr_assert_eq(json_parse_object(body, strlen(body), &o, &why), -EINVAL);
}

Test(sbuf, escapes)
{
	struct sbuf b;

	sbuf_init(&b);
	sbuf_json_str(&b, "a\"b\\c\nd\x01");
	cr_assert_str_eq(b.data, "\"a\\\"b\\\\c\\nd\\u0001\"");
	sbuf_free(&b);
	sbuf_label(&b, "x\"y\\z\nw");
	cr_assert_str_eq(b.data, "\"x\\\"y\\\\z\\nw\"");
	sbuf_printf(&b, "%0300d", 7);
	cr_assert_eq(b.len, 12 + 300);
	cr_assert(!b.oom);
	sbuf_free(&b);
}
