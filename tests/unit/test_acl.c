/*
 * test_acl.c - unit tests of core/acl.c: pattern syntax (accepted and refused,
 * with the reason), names, globs, IPv4 and IPv6 CIDR, port parts, deny over
 * allow, the no-allow default, and deny patterns applied to resolved
 * addresses (IPv4-mapped IPv6 included).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "core/acl.h"

/* An acl from two NULL-terminated lists; every pattern must compile. */
static struct acl *make(const char *const *allow, const char *const *deny)
{
	struct acl *a = acl_new();
	const char *why = NULL;

	cr_assert_not_null(a);
	for (size_t i = 0; allow && allow[i]; i++)
		cr_assert_eq(acl_add(a, ACL_ALLOW, allow[i], &why), 0, "allow %s: %s", allow[i],
			     why);
	for (size_t i = 0; deny && deny[i]; i++)
		cr_assert_eq(acl_add(a, ACL_DENY, deny[i], &why), 0, "deny %s: %s", deny[i], why);
	return a;
}

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, text, &in->sin_addr), 1);
	}
	return ss;
}

static bool denies(const struct acl *a, const char *text, uint16_t port)
{
	struct sockaddr_storage ss = addr(text);
	return acl_denies_addr(a, (const struct sockaddr *)&ss, port);
}

Test(acl, valid_patterns_compile)
{
	static const char *const ok[] = {
		"*",
		"*:*",
		"*:443",
		"*:8000-8100",
		"example.com",
		"Example.COM.",
		"*.example.com",
		"api-*.example.com:443",
		"under_score.example",
		"10.0.0.0/8",
		"169.254.169.254",
		"0.0.0.0/0",
		"1.2.3.4/32:22",
		"[2001:db8::/32]",
		"[2001:db8::/32]:443",
		"[::1]",
		"[::1]:*",
		"::1",
		"2001:db8::/32",
		"2001:db8::12",
		"fe80::abcd",
		"::ffff:10.0.0.1",
		"[::1:443]",
		"[fe80::1:2]",
		"[::/0]",
		"localhost:1-65535",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct acl *a = acl_new();
		const char *why = NULL;
		cr_expect_eq(acl_add(a, ACL_DENY, ok[i], &why), 0, "%s refused: %s", ok[i], why);
		acl_free(a);
	}
}

Test(acl, invalid_patterns_are_refused_with_a_reason)
{
	static const char *const bad[] = {
		"",
		":443",
		"example.com:",
		"example.com:0",
		"example.com:65536",
		"host:abc",
		"host:20-10",
		"host:1-",
		"10.0.0.0/33",
		"10.0.0.1/8",
		"300.1.1.1",
		"1.2.3",
		"[::1",
		"[::1]x",
		"[2001:db8::/129]",
		"[1.2.3.4]",
		"[::1]/8",
		"ex ample.com",
		"exa/mple.com",
		".example.com",
		"[::1]:",
		"10.0.0.0/",
		"host:*-5",
		"a:b:c:d:e:f:g:h:i",
		"**.example.com",
		"-bad.com",
		"bad-.example.com",
		"a..example.com",
		/* ADDRESS:PORT or one address? Brackets must say. */
		"::1:443",
		"2001:db8::1:8080",
		"fe80::1:2",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct acl *a = acl_new();
		const char *why = NULL;
		cr_expect_eq(acl_add(a, ACL_ALLOW, bad[i], &why), -EINVAL, "\"%s\" accepted",
			     bad[i]);
		cr_expect_not_null(why, "no reason for \"%s\"", bad[i]);
		acl_free(a);
	}
}

Test(acl, empty_and_null_allow_everything)
{
	struct acl *a = make(NULL, NULL);

	cr_expect(acl_allows(NULL, "example.com", 80));
	cr_expect(acl_allows(a, "example.com", 80));
	cr_expect(acl_allows(a, "10.1.2.3", 22));
	cr_expect(!denies(a, "10.1.2.3", 22));
	cr_expect(!acl_has_allow(a));
	acl_free(a);
}

Test(acl, any_allow_line_replaces_the_default)
{
	static const char *const allow[] = {"example.com", NULL};
	struct acl *a = make(allow, NULL);

	cr_expect(acl_has_allow(a));
	cr_expect(acl_allows(a, "example.com", 443));
	cr_expect(acl_allows(a, "EXAMPLE.com.", 443));
	cr_expect(!acl_allows(a, "www.example.com", 443));
	cr_expect(!acl_allows(a, "example.org", 443));
	cr_expect(!acl_allows(a, "93.184.216.34", 443));
	acl_free(a);
}

