/*
 * route.h - choosing the pool for a request (SPEC §2 [route]): the routes of
 * the listener in file order, first match wins, else the listener's pool.
 */
#ifndef FULCRUM_HTTP_ROUTE_H
#define FULCRUM_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/http/parser.h"

/* Whether HOST[0, LEN) (a Host value or an SNI name; a :port is ignored)
 * matches PATTERN: exact, or "*.suffix" for any depth of subdomain but not
 * the bare domain. Case-insensitive. */
bool route_host_matches(const char *pattern, const char *host, size_t len);
/* The length of HOST's name: without a :port and trailing dots. */
size_t route_host_len(const char *host, size_t len);

/* Whether the request H goes to the server with a "/" in front of its path:
 * an absolute-form target with an empty path ("http://x", "http://x?q") asks
 * for "/" (RFC 9112 §3.2.4), but for an OPTIONS ("OPTIONS *"). */
bool route_path_implies_slash(const struct http_head *h, const char *buf);

/* Writes PATH[0, LEN) to OUT as a server reads it, for matching: %XX
 * decoded, repeated slashes merged, "." and ".." segments resolved (RFC 3986
 * §5.2.4; ".." at the root stays there), as nginx matches its locations.
 * From a '?' on, the query is copied as it is. OUT holds LEN bytes: the
 * result is never longer. Returns its length. */
size_t route_path_normalize(const char *path, size_t len, char *out);

/* The pool index for the request HEAD (in BUF) on listener LISTENER, or -1
 * when no route matches and the listener has no pool. */
int route_http(const struct cfg *cfg, int listener, const struct http_head *head, const char *buf);

/* The pool index for a TLS connection whose ClientHello named SNI (NULL if
 * none), on a tcp listener. */
int route_sni(const struct cfg *cfg, int listener, const char *sni, size_t len);

#endif
