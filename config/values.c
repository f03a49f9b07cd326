/*
 * values.c - parsers for single configuration values: durations, sizes,
 * booleans, bounded integers, addresses, names; the name tables of the
 * config enums.
 *
 * Pure functions except cfg_parse_addr (which may block in getaddrinfo) and
 * cfg_file_unreadable (which opens the file). Called on the main thread while
 * loading, and by the admin API on its thread.
 */
#include "config/config.h"
#include "config/loader.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * Reads one or more decimal digits at *P into *OUT and advances *P.
 * No sign, no blanks, no overflow. Returns 0 or -EINVAL.
 */
static int parse_digits(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
			return -EINVAL;
	}
	*p = s;
	*out = v;
	return 0;
}

/* "250ms", "2s", "1m", "1h", "1d" (as HAProxy and nginx take it); a bare
 * number is seconds. */
int cfg_parse_duration_ms(const char *s, uint64_t *out_ms)
{
	static const struct {
		const char *suffix;
		uint64_t ms;
	} units[] = {
		{"", 1000},	  {"ms", 1},	      {"s", 1000},
		{"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000},
	};
	uint64_t v;

	if (parse_digits(&s, &v) < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s, units[i].suffix) != 0)
			continue;
		if (__builtin_mul_overflow(v, units[i].ms, out_ms))
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

/* "512", "16k", "256m", "1g" (or K, M, G); powers of 1024; a bare number is bytes. */
int cfg_parse_size(const char *s, uint64_t *out_bytes)
{
	uint64_t v;
	unsigned int shift;

	if (parse_digits(&s, &v) < 0)
		return -EINVAL;
	switch (*s) {
	case '\0':
		shift = 0;
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (shift && s[1] != '\0')
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out_bytes = v << shift;
	return 0;
}

/* on/off, yes/no, true/false, 1/0, in any case. */
int cfg_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"on", "yes", "true", "1"};
	static const char *const no[] = {"off", "no", "false", "0"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* A decimal integer in [LO, HI]; an optional leading '-' only. */
int cfg_parse_int(const char *s, long long lo, long long hi, long long *out)
{
	bool neg = false;
	uint64_t v;

	if (*s == '-') {
		neg = true;
		s++;
	}
	if (parse_digits(&s, &v) < 0 || *s != '\0' || v > (uint64_t)INT64_MAX)
		return -EINVAL;
	long long n = neg ? -(long long)v : (long long)v;
	if (n < lo || n > hi)
		return -EINVAL;
	*out = n;
	return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	long long v;

	if (cfg_parse_int(s, 0, 65535, &v) < 0 || *s == '-')
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* Writes IN to OUT under one spelling of its file: slashes merged, "./"
 * segments dropped, so that two binds of one socket compare equal. ".." is
 * kept: through a symbolic link it is not the parent. Never longer. */
static size_t tidy_path(const char *in, char *out)
{
	size_t o = 0;

	for (size_t i = 0; in[i]; i++) {
		if (in[i] == '/' && o > 0 && out[o - 1] == '/')
			continue;
		if (in[i] == '.' && in[i + 1] == '/' && (o == 0 || out[o - 1] == '/')) {
			while (in[i + 1] == '/')
				i++; /* and its slashes */
			continue;
		}
		out[o++] = in[i];
	}
	out[o] = '\0';
	return o;
}

static int parse_unix(const char *path, struct cfg_addr *out, char *why, size_t why_len)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
	char tidy[PATH_MAX];
	size_t len = strlen(path);

	/* The limit applies to the path as it will be bound: tidied. */
	if (len < sizeof(tidy))
		len = tidy_path(path, tidy);
	if (len == 0 || len >= sizeof(sun->sun_path)) {
		snprintf(why, why_len, "%s", len ? "unix path too long" : "empty unix path");
		return -EINVAL;
	}
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, tidy, len + 1);
	out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	return 0;
}

/* Resolves HOST (a name or literal; blocking) and stores it with PORT. */
static int resolve(const char *host, bool v6_literal, uint16_t port, struct cfg_addr *out,
		   char *why, size_t why_len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	int rc;

	hints.ai_family = v6_literal ? AF_INET6 : AF_UNSPEC;
	hints.ai_flags = v6_literal ? AI_NUMERICHOST : 0;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		snprintf(why, why_len, "cannot resolve %s (%s)", host, gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	if (out->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&out->ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&out->ss)->sin_port = htons(port);
	return 0;
}

/* Splits "HOST:PORT" or "[V6]:PORT" (in the copy BUF) and resolves it. */
static int parse_inet(char *buf, struct cfg_addr *out, char *why, size_t why_len)
{
	char *host = buf, *colon;
	bool v6 = false;
	uint16_t port;

	if (*buf == '[') {
		char *close = strchr(buf, ']');
		if (!close || close[1] != ':') {
			snprintf(why, why_len, "expected [IPv6]:PORT");
			return -EINVAL;
		}
		*close = '\0';
		host = buf + 1;
		colon = close + 1;
		v6 = true;
	} else {
		colon = strrchr(buf, ':');
		if (!colon) {
			snprintf(why, why_len, "missing :PORT");
			return -EINVAL;
		}
		*colon = '\0';
		if (strchr(host, ':')) {
			snprintf(why, why_len, "IPv6 addresses need brackets, as in [::1]:80");
			return -EINVAL;
		}
	}
	if (*host == '\0') {
		snprintf(why, why_len, "missing host");
		return -EINVAL;
	}
	if (parse_port(colon + 1, &port) < 0) {
		snprintf(why, why_len, "bad port \"%s\"", colon + 1);
		return -EINVAL;
	}
	return resolve(host, v6, port, out, why, why_len);
}

int cfg_parse_addr_why(const char *s, struct cfg_addr *out, char *why, size_t why_len)
{
	char *buf;
	int rc;

	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) == 0) {
		rc = parse_unix(s + 5, out, why, why_len);
	} else {
		buf = strdup(s);
		if (!buf) {
			snprintf(why, why_len, "out of memory");
			return -ENOMEM;
		}
		rc = parse_inet(buf, out, why, why_len);
		free(buf);
	}
	if (rc < 0)
		return rc;
	out->text = strdup(s);
	if (!out->text) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int cfg_parse_bind_why(const char *s, struct cfg_addr *out, char *why, size_t why_len)
{
	char any[64];

	if (strncmp(s, "*:", 2) != 0) {
		int rc = cfg_parse_addr_why(s, out, why, why_len);
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&out->ss;
		/* fulcrum's IPv6 sockets are IPv6-only: bind(2) would refuse it. */
		if (rc == 0 && out->ss.ss_family == AF_INET6 &&
		    IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
			cfg_addr_free(out);
			snprintf(why, why_len,
				 "an IPv4-mapped address cannot be bound (IPv6 listeners "
				 "are IPv6-only): bind the IPv4 address");
			return -EINVAL;
		}
		return rc;
	}
	/* HAProxy's spelling of every IPv4 address; the text stays as written. */
	if (snprintf(any, sizeof(any), "0.0.0.0:%s", s + 2) >= (int)sizeof(any)) {
		snprintf(why, why_len, "bad port \"%s\"", s + 2);
		return -EINVAL;
	}
	int rc = cfg_parse_addr_why(any, out, why, why_len);
	if (rc < 0)
		return rc;
	char *text = strdup(s);
	if (!text) {
		cfg_addr_free(out);
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	free(out->text);
	out->text = text;
	return 0;
}

int cfg_parse_addr(const char *s, struct cfg_addr *out)
{
	char why[256];

	return cfg_parse_addr_why(s, out, why, sizeof(why)) < 0 ? -EINVAL : 0;
}

void cfg_addr_free(struct cfg_addr *a)
{
	free(a->text);
	a->text = NULL;
}

/* Same family, address and port (or the same unix path). */
bool cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static bool is_any(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static in_port_t port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_port;
	return ((const struct sockaddr_in6 *)ss)->sin6_port;
}

bool cfg_addr_overlaps(const struct cfg_addr *a, const struct cfg_addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family)
		return false; /* IPv6 sockets are bound IPV6_V6ONLY */
	if (a->ss.ss_family == AF_UNIX)
		return cfg_addr_equal(a, b);
	if (port_of(&a->ss) == 0 || port_of(&a->ss) != port_of(&b->ss))
		return false;
	return is_any(&a->ss) || is_any(&b->ss) || cfg_addr_equal(a, b);
}

/* Trial division: table sizes are at most a few million, so this is quick. */
bool cfg_is_prime(uint64_t n)
{
	if (n < 2)
		return false;
	if (n % 2 == 0)
		return n == 2;
	for (uint64_t d = 3; d * d <= n; d += 2) {
		if (n % d == 0)
			return false;
	}
	return true;
}

bool cfg_is_host_name(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > 253 || s[0] == '.' || s[0] == '-')
		return false;
	for (; *s; s++) {
		if (*s == '.') {
			if (label == 0)
				return false; /* an empty label */
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

bool cfg_is_name(const char *s)
{
	/* "." and ".." would be path segments of admin URLs that clients
	 * collapse: such a pool or server could not be reached there. */
	if (*s == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
			return false;
	}
	return true;
}

bool cfg_is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	}
	return true;
}

bool cfg_is_visible(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	}
	return true;
}

