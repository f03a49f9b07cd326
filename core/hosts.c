/*
 * hosts.c - the hosts file as a hash table (see hosts.h). Main thread
 * builds, anyone reads.
 *
 * Each line is an address and the names it has; a name on several lines
 * (or with both an IPv4 and an IPv6 address) gathers every address, in file
 * order, up to DNS_MAX_ADDRS (more marks it truncated, as a DNS answer
 * would be). The index is open addressing over a power of two at least
 * twice the number of names, with FNV-1a: the table is built before the
 * process's hash seed exists, and the file is the operator's, not a
 * client's.
 */
#include "core/hosts.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct host_entry {
	char *name;
	union dns_addr *addrs;
	uint8_t n, cap;
	bool truncated;
};

struct hosts {
	struct host_entry *entries;
	size_t n, cap;
	uint32_t *index; /* entry number + 1; 0 = empty */
	size_t index_size; /* a power of two */
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* The slot of NAME in the index: its entry's, or the empty one it would
 * take. */
static uint32_t *slot_of(const struct hosts *h, const char *name)
{
	size_t mask = h->index_size - 1;

	for (size_t i = fnv1a(name) & mask;; i = (i + 1) & mask) {
		uint32_t *slot = &h->index[i];
		if (*slot == 0 || strcmp(h->entries[*slot - 1].name, name) == 0)
			return slot;
	}
}

static int grow_index(struct hosts *h)
{
	size_t size = h->index_size ? h->index_size * 2 : 1024;
	uint32_t *index = calloc(size, sizeof(*index));

	if (!index)
		return -ENOMEM;
	free(h->index);
	h->index = index;
	h->index_size = size;
	for (size_t e = 0; e < h->n; e++)
		*slot_of(h, h->entries[e].name) = (uint32_t)(e + 1);
	return 0;
}

static struct host_entry *entry_for(struct hosts *h, const char *name)
{
	if ((h->n + 1) * 2 > h->index_size && grow_index(h) < 0)
		return NULL;
	uint32_t *slot = slot_of(h, name);
	if (*slot)
		return &h->entries[*slot - 1];
	if (h->n == UINT32_MAX - 1)
		return NULL;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 256;
		struct host_entry *e = realloc(h->entries, cap * sizeof(*e));
		if (!e)
			return NULL;
		h->entries = e;
		h->cap = cap;
	}
	struct host_entry *e = &h->entries[h->n];
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(name)))
		return NULL;
	*slot = (uint32_t)++h->n;
	return e;
}

static int add_addr(struct host_entry *e, const union dns_addr *a)
{
	for (unsigned i = 0; i < e->n; i++)
		if (dns_same_addr(&e->addrs[i], a))
			return 0;
	if (e->n == DNS_MAX_ADDRS) {
		e->truncated = true;
		return 0;
	}
	if (e->n == e->cap) {
		uint8_t cap = e->cap ? (uint8_t)(e->cap * 2) : 2;
		union dns_addr *addrs = realloc(e->addrs, cap * sizeof(*addrs));
		if (!addrs)
			return -ENOMEM;
		e->addrs = addrs;
		e->cap = cap;
	}
	e->addrs[e->n++] = *a;
	return 0;
}

/* An address as the file writes it; a zone (fe80::1%eth0) is dropped. */
static bool parse_addr(char *s, union dns_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, &a->in.sin_addr) == 1) {
		a->in.sin_family = AF_INET;
		return true;
	}
	char *zone = strchr(s, '%');
	if (zone)
		*zone = '\0';
	if (inet_pton(AF_INET6, s, &a->in6.sin6_addr) == 1) {
		a->in6.sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/* One line: "ADDRESS NAME [NAME...] [# comment]". */
static int add_line(struct hosts *h, char *line)
{
	static const char blank[] = " \t\r\n";
	char *hash = strchr(line, '#'), *save;
	union dns_addr a;

	if (hash)
		*hash = '\0';
	char *tok = strtok_r(line, blank, &save);
	if (!tok || !parse_addr(tok, &a))
		return 0;
	while ((tok = strtok_r(NULL, blank, &save))) {
		size_t len = strlen(tok);
		if (len && tok[len - 1] == '.')
			tok[--len] = '\0';
		if (len == 0 || len > DNS_NAME_MAX)
			continue;
		for (size_t i = 0; i < len; i++)
			tok[i] = (char)tolower((unsigned char)tok[i]);
		struct host_entry *e = entry_for(h, tok);
		if (!e || add_addr(e, &a) < 0)
			return -ENOMEM;
	}
	return 0;
}

int hosts_load(struct hosts **out)
{
	const char *path = getenv("FULCRUM_HOSTS_FILE");
	struct hosts *h = calloc(1, sizeof(*h));
	int err = 0;

	*out = NULL;
	if (!h || grow_index(h) < 0) {
		free(h);
		return -ENOMEM;
	}
	FILE *f = fopen(path && *path ? path : "/etc/hosts", "re");
	if (!f) {
		if (errno != ENOENT) {
			hosts_free(h);
			return -errno;
		}
		*out = h;
		return 0;
	}
	char *line = NULL;
	size_t cap = 0;
	while (!err && getline(&line, &cap, f) >= 0)
		err = add_line(h, line);
	if (!err && ferror(f))
		err = -EIO;
	free(line);
	fclose(f);
	if (err) {
		hosts_free(h);
		return err;
	}
	*out = h;
	return 0;
}

void hosts_free(struct hosts *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++) {
		free(h->entries[i].name);
		free(h->entries[i].addrs);
	}
	free(h->entries);
	free(h->index);
	free(h);
}

static bool is_localhost(const char *name)
{
	size_t len = strlen(name);

	return strcmp(name, "localhost") == 0 ||
	       (len > 10 && strcmp(name + len - 10, ".localhost") == 0);
}

bool hosts_find(const struct hosts *h, const char *name, struct dns_answer *ans)
{
	const uint32_t *slot = h ? slot_of(h, name) : NULL;

	memset(ans, 0, sizeof(*ans));
	if (slot && *slot) {
		const struct host_entry *e = &h->entries[*slot - 1];
		ans->n = e->n;
		ans->truncated = e->truncated;
		memcpy(ans->addrs, e->addrs, e->n * sizeof(*e->addrs));
		return true;
	}
	if (!is_localhost(name))
		return false;
	ans->n = 2;
	ans->addrs[0].in.sin_family = AF_INET;
	ans->addrs[0].in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ans->addrs[1].in6.sin6_family = AF_INET6;
	ans->addrs[1].in6.sin6_addr = in6addr_loopback;
	return true;
}
