/*
 * test_hosts.c - unit tests of core/hosts.c: a hosts file read into a
 * table (comments, aliases, case, the root's dot, IPv6 with a zone, lines
 * that are not entries), a name gathering its addresses across lines in
 * file order without duplicates, the DNS_MAX_ADDRS cap marking an answer
 * truncated, localhost without an entry, and a missing file.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hosts.h"

static char path[] = "/tmp/fulcrum-hosts-XXXXXX";

/* A table read from TEXT through FULCRUM_HOSTS_FILE. */
static struct hosts *load(const char *text)
{
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	setenv("FULCRUM_HOSTS_FILE", path, 1);
	struct hosts *h = NULL;
	cr_assert_eq(hosts_load(&h), 0);
	unlink(path);
	strcpy(path, "/tmp/fulcrum-hosts-XXXXXX");
	cr_assert_not_null(h);
	return h;
}

static const char *text_of(const union dns_addr *a, char *buf)
{
	if (a->sa.sa_family == AF_INET)
		return inet_ntop(AF_INET, &a->in.sin_addr, buf, INET6_ADDRSTRLEN);
	return inet_ntop(AF_INET6, &a->in6.sin6_addr, buf, INET6_ADDRSTRLEN);
}

/* Asserts that NAME has exactly the addresses WANT (NULL-terminated). */
static void expect(const struct hosts *h, const char *name, const char *const *want)
{
	struct dns_answer a;
	char buf[INET6_ADDRSTRLEN];
	unsigned n = 0;

	cr_assert(hosts_find(h, name, &a), "%s not found", name);
	for (; want[n]; n++) {
		cr_assert_lt(n, a.n, "%s: %u addresses, want more", name, a.n);
		cr_assert_str_eq(text_of(&a.addrs[n], buf), want[n], "%s, address %u", name, n);
	}
	cr_assert_eq(a.n, n, "%s: %u addresses, want %u", name, a.n, n);
}

Test(hosts, entries_aliases_comments_and_case)
{
	struct hosts *h = load("# a comment line\n"
			       "127.0.0.1\tlocalhost\n"
			       "10.0.0.5  Web.Example.TEST  www.example.test. # trailing comment\n"
			       "   \n"
			       "not-an-address bogus.test\n"
			       "fe80::1%eth0 link.test\n"
			       "2001:db8::7 web.example.test\n"
			       "10.0.0.5 web.example.test\n"
			       "10.0.0.6 web.example.test");
	expect(h, "web.example.test",
	       (const char *[]){"10.0.0.5", "2001:db8::7", "10.0.0.6", NULL});
	expect(h, "www.example.test", (const char *[]){"10.0.0.5", NULL});
	expect(h, "link.test", (const char *[]){"fe80::1", NULL});
	expect(h, "localhost", (const char *[]){"127.0.0.1", NULL});
	struct dns_answer a;
	cr_assert_not(hosts_find(h, "bogus.test", &a));
	cr_assert_not(hosts_find(h, "not-an-address", &a));
	cr_assert_not(hosts_find(h, "example.test", &a));
	hosts_free(h);
}

Test(hosts, more_addresses_than_an_answer_holds_are_truncated)
{
	char text[64 * (DNS_MAX_ADDRS + 4)] = "";
	for (int i = 0; i < DNS_MAX_ADDRS + 3; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "10.1.0.%d many.test\n",
			 i + 1);
	struct hosts *h = load(text);
	struct dns_answer a;
	cr_assert(hosts_find(h, "many.test", &a));
	cr_assert_eq(a.n, DNS_MAX_ADDRS);
	cr_assert(a.truncated);
	hosts_free(h);

	h = load("10.1.0.1 few.test\n");
	cr_assert(hosts_find(h, "few.test", &a));
	cr_assert_not(a.truncated);
	hosts_free(h);
}

Test(hosts, localhost_is_loopback_without_an_entry)
{
	struct hosts *h = load("10.0.0.1 other.test\n");
	expect(h, "localhost", (const char *[]){"127.0.0.1", "::1", NULL});
	expect(h, "app.localhost", (const char *[]){"127.0.0.1", "::1", NULL});
	struct dns_answer a;
	cr_assert_not(hosts_find(h, "notlocalhost", &a));
	hosts_free(h);
	expect(NULL, "localhost", (const char *[]){"127.0.0.1", "::1", NULL});
}

Test(hosts, a_missing_file_is_an_empty_table)
{
	setenv("FULCRUM_HOSTS_FILE", "/tmp/fulcrum-no-such-hosts-file", 1);
	struct hosts *h = NULL;
	cr_assert_eq(hosts_load(&h), 0);
	cr_assert_not_null(h);
	struct dns_answer a;
	cr_assert_not(hosts_find(h, "anything.test", &a));
	hosts_free(h);
}

Test(hosts, many_names_grow_the_index)
{
	size_t cap = 20000 * 40, len = 0;
	char *text = malloc(cap);
	cr_assert_not_null(text);
	for (int i = 0; i < 20000; i++)
		len += (size_t)snprintf(text + len, cap - len, "10.%d.%d.1 n%d.test\n", i / 250,
					i % 250, i);
	struct hosts *h = load(text);
	free(text);
	char name[32], want[32];
	for (int i = 0; i < 20000; i += 997) {
		snprintf(name, sizeof(name), "n%d.test", i);
		snprintf(want, sizeof(want), "10.%d.%d.1", i / 250, i % 250);
		expect(h, name, (const char *[]){want, NULL});
	}
	hosts_free(h);
}
