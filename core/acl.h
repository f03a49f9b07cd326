/*
 * acl.h - the destination patterns of forward listeners (SPEC §2 allow and
 * deny): compiled once when the configuration is loaded, matched by workers.
 *
 * A pattern is a host part and an optional port part:
 *   *                     any destination
 *   example.com           that name (case-insensitive, a trailing dot ignored)
 *   *.example.com         a glob: each * matches any run of characters, dots
 *                         included, so this is every subdomain at any depth
 *                         but not example.com itself
 *   10.0.0.0/8  1.2.3.4   IPv4 CIDR; an address alone is a /32
 *   [2001:db8::/32] [::1] IPv6 CIDR in brackets; an address alone is a /128
 *   ...:443  ...:8000-8100  ...:*   the ports it applies to (none = any)
 * A bare IPv6 address (two or more colons, no brackets) is accepted when it
 * has no port.
 *
 * Decisions (SPEC §2): deny wins over allow; with no allow pattern
 * everything not denied is allowed. Allow patterns match the destination as
 * the client asked for it: names match names, address patterns match
 * literal addresses. Deny patterns match that too, and a deny address
 * pattern also matches every address the name resolves to - the caller asks
 * acl_denies_addr() for each. An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * is matched as the IPv4 address it carries, so it cannot slip past an IPv4
 * deny, and the unspecified address (0.0.0.0, ::), which connects to this
 * host, is denied by whatever denies loopback (127.0.0.1, ::1) as well.
 *
 * Pure code: no I/O. An acl is built by the main thread and read-only after
 * that; any thread may match against it.
 */
#ifndef FULCRUM_ACL_H
#define FULCRUM_ACL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum acl_list { ACL_ALLOW, ACL_DENY };

struct acl;

struct acl *acl_new(void);
void acl_free(struct acl *a);

/* Compiles PATTERN into the allow or deny list of A. Returns 0, -ENOMEM, or
 * -EINVAL with *WHY set to a static explanation. */
int acl_add(struct acl *a, enum acl_list list, const char *pattern, const char **why);

/* Whether A lets a client reach HOST (a name, or a literal address without
 * brackets, as asked) on PORT, before resolution. A NULL acl allows all. */
bool acl_allows(const struct acl *a, const char *host, uint16_t port);

/* Whether a deny pattern of A matches the resolved address SA (AF_INET or
 * AF_INET6) on PORT. */
bool acl_denies_addr(const struct acl *a, const struct sockaddr *sa, uint16_t port);

/* Whether A has any allow pattern (then everything else is refused). */
bool acl_has_allow(const struct acl *a);
/* Whether A has a deny pattern that acl_denies_addr can match on PORT. */
bool acl_has_addr_deny(const struct acl *a, uint16_t port);

#endif
