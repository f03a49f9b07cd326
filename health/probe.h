/*
 * probe.h - one active health check of one server over a fresh non-blocking
 * connection: tcp (the connect completes) or http (a request whose answer
 * has a valid head, held to what traffic gets, and a status in the expected
 * range; the body is drained), over TLS when the pool talks TLS to its
 * servers (tls = on).
 *
 * Thread: the health thread only. A probe owns its socket from
 * hc_probe_start() until it reports a result; it never blocks and never
 * keeps time itself: the caller arms check_timeout and calls
 * hc_probe_timeout() when it passes.
 */
#ifndef FULCRUM_HEALTH_PROBE_H
#define FULCRUM_HEALTH_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config/config.h"
#include "health/check.h"

/* The answer's head is read into a buffer that starts at HC_HEAD_MIN bytes
 * and grows to HC_HEAD_MAX, the longest head traffic takes (RESP_HEAD_MAX);
 * the body is drained unread. */
#define HC_HEAD_MIN 512
#define HC_HEAD_MAX 65536
/* A server that keeps sending past this much is cut off (the verdict stands). */
#define HC_DRAIN_MAX (256 * 1024)
/* How long DRAINING waits for the server's close once the verdict is in.
 * One that honours Connection: close closes at once; one that keeps the
 * connection open anyway must not hold the next check back until
 * check_timeout. */
#define HC_DRAIN_GRACE_MS 100
#define HC_REASON_CAP	  96

enum hc_probe_state {
	PROBE_IDLE,
	PROBE_CONNECTING,
	PROBE_HANDSHAKE, /* TLS */
	PROBE_SENDING,
	PROBE_READING, /* waiting for the answer's head */
	PROBE_DRAINING, /* verdict known; reading until the server closes (the
			   health thread allows HC_DRAIN_GRACE_MS) */
};

/* One check in flight (or none: PROBE_IDLE, fd -1). Embedded in the health
 * thread's per-server record; only that thread touches it. */
struct hc_probe {
	int fd;
	int epfd; /* where fd is watched, -1 before it is */
	SSL *ssl; /* NULL unless TLS */
	enum hc_probe_state state;
	size_t sent; /* bytes of the request written */
	size_t got; /* bytes of the answer in head */
	size_t drained; /* bytes read and dropped after the head */
	bool ok; /* the verdict, valid once state is DRAINING or IDLE again */
	bool no_verdict; /* this host ran short (fds, memory, ports): says nothing */
	unsigned char interims; /* 1xx answers skipped */
	char *head; /* READING: head_cap bytes, malloc'd; NULL otherwise */
	size_t head_cap;
	char reason[HC_REASON_CAP]; /* why it failed, or "check passed" */
};

void hc_probe_init(struct hc_probe *p);

/*
 * Starts a check of ADDR as CHK says, registering the socket in EPFD
 * (edge-triggered) with data.ptr = PTR. Returns true when the probe has
 * already ended (an immediate refusal, a socket error): the result is in
 * p->ok and p->reason. Returns false when it waits for events on EPFD.
 */
bool hc_probe_start(struct hc_probe *p, const struct hc_check *chk, const struct cfg_addr *addr,
		    int epfd, void *ptr);

/* Handles epoll EVENTS for a running probe. Returns true when it ended. */
bool hc_probe_event(struct hc_probe *p, const struct hc_check *chk, uint32_t events);

/* check_timeout passed: ends the probe, failed unless its verdict was
 * already read (the server was merely slow to close). */
void hc_probe_timeout(struct hc_probe *p);

/* Ends a running probe without a result (a reload or shutdown). */
void hc_probe_abort(struct hc_probe *p);

/* Moves the running probe FROM into TO, its events now carrying PTR; FROM
 * is left idle. Returns false (and moves nothing) when its socket cannot be
 * pointed at PTR. */
bool hc_probe_move(struct hc_probe *to, struct hc_probe *from, void *ptr);

static inline bool hc_probe_is_running(const struct hc_probe *p)
{
	return p->state != PROBE_IDLE;
}

#endif
