/*
 * hosts.c - the hosts file as a hash table (see hosts.h). Main thread
 * builds, anyone reads.
 *
 * Each line is an address and the names it has; a name on several lines
 * (or with both an IPv4 and an IPv6 address) gathers every address, in file
 * order, up to DNS_MAX_ADDRS (more marks it truncated, as a DNS answer
 * would be). Names, entries and addresses live in three growing blocks. The index is open
 * addressing over a power of two at least twice the number of names, with FNV-1a: the table is
 * built before the process's hash seed exists, and the file is the operator's, not a client's.
 */
#include "core/hosts.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A name's addresses are a chain through the addrs array (file order). */
struct host_entry {
	uint32_t name; /* offset in names */
	uint32_t first, last; /* in addrs; first valid while n > 0 */
	uint16_t n;
	bool truncated;
};

struct host_addr {
	union dns_addr addr;
	uint32_t next;
};

/* Four blocks, whatever the file's size: freeing a generation's table
 * (which the last thread to drop the generation does, a worker perhaps)
 * costs four calls to free, not one per name. */
struct hosts {
	struct host_entry *entries;
	size_t n, cap;
	char *names;
	size_t names_len, names_cap;
	struct host_addr *addrs;
	size_t n_addrs, addrs_cap;
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
		if (*slot == 0 || strcmp(h->names + h->entries[*slot - 1].name, name) == 0)
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
		*slot_of(h, h->names + h->entries[e].name) = (uint32_t)(e + 1);
	return 0;
}

/* Makes room for MORE items of SIZE bytes in the block *V of *CAP items
 * holding LEN. */
static int reserve(void **v, size_t *cap, size_t len, size_t more, size_t size)
{
	if (len + more <= *cap)
		return 0;
	size_t want = *cap ? *cap : 256;
	while (want < len + more)
		want *= 2;
	if (want > UINT32_MAX)
		return -ENOMEM; /* offsets are 32 bits */
	void *grown = realloc(*v, want * size);
	if (!grown)
		return -ENOMEM;
	*v = grown;
	*cap = want;
	return 0;
}

static struct host_entry *entry_for(struct hosts *h, const char *name)
{
	if ((h->n + 1) * 2 > h->index_size && grow_index(h) < 0)
		return NULL;
	uint32_t *slot = slot_of(h, name);
	if (*slot)
		return &h->entries[*slot - 1];
	size_t len = strlen(name) + 1;
	if (reserve((void **)&h->entries, &h->cap, h->n, 1, sizeof(*h->entries)) < 0 ||
	    reserve((void **)&h->names, &h->names_cap, h->names_len, len, 1) < 0)
		return NULL;
	struct host_entry *e = &h->entries[h->n];
	memset(e, 0, sizeof(*e));
	e->name = (uint32_t)h->names_len;
	memcpy(h->names + h->names_len, name, len);
	h->names_len += len;
	*slot = (uint32_t)++h->n;
	return e;
}

static int add_addr(struct hosts *h, struct host_entry *e, const union dns_addr *a)
{
	uint32_t i = e->first;
	for (unsigned k = 0; k < e->n; k++, i = h->addrs[i].next)
		if (dns_same_addr(&h->addrs[i].addr, a))
			return 0;
	if (e->n == DNS_MAX_ADDRS) {
		e->truncated = true;
		return 0;
	}
	if (reserve((void **)&h->addrs, &h->addrs_cap, h->n_addrs, 1, sizeof(*h->addrs)) < 0)
		return -ENOMEM;
	uint32_t at = (uint32_t)h->n_addrs++;
	h->addrs[at].addr = *a;
	h->addrs[at].next = 0;
	if (e->n++ == 0)
		e->first = at;
	else
		h->addrs[e->last].next = at;
	e->last = at;
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
		if (!e || add_addr(h, e, &a) < 0)
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
	free(h->entries);
	free(h->names);
	free(h->addrs);
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

	/* Most names are not in the file: ANS is written only for one that is
	 * (an answer holds 32 addresses), and then only what it uses. */
	if (slot && *slot) {
		const struct host_entry *e = &h->entries[*slot - 1];
		uint32_t i = e->first;
		for (unsigned k = 0; k < e->n; k++, i = h->addrs[i].next)
			ans->addrs[k] = h->addrs[i].addr;
		ans->err = 0;
		ans->n = e->n;
		ans->truncated = e->truncated;
		return true;
	}
	if (!is_localhost(name))
		return false;
	memset(ans->addrs, 0, 2 * sizeof(ans->addrs[0]));
	ans->err = 0;
	ans->truncated = false;
	ans->n = 2;
	ans->addrs[0].in.sin_family = AF_INET;
	ans->addrs[0].in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ans->addrs[1].in6.sin6_family = AF_INET6;
	ans->addrs[1].in6.sin6_addr = in6addr_loopback;
	return true;
}