bool cfg_is_field_value(const char *s)
{
	for (; *s; s++) {
		if (((unsigned char)*s < ' ' && *s != '\t') || *s == 0x7f)
			return false;
	}
	return true;
}

const char *cfg_file_unreadable(const char *path)
{
	struct stat st;
	/* Non-blocking: opening a FIFO for reading waits for a writer. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	const char *why = NULL;

	if (fd < 0)
		return strerror(errno);
	if (fstat(fd, &st) < 0)
		why = strerror(errno);
	else if (S_ISDIR(st.st_mode))
		why = strerror(EISDIR);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	close(fd);
	return why;
}

const char *cfg_balance_name(enum cfg_balance b)
{
	static const char *const names[] = {
		[BAL_ROUNDROBIN] = "roundrobin",
		[BAL_LEASTCONN] = "leastconn",
		[BAL_RANDOM] = "random",
		[BAL_P2C] = "p2c",
		[BAL_SOURCE] = "source",
		[BAL_MAGLEV] = "maglev",
		[BAL_RING] = "ring",
	};

	if ((unsigned int)b >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[b];
}

const char *cfg_mode_name(enum cfg_mode m)
{
	static const char *const names[] = {
		[MODE_TCP] = "tcp",
		[MODE_HTTP] = "http",
		[MODE_FORWARD] = "forward",
	};

	if ((unsigned int)m >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[m];
}
