/*
 * test_route.c - the path a route matches (core/http/route.c): percent
 * decoding, merged slashes, dot segments, the query left as it is.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/http/route.h"

static void expect(const char *in, const char *want)
{
	char out[256];
	size_t len = strlen(in);
	size_t n = route_path_normalize(in, len, out);
	cr_assert(n <= len, "\"%s\" grew to %zu bytes", in, n);
	cr_assert(n == strlen(want) && memcmp(out, want, n) == 0,
		  "\"%s\" gave \"%.*s\", want \"%s\"", in, (int)n, out, want);
}

Test(route, plain_paths_are_left_alone)
{
	expect("/", "/");
	expect("/a/b/c", "/a/b/c");
	expect("/a/b/", "/a/b/");
	expect("", "");
	expect("*", "*");
	expect("/a.b/.c/..d/...", "/a.b/.c/..d/...");
}

Test(route, percent_escapes_are_decoded)
{
	expect("/%61dmin", "/admin");
	expect("/%41%4a%6a", "/AJj");
	expect("/a%2Fb", "/a/b");
	expect("/a%20b", "/a b");
	/* Not an escape: kept as it is. */
	expect("/a%2", "/a%2");
	expect("/a%", "/a%");
	expect("/%zz/", "/%zz/");
	expect("/%%41", "/%A");
	/* Decoded once: "%2541" is "%41", not "A". */
	expect("/%2541", "/%41");
}

Test(route, slashes_are_merged)
{
	expect("//a///b//", "/a/b/");
	expect("/a%2F%2Fb", "/a/b");
}

Test(route, dot_segments_are_resolved)
{
	expect("/./a", "/a");
	expect("/a/./b", "/a/b");
	expect("/a/.", "/a/");
	expect("/a/b/../c", "/a/c");
	expect("/a/b/..", "/a/");
	expect("/a/..", "/");
	expect("/..", "/");
	expect("/../../a", "/a");
	expect("/a/%2e%2E/b", "/b");
	expect("/a/.%2e/b", "/b");
	expect("/a%2F..%2Fb", "/b");
	expect("/a/b/c/../../d", "/a/d");
}

Test(route, the_query_is_copied_as_it_is)
{
	expect("/a/../b?x=/../%41//", "/b?x=/../%41//");
	expect("?q", "?q");
	expect("/%3F/x?y", "/?/x?y");
}
