/*
 * hosts.h - the hosts file (/etc/hosts), read once with each configuration
 * that has a forward listener, for the forward proxy's name lookups.
 *
 * c-ares would read the whole file again, on the worker's thread, for every
 * name it does not have cached: a client asking for fresh names could then
 * hold a worker for as long as a large file takes to read. Read here instead
 * (main thread, at start and on each reload, as squid does), the file is a
 * hash table that workers only look names up in; c-ares asks DNS only.
 *
 * The path is /etc/hosts, or the FULCRUM_HOSTS_FILE environment variable
 * (which the tests use). A missing file is an empty table. "localhost" and
 * its subdomains that the file does not name are loopback (RFC 6761).
 *
 * Thread: built by the main thread with its cfg; read by any; freed with
 * the cfg by whichever thread lets go of its generation last (a few calls
 * to free, however large the file).
 */
#ifndef FULCRUM_HOSTS_H
#define FULCRUM_HOSTS_H

#include <stdbool.h>

#include "core/dns.h"

struct hosts;

/* Reads the hosts file into *OUT. 0, or -errno when it exists but cannot be
 * read (or memory runs out). */
int hosts_load(struct hosts **out);
void hosts_free(struct hosts *h);

/* Whether NAME (lower-case, without a trailing dot) has addresses in H (or
 * is localhost): *ANS then holds them, in file order. H may be NULL. */
bool hosts_find(const struct hosts *h, const char *name, struct dns_answer *ans);

#endif