Test(acl, glob_matches_subdomains_at_any_depth_not_the_bare_domain)
{
	static const char *const allow[] = {"*.example.com", "api-*.test", NULL};
	struct acl *a = make(allow, NULL);

	cr_expect(acl_allows(a, "www.example.com", 80));
	cr_expect(acl_allows(a, "a.b.c.Example.Com", 80));
	cr_expect(!acl_allows(a, "example.com", 80));
	cr_expect(!acl_allows(a, "badexample.com", 80));
	cr_expect(!acl_allows(a, "www.example.com.evil.org", 80));
	cr_expect(acl_allows(a, "api-1.test", 80));
	cr_expect(acl_allows(a, "api-.test", 80));
	cr_expect(!acl_allows(a, "api.test", 80));
	acl_free(a);
}

Test(acl, names_do_not_match_addresses_and_back)
{
	static const char *const allow[] = {"localhost", "127.0.0.0/8", NULL};
	struct acl *a = make(allow, NULL);

	cr_expect(acl_allows(a, "localhost", 80));
	cr_expect(acl_allows(a, "127.0.0.1", 80));
	/* an address pattern does not allow a name, whatever it resolves to */
	cr_expect(!acl_allows(a, "vm", 80));
	acl_free(a);
}

Test(acl, ports)
{
	static const char *const allow[] = {"a.test:443", "b.test:8000-8100", "c.test:*", "d.test",
					    NULL};
	struct acl *a = make(allow, NULL);

	cr_expect(acl_allows(a, "a.test", 443));
	cr_expect(!acl_allows(a, "a.test", 444));
	cr_expect(acl_allows(a, "b.test", 8000));
	cr_expect(acl_allows(a, "b.test", 8100));
	cr_expect(!acl_allows(a, "b.test", 7999));
	cr_expect(!acl_allows(a, "b.test", 8101));
	cr_expect(acl_allows(a, "c.test", 1));
	cr_expect(acl_allows(a, "d.test", 65535));
	acl_free(a);
}

Test(acl, deny_wins_over_allow)
{
	static const char *const allow[] = {"*", NULL};
	static const char *const deny[] = {"secret.example.com", "*.internal", "10.0.0.0/8", "*:25",
					   NULL};
	struct acl *a = make(allow, deny);

	cr_expect(acl_allows(a, "www.example.com", 80));
	cr_expect(!acl_allows(a, "secret.example.com", 80));
	cr_expect(!acl_allows(a, "SECRET.example.com.", 80));
	cr_expect(!acl_allows(a, "db.internal", 5432));
	cr_expect(!acl_allows(a, "10.200.0.1", 80));
	cr_expect(acl_allows(a, "11.0.0.1", 80));
	cr_expect(!acl_allows(a, "mail.example.com", 25));
	acl_free(a);
}

Test(acl, ipv4_cidr_boundaries)
{
	static const char *const deny[] = {"192.168.4.0/22", "169.254.169.254", NULL};
	struct acl *a = make(NULL, deny);

	cr_expect(denies(a, "192.168.4.0", 80));
	cr_expect(denies(a, "192.168.7.255", 80));
	cr_expect(!denies(a, "192.168.8.0", 80));
	cr_expect(!denies(a, "192.168.3.255", 80));
	cr_expect(denies(a, "169.254.169.254", 80));
	cr_expect(!denies(a, "169.254.169.253", 80));
	acl_free(a);
}

Test(acl, ipv6_cidr_and_single_addresses)
{
	static const char *const deny[] = {"[2001:db8::/32]", "[::1]", "fe80::/10", NULL};
	struct acl *a = make(NULL, deny);

	cr_expect(denies(a, "2001:db8::1", 80));
	cr_expect(denies(a, "2001:db8:ffff::1", 80));
	cr_expect(!denies(a, "2001:db9::1", 80));
	cr_expect(denies(a, "::1", 80));
	cr_expect(!denies(a, "::2", 80));
	cr_expect(denies(a, "fe80::1", 80));
	cr_expect(denies(a, "febf::1", 80));
	cr_expect(!denies(a, "fec0::1", 80));
	cr_expect(!acl_allows(a, "2001:db8::5", 443));
	cr_expect(acl_allows(a, "2001:db9::5", 443));
	acl_free(a);
}

