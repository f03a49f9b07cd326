/*
 * acl.c - compiling and matching forward-proxy destination patterns (see
 * acl.h). Pure; compiled on the main thread, matched on workers.
 *
 * Rules are kept in two flat arrays in file order. Matching is a linear scan:
 * ACLs are short, and a scan over a few dozen rules costs less than the
 * connect that follows it.
 */
#include "core/acl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define ACL_NAME_MAX 253

enum rule_kind { RK_ANY, RK_NAME, RK_GLOB, RK_NET4, RK_NET6 };

/* One compiled pattern. NAME is lower-case without a trailing dot. */
struct acl_rule {
	enum rule_kind kind;
	char *name;
	uint8_t net[16]; /* network-order address, host bits zero */
	uint8_t prefix; /* bits */
	uint16_t port_lo, port_hi;
};

struct acl_rules {
	struct acl_rule *v;
	size_t n;
};

struct acl {
	struct acl_rules allow, deny;
};

struct acl *acl_new(void)
{
	return calloc(1, sizeof(struct acl));
}

static void rules_free(struct acl_rules *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].name);
	free(r->v);
}

void acl_free(struct acl *a)
{
	if (!a)
		return;
	rules_free(&a->allow);
	rules_free(&a->deny);
	free(a);
}

bool acl_has_allow(const struct acl *a)
{
	return a && a->allow.n > 0;
}

bool acl_has_addr_deny(const struct acl *a, uint16_t port)
{
	for (size_t i = 0; a && i < a->deny.n; i++) {
		const struct acl_rule *r = &a->deny.v[i];
		if ((r->kind == RK_NET4 || r->kind == RK_NET6 || r->kind == RK_ANY) &&
		    port >= r->port_lo && port <= r->port_hi)
			return true;
	}
	return false;
}

/* ---- compiling -------------------------------------------------------- */

static int parse_port(const char *s, size_t len, uint16_t *out)
{
	unsigned long v = 0;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* "443", "8000-8100" or "*". */
static int parse_ports(const char *s, struct acl_rule *r, const char **why)
{
	const char *dash = strchr(s, '-');

	*why = "bad port (expected N, lo-hi or *)";
	if (strcmp(s, "*") == 0) {
		r->port_lo = 0;
		r->port_hi = 65535;
		return 0;
	}
	if (!dash) {
		if (parse_port(s, strlen(s), &r->port_lo) < 0)
			return -EINVAL;
		r->port_hi = r->port_lo;
		return 0;
	}
	if (parse_port(s, (size_t)(dash - s), &r->port_lo) < 0 ||
	    parse_port(dash + 1, strlen(dash + 1), &r->port_hi) < 0)
		return -EINVAL;
	if (r->port_hi < r->port_lo) {
		*why = "bad port range (lo is above hi)";
		return -EINVAL;
	}
	return 0;
}

/* The first 12 bytes of an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2). */
static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* An address with an optional /prefix: FAMILY AF_INET or AF_INET6. */
static int parse_net(const char *s, int family, struct acl_rule *r, const char **why)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned max = family == AF_INET ? 32 : 128;
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long prefix = max;

	*why = family == AF_INET ? "bad IPv4 address or prefix" : "bad IPv6 address or prefix";
	if (alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(family, buf, r->net) != 1)
		return -EINVAL;
	if (slash) {
		char *end;
		if (!isdigit((unsigned char)slash[1]))
			return -EINVAL;
		prefix = strtoul(slash + 1, &end, 10);
		if (*end || prefix > max)
			return -EINVAL;
	}
	r->prefix = (uint8_t)prefix;
	r->kind = family == AF_INET ? RK_NET4 : RK_NET6;
	for (unsigned bit = (unsigned)prefix; bit < max; bit++) {
		if (r->net[bit / 8] & (0x80 >> (bit % 8))) {
			*why = "address has bits set past its prefix length";
			return -EINVAL;
		}
	}
	/* Destinations are matched with v4-mapped addresses unwrapped
	 * (set_addr6), so a pattern inside ::ffff:0:0/96 is the IPv4 one. */
	if (r->kind == RK_NET6 && prefix >= 96 &&
	    memcmp(r->net, v4_mapped, sizeof(v4_mapped)) == 0) {
		memmove(r->net, r->net + 12, 4);
		memset(r->net + 4, 0, 12);
		r->prefix = (uint8_t)(prefix - 96);
		r->kind = RK_NET4;
	}
	return 0;
}

static bool is_name_char(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '*';
}