Test(acl, ipv4_mapped_ipv6_is_matched_as_ipv4)
{
	static const char *const deny[] = {"127.0.0.0/8", NULL};
	struct acl *a = make(NULL, deny);

	cr_expect(denies(a, "::ffff:127.0.0.1", 80));
	cr_expect(!acl_allows(a, "::ffff:127.0.0.1", 80));
	cr_expect(!denies(a, "::ffff:128.0.0.1", 80));
	acl_free(a);
}

Test(acl, ipv4_mapped_patterns_are_the_ipv4_ones)
{
	/* Patterns written in the mapped form match the IPv4 destination they
	 * carry, however the client or the resolver spelt it. */
	static const char *const deny[] = {"[::ffff:127.0.0.1]", "[::ffff:10.0.0.0/104]",
					   "[::ffff:192.168.0.0/112]:22", NULL};
	struct acl *a = make(NULL, deny);

	cr_expect(denies(a, "127.0.0.1", 80));
	cr_expect(denies(a, "::ffff:127.0.0.1", 80));
	cr_expect(!acl_allows(a, "127.0.0.1", 80));
	cr_expect(!acl_allows(a, "::ffff:127.0.0.1", 80));
	cr_expect(!denies(a, "127.0.0.2", 80));
	cr_expect(denies(a, "10.200.1.1", 443));
	cr_expect(!denies(a, "11.0.0.1", 443));
	cr_expect(denies(a, "192.168.3.4", 22));
	cr_expect(!denies(a, "192.168.3.4", 23));
	acl_free(a);

	static const char *const allow[] = {"[::ffff:0:0/96]", NULL};
	a = make(allow, NULL);
	cr_expect(acl_allows(a, "::ffff:127.0.0.1", 80));
	cr_expect(acl_allows(a, "8.8.8.8", 53));
	cr_expect(!acl_allows(a, "::1", 80));
	acl_free(a);
}

Test(acl, deny_addresses_after_resolution)
{
	/* allow = *.example.com plus deny = 10.0.0.0/8 stops a name that
	 * resolves into 10/8: the name passes, its address does not. */
	static const char *const allow[] = {"*.example.com", NULL};
	static const char *const deny[] = {"10.0.0.0/8", "*.bad.example.com", "[::1]:22", NULL};
	struct acl *a = make(allow, deny);

	cr_expect(acl_allows(a, "intranet.example.com", 80));
	cr_expect(denies(a, "10.1.2.3", 80));
	cr_expect(!denies(a, "93.184.216.34", 80));
	/* name patterns never match an address */
	cr_expect(!denies(a, "1.2.3.4", 80));
	cr_expect(!acl_allows(a, "x.bad.example.com", 80));
	/* ports apply to resolved addresses too */
	cr_expect(denies(a, "::1", 22));
	cr_expect(!denies(a, "::1", 23));
	acl_free(a);
}

Test(acl, deny_star_with_port_denies_addresses_on_that_port)
{
	static const char *const deny[] = {"*:25", NULL};
	struct acl *a = make(NULL, deny);

	cr_expect(denies(a, "1.2.3.4", 25));
	cr_expect(!denies(a, "1.2.3.4", 26));
	acl_free(a);
}

Test(acl, unspecified_address_is_denied_with_loopback)
{
	static const char *const deny[] = {"127.0.0.0/8", "[::1]", NULL};
	struct acl *a = make(NULL, deny);

	/* connect() to 0.0.0.0 or :: reaches this host */
	cr_expect(!acl_allows(a, "0.0.0.0", 80));
	cr_expect(!acl_allows(a, "::", 80));
	cr_expect(!acl_allows(a, "::ffff:0.0.0.0", 80));
	cr_expect(denies(a, "0.0.0.0", 80));
	cr_expect(denies(a, "::", 80));
	cr_expect(acl_allows(a, "0.0.0.1", 80));
	acl_free(a);

	static const char *const deny_other[] = {"10.0.0.0/8", NULL};
	a = make(NULL, deny_other);
	cr_expect(acl_allows(a, "0.0.0.0", 80));
	acl_free(a);
}