/* A name or a glob: lower-cased, one trailing dot dropped. */
static int parse_name(const char *s, struct acl_rule *r, const char **why)
{
	size_t len = strlen(s);

	*why = "bad host pattern (expected a name, a *.glob, an address or a CIDR)";
	if (len && s[len - 1] == '.')
		len--;
	if (len == 0 || len > ACL_NAME_MAX || s[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (!is_name_char((unsigned char)s[i]))
			return -EINVAL;
		/* Labels are not empty and neither start nor end with '-'
		 * (RFC 1123 §2.1); one '*' stands for any run. */
		bool starts = i == 0 || s[i - 1] == '.', ends = i + 1 == len || s[i + 1] == '.';
		if ((s[i] == '.' && starts) || (s[i] == '-' && (starts || ends)) ||
		    (s[i] == '*' && i + 1 < len && s[i + 1] == '*'))
			return -EINVAL;
	}
	r->name = malloc(len + 1);
	if (!r->name)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		r->name[i] = (char)tolower((unsigned char)s[i]);
	r->name[len] = '\0';
	r->kind = memchr(s, '*', len) ? RK_GLOB : RK_NAME;
	return 0;
}

/* Splits PAT (writable) into host and port parts; *PORT is NULL when none.
 * *BRACKETED: the host was in [ ]. */
static int split_pattern(char *pat, char **host, char **port, bool *bracketed)
{
	char *colon;

	*port = NULL;
	*bracketed = pat[0] == '[';
	if (*bracketed) {
		char *close = strchr(pat, ']');
		if (!close || (close[1] && close[1] != ':'))
			return -EINVAL;
		*close = '\0';
		*host = pat + 1;
		if (close[1] == ':')
			*port = close + 2;
		return 0;
	}
	*host = pat;
	colon = strchr(pat, ':');
	if (colon && strchr(colon + 1, ':'))
		return 0; /* a bare IPv6 address, no port */
	if (colon) {
		*colon = '\0';
		*port = colon + 1;
	}
	return 0;
}

/* Whether bare IPv6 HOST could be meant as ADDRESS:PORT ("::1:443",
 * "2001:db8::1:8080"): its last group is a decimal port and what comes
 * before it is an address too. Brackets say which is meant. */
static bool port_like_tail(const char *host)
{
	const char *colon = strrchr(host, ':');
	char head[INET6_ADDRSTRLEN];
	uint8_t addr[16];
	size_t n = colon ? (size_t)(colon - host) : 0;
	size_t digits = colon ? strlen(colon + 1) : 0;

	if (!colon || digits == 0 || digits > 5 || strspn(colon + 1, "0123456789") != digits ||
	    n >= sizeof(head))
		return false;
	memcpy(head, host, n);
	head[n] = '\0';
	return inet_pton(AF_INET6, head, addr) == 1;
}

static int compile(const char *pattern, struct acl_rule *r, const char **why)
{
	char *copy = strdup(pattern), *host, *port;
	bool bracketed;
	int err;

	if (!copy)
		return -ENOMEM;
	memset(r, 0, sizeof(*r));
	r->port_hi = 65535;
	*why = "bad pattern";
	err = split_pattern(copy, &host, &port, &bracketed);
	if (!err && port)
		err = parse_ports(port, r, why);
	if (err)
		goto out;
	if (!bracketed && strchr(host, ':') && port_like_tail(host)) {
		*why = "an IPv6 address and a port need brackets ([2001:db8::1]:443), and "
		       "so does an address ending in a number ([2001:db8::1:443])";
		err = -EINVAL;
	} else if (bracketed || strchr(host, ':')) {
		err = parse_net(host, AF_INET6, r, why);
	} else if (strcmp(host, "*") == 0)
		r->kind = RK_ANY;
	else if (strspn(host, "0123456789./") == strlen(host))
		err = parse_net(host, AF_INET, r, why);
	else
		err = parse_name(host, r, why);
out:
	free(copy);
	return err;
}

int acl_add(struct acl *a, enum acl_list list, const char *pattern, const char **why)
{
	struct acl_rules *rs = list == ACL_ALLOW ? &a->allow : &a->deny;
	struct acl_rule r, *grown;
	int err = compile(pattern, &r, why);

	if (err)
		return err;
	grown = realloc(rs->v, (rs->n + 1) * sizeof(*rs->v));
	if (!grown) {
		free(r.name);
		return -ENOMEM;
	}
	rs->v = grown;
	rs->v[rs->n++] = r;
	return 0;
}

/* ---- matching --------------------------------------------------------- */

/* The destination as asked, normalised once per check. */
struct target {
	const char *name; /* lower-case is not guaranteed: compared ignoring case */
	size_t name_len;
	int family; /* AF_INET or AF_INET6 for a literal address, else 0 */
	uint8_t addr[16];
	uint16_t port;
};

/* Sets T's address from a 16-byte IPv6 address, unwrapping v4-mapped ones. */
static void set_addr6(struct target *t, const uint8_t *a6)
{
	if (memcmp(a6, v4_mapped, sizeof(v4_mapped)) == 0) {
		t->family = AF_INET;
		memcpy(t->addr, a6 + 12, 4);
	} else {
		t->family = AF_INET6;
		memcpy(t->addr, a6, 16);
	}
}

/* Glob match ignoring case: '*' matches any run of characters. Iterative,
 * with one backtrack point, so it is linear for patterns with one star and
 * never recursive. */
static bool glob_match(const char *p, const char *s, size_t slen)
{
	const char *star = NULL, *resume = NULL;
	size_t i = 0;

	while (i < slen) {
		if (*p == '*') {
			star = p++;
			resume = s + i;
		} else if (*p && *p == tolower((unsigned char)s[i])) {
			p++;
			i++;
		} else if (star) {
			p = star + 1;
			i = (size_t)(++resume - s);
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

static bool name_eq(const char *rule, const char *s, size_t len)
{
	if (strlen(rule) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (rule[i] != tolower((unsigned char)s[i]))
			return false;
	return true;
}

static bool net_match(const struct acl_rule *r, const uint8_t *addr)
{
	unsigned full = r->prefix / 8, rest = r->prefix % 8;

	if (memcmp(r->net, addr, full) != 0)
		return false;
	return rest == 0 || ((r->net[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool rule_matches(const struct acl_rule *r, const struct target *t)
{
	if (t->port < r->port_lo || t->port > r->port_hi)
		return false;
	switch (r->kind) {
	case RK_ANY:
		return true;
	case RK_NAME:
		return t->family == 0 && name_eq(r->name, t->name, t->name_len);
	case RK_GLOB:
		return t->family == 0 && glob_match(r->name, t->name, t->name_len);
	case RK_NET4:
		return t->family == AF_INET && net_match(r, t->addr);
	case RK_NET6:
		return t->family == AF_INET6 && net_match(r, t->addr);
	}
	return false;
}

static bool any_matches(const struct acl_rules *rs, const struct target *t, bool addr_only)
{
	for (size_t i = 0; i < rs->n; i++) {
		if (addr_only && (rs->v[i].kind == RK_NAME || rs->v[i].kind == RK_GLOB))
			continue;
		if (rule_matches(&rs->v[i], t))
			return true;
	}
	return false;
}

/* Whether a deny rule matches T. A connect to the unspecified address
 * (0.0.0.0, ::) reaches this host, so such a target is denied by what
 * denies the loopback address too. */
static bool denied(const struct acl *a, const struct target *t, bool addr_only)
{
	static const uint8_t zero[16];

	if (any_matches(&a->deny, t, addr_only))
		return true;
	if (!t->family || memcmp(t->addr, zero, t->family == AF_INET ? 4 : 16) != 0)
		return false;
	struct target lo = *t;
	if (t->family == AF_INET)
		memcpy(lo.addr, (const uint8_t[]){127, 0, 0, 1}, 4);
	else
		lo.addr[15] = 1;
	return any_matches(&a->deny, &lo, addr_only);
}

bool acl_allows(const struct acl *a, const char *host, uint16_t port)
{
	struct target t = {.name = host, .name_len = strlen(host), .port = port};
	uint8_t a6[16];

	if (!a)
		return true;
	if (inet_pton(AF_INET, host, t.addr) == 1)
		t.family = AF_INET;
	else if (inet_pton(AF_INET6, host, a6) == 1)
		set_addr6(&t, a6);
	else if (t.name_len && host[t.name_len - 1] == '.')
		t.name_len--;
	if (denied(a, &t, false))
		return false;
	return a->allow.n == 0 || any_matches(&a->allow, &t, false);
}

bool acl_denies_addr(const struct acl *a, const struct sockaddr *sa, uint16_t port)
{
	struct target t = {.name = "", .port = port};

	if (!a || a->deny.n == 0)
		return false;
	if (sa->sa_family == AF_INET) {
		t.family = AF_INET;
		memcpy(t.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		set_addr6(&t, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
	} else {
		return false;
	}
	return denied(a, &t, true);
}
