/*
 * tls_conn.c - TLS sides of connections (see tls.h): the io_ops that read
 * and write through an SSL, the handshake stage of terminating listeners,
 * and TLS to servers with a per-worker session cache. Worker threads.
 *
 * The io_ops keep core/io.h's contract: an SSL call that cannot progress
 * (WANT_READ or WANT_WRITE, whichever direction the socket blocks in)
 * returns -EAGAIN and clears the side's rd flag for a read, wr for a write;
 * conn_side_event sets both again on any event of a TLS side, so a read
 * that waited for writability resumes too. Writes may be partial
 * (SSL_MODE_ENABLE_PARTIAL_WRITE), and a write that met EAGAIN is retried
 * by the callers with the same bytes, possibly from another buffer
 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), as OpenSSL requires.
 *
 * OpenSSL's error queue is per thread: it is emptied before every call and
 * after every failure, so one connection's error never shows up as
 * another's.
 *
 * Ending: a side that ended cleanly sends close_notify once, without
 * waiting for the peer's; a side that failed ends quietly (OpenSSL forbids
 * SSL_shutdown after a fatal error). A clean end also keeps the session
 * resumable.
 */
#include "core/tls.h"
#include "core/tls_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/conn.h"
#include "core/http/reply.h"
#include "core/log.h"

/* ---- the io_ops -------------------------------------------------------- */

static ssize_t tls_recv(struct side *s, void *buf, size_t cap);
static ssize_t tls_send(struct side *s, const void *buf, size_t len);
static void tls_shutdown(struct side *s);
static void tls_free(struct side *s);
static bool tls_pending(const struct side *s);
static ssize_t tls_peek(struct side *s);

static const struct io_ops tls_io_ops = {
	.recv = tls_recv,
	.send = tls_send,
	.shutdown = tls_shutdown,
	.free = tls_free,
	.pending = tls_pending,
	.peek = tls_peek,
};

bool tls_side_is_tls(const struct side *s)
{
	return s->io == &tls_io_ops;
}

const char *tls_side_sni(const struct side *s, size_t *len)
{
	const char *name = NULL;
	if (tls_side_is_tls(s))
		name = SSL_get_servername(s->io_ctx, TLSEXT_NAMETYPE_host_name);
	*len = name ? strlen(name) : 0;
	return name;
}

/* Says why a side failed: at info level for servers (a misconfigured
 * backend or CA is the operator's business), at debug level for clients
 * (anyone on the internet can fail a handshake). */
static void report(const struct side *s, SSL *ssl, int ssl_err, int err)
{
	const struct conn *c = s->c;
	const char *why;
	long v = SSL_get_verify_result(ssl);

	if (v != X509_V_OK)
		why = X509_verify_cert_error_string(v);
	else if (ssl_err == SSL_ERROR_SYSCALL)
		why = strerror(err);
	else
		why = tls_error_reason();
	if (SSL_is_server(ssl)) {
		log_debug("tls: client connection on %s: %s", c ? c->lc->name : "?", why);
		return;
	}
	const struct lb_server *srv = c ? c->server : NULL;
	log_info("tls: connection to server %s (%s): %s", srv ? srv->name : "?",
		 srv ? srv->addr.text : "?", why);
}

/* The return of a failed SSL_read_ex/SSL_write_ex on S, per io.h. */
static ssize_t io_fail(struct side *s, SSL *ssl, bool reading)
{
	int ssl_err = SSL_get_error(ssl, 0);
	int err;

	switch (ssl_err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			s->rd = false;
		else
			s->wr = false;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		if (reading)
			return 0; /* close_notify (or a bare FIN: IGNORE_UNEXPECTED_EOF) */
		err = EPIPE;
		break;
	case SSL_ERROR_SYSCALL:
		err = errno ? errno : ECONNRESET;
		break;
	default:
		err = EPROTO;
		break;
	}
	if (ssl_err != SSL_ERROR_ZERO_RETURN)
		report(s, ssl, ssl_err, err);
	SSL_set_quiet_shutdown(ssl, 1);
	ERR_clear_error();
	return -err;
}

static ssize_t tls_recv(struct side *s, void *buf, size_t cap)
{
	SSL *ssl = s->io_ctx;
	size_t n = 0;

	ERR_clear_error();
	errno = 0;
	if (SSL_read_ex(ssl, buf, cap, &n))
		return (ssize_t)n;
	return io_fail(s, ssl, true);
}

/* Reads the next record in, if need be, to tell payload from a
 * close_notify; what it holds goes to the next tls_recv. */
static ssize_t tls_peek(struct side *s)
{
	SSL *ssl = s->io_ctx;
	char b;
	size_t n = 0;

	ERR_clear_error();
	errno = 0;
	if (SSL_peek_ex(ssl, &b, 1, &n))
		return (ssize_t)n;
	return io_fail(s, ssl, true);
}

static ssize_t tls_send(struct side *s, const void *buf, size_t len)
{
	SSL *ssl = s->io_ctx;
	size_t n = 0;

	ERR_clear_error();
	errno = 0;
	if (SSL_write_ex(ssl, buf, len, &n))
		return (ssize_t)n;
	return io_fail(s, ssl, false);
}

int tls_side_handshake(struct side *s)
{
	if (!tls_side_is_tls(s))
		return 1;
	SSL *ssl = s->io_ctx;
	if (SSL_is_init_finished(ssl))
		return 1;
	ERR_clear_error();
	errno = 0;
	if (SSL_do_handshake(ssl) == 1)
		return 1;
	ssize_t r = io_fail(s, ssl, SSL_get_error(ssl, 0) == SSL_ERROR_WANT_READ);
	return r == -EAGAIN ? 0 : (int)(r == 0 ? -ECONNRESET : r);
}

/* Sends close_notify once, if the side is in a state to. Never waits. */
static void tls_shutdown(struct side *s)
{
	SSL *ssl = s->io_ctx;

	if (!SSL_is_init_finished(ssl) || (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
		return;
	ERR_clear_error();
	SSL_shutdown(ssl);
	ERR_clear_error();
}

static void tls_free(struct side *s)
{
	tls_shutdown(s);
	SSL_free(s->io_ctx);
}

static bool tls_pending(const struct side *s)
{
	const SSL *ssl = s->io_ctx;
	return SSL_pending(ssl) > 0 || SSL_has_pending(ssl);
}

/* ---- the handshake stage of terminating listeners ---------------------- */

static const struct tls_listener *listener_of(const struct conn *c)
{
	const struct tls_gen *t = tls_of(c->gen);
	return t && c->listener < t->n_listeners ? t->listeners[c->listener] : NULL;
}

bool tls_conn_terminates(const struct conn *c)
{
	return listener_of(c) != NULL;
}

uint64_t tls_drain_socket(int fd)
{
	char buf[4096];
	uint64_t total = 0;
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			total += (uint64_t)n;
		else if (n == 0 || errno != EINTR)
			break;
	}
	return total;
}

/* A handshake that failed: nothing went through TLS, so the log counts the
 * bytes that went each way on the wire (the client's hello, fulcrum's
 * handshake messages and alert, and SENT: bytes written past the TLS
 * layer, see answer_plain_http). The socket is plain from here on, and
 * what conn_close drains from it counts too. */
static void close_handshake(struct conn *c, SSL *ssl, enum close_reason reason, size_t sent)
{
	SSL_set_quiet_shutdown(ssl, 1);
	ERR_clear_error();
	c->up.bytes = BIO_number_read(SSL_get_rbio(ssl));
	c->down.bytes = BIO_number_written(SSL_get_wbio(ssl)) + sent;
	io_free(&c->cli);
	conn_close(c, reason);
}

/*
 * A plain HTTP request on an http or forward TLS listener (OpenSSL knows
 * one by its first bytes) gets a plain 400 that says why, as nginx answers
 * it, rather than an empty reply: the user typed http:// for https://.
 * Best effort: one non-blocking send. Returns the bytes sent.
 */
static size_t answer_plain_http(struct conn *c, SSL *ssl)
{
	static const char body[] = "400 Bad Request: plain HTTP sent to a TLS port\n";
	int why = ERR_GET_REASON(ERR_peek_error());

	/* OpenSSL names GET, POST, HEAD and PUT, and CONNECT (a client told
	 * http:// for a TLS proxy). */
	if (c->lc->mode == MODE_TCP || BIO_number_written(SSL_get_wbio(ssl)) != 0 ||
	    (why != SSL_R_HTTP_REQUEST && why != SSL_R_HTTPS_PROXY_REQUEST))
		return 0;
	char date[HTTP_DATE_SIZE], resp[256];
	http_date_now(date);
	int len = snprintf(resp, sizeof(resp),
			   "HTTP/1.1 400 Bad Request\r\nDate: %s\r\nContent-Type: text/plain\r\n"
			   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			   date, sizeof(body) - 1, body);
	c->status = 400;
	ssize_t n = send(c->cli.fd, resp, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
	return n > 0 ? (size_t)n : 0;
}

static void handshake_step(struct conn *c)
{
	SSL *ssl = c->cli.io_ctx;

	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(ssl);
	if (r != 1) {
		int ssl_err = SSL_get_error(ssl, r);
		if (ssl_err == SSL_ERROR_WANT_READ || ssl_err == SSL_ERROR_WANT_WRITE)
			return; /* the next event on the socket resumes it */
		int err = errno;
		if (BIO_number_read(SSL_get_rbio(ssl)) == 0) {
			/* Not a byte came: a port probe, no TLS failure. */
			close_handshake(c, ssl,
					err == ECONNRESET ? CR_CLIENT_RESET : CR_CLIENT_CLOSED, 0);
			return;
		}
		size_t sent = answer_plain_http(c, ssl);
		report(&c->cli, ssl, ssl_err, err ? err : ECONNRESET);
		close_handshake(c, ssl, CR_TLS_HANDSHAKE, sent);
		return;
	}
	timer_del(&c->w->timers, &c->timer);
	conn_start(c);
	/* Request bytes may have come with the client's Finished: no new edge
	 * will announce them, so let the mode look now. */
	if (c->state != CS_CLOSED)
		c->ops->process(c, NULL);
}

static void handshake_timeout(struct conn *c)
{
	log_debug("tls: client connection on %s: no handshake within %llu ms", c->lc->name,
		  (unsigned long long)c->lc->handshake_timeout_ms);
	close_handshake(c, c->cli.io_ctx, CR_TLS_TIMEOUT, 0);
}

/* A stop: a client that has begun its handshake finishes it (under
 * handshake_timeout) and is then served as its mode serves a connection
 * at a stop: http answers its first request with Connection: close, tcp
 * relays up to graceful_timeout. One that has sent nothing is closed, as a
 * plain connection would be. */
static void handshake_drain(struct conn *c)
{
	SSL *ssl = c->cli.io_ctx;

	if (BIO_number_read(SSL_get_rbio(ssl)) == 0 && !io_unread(&c->cli))
		close_handshake(c, ssl, CR_SHUTDOWN, 0);
}

static void handshake_event(struct conn *c, const struct side *from)
{
	(void)from; /* only the client's socket exists yet */
	handshake_step(c);
}

static const struct conn_ops handshake_ops = {
	.start = handshake_step,
	.process = handshake_event,
	.on_timer = handshake_timeout,
	.drain = handshake_drain,
};

void tls_accept_start(struct conn *c)
{
	const struct tls_listener *tl = listener_of(c);
	SSL *ssl = tl ? SSL_new(tl->certs[0].ctx) : NULL;

	if (!ssl || !SSL_set_fd(ssl, c->cli.fd)) {
		SSL_free(ssl);
		ERR_clear_error();
		conn_close(c, CR_NO_MEMORY);
		return;
	}
	SSL_set_accept_state(ssl);
	c->cli.io = &tls_io_ops;
	c->cli.io_ctx = ssl;
	c->ops = &handshake_ops;
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + c->lc->handshake_timeout_ms);
	handshake_step(c);
}

/* ---- TLS to servers ----------------------------------------------------- */

/* The last session of each server this worker talked TLS to, keyed by
 * (client context, address, SNI) and direct-mapped: a collision merely
 * costs a full handshake. Freed when the worker thread exits. */
#define SESS_SLOTS 64

struct sess_cache {
	uintptr_t key[SESS_SLOTS];
	SSL_SESSION *sess[SESS_SLOTS];
};

static pthread_key_t sess_tkey;

static void sess_cache_free(void *p)
{
	struct sess_cache *sc = p;
	for (size_t i = 0; i < SESS_SLOTS; i++)
		SSL_SESSION_free(sc->sess[i]);
	free(sc);
}

int tls_session_cache_init(void)
{
	return pthread_key_create(&sess_tkey, sess_cache_free) == 0 ? 0 : -1;
}

static struct sess_cache *sess_cache(void)
{
	struct sess_cache *sc = pthread_getspecific(sess_tkey);
	if (!sc) {
		sc = calloc(1, sizeof(*sc));
		if (sc && pthread_setspecific(sess_tkey, sc) != 0) {
			free(sc);
			sc = NULL;
		}
	}
	return sc;
}

int tls_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	uintptr_t key = (uintptr_t)SSL_get_ex_data(ssl, tls_ex_session_key);
	struct sess_cache *sc = key ? sess_cache() : NULL;
	if (!sc)
		return 0; /* not kept: OpenSSL frees it */
	size_t i = key % SESS_SLOTS;
	SSL_SESSION_free(sc->sess[i]);
	sc->key[i] = key;
	sc->sess[i] = sess;
	return 1;
}

static void offer_session(SSL *ssl, uintptr_t key)
{
	struct sess_cache *sc = sess_cache();
	size_t i = key % SESS_SLOTS;

	if (!sc || sc->key[i] != key || !sc->sess[i])
		return;
	if (SSL_SESSION_is_resumable(sc->sess[i])) {
		SSL_set_session(ssl, sc->sess[i]);
		return;
	}
	SSL_SESSION_free(sc->sess[i]);
	sc->sess[i] = NULL;
}

static uintptr_t session_key(const struct tls_client *tc, const char *addr, const char *sni)
{
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "%llu|%s|%s", (unsigned long long)tc->id, addr,
			 sni ? sni : "");
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = (int)sizeof(buf) - 1;
	return (uintptr_t)lb_hash(buf, (size_t)n) | 1;
}

/* The host of a server address as written ("name:port", "[v6]:port";
 * none for "unix:/path") into HOST; *IS_IP says whether it is a literal
 * address. Returns false when there is none. */
static bool addr_host(const char *addr, char *host, size_t cap, bool *is_ip)
{
	const char *start = addr, *end;
	unsigned char tmp[sizeof(struct in6_addr)];

	if (strncmp(addr, "unix:", 5) == 0)
		return false;
	if (*addr == '[') {
		start = addr + 1;
		end = strchr(start, ']');
	} else {
		end = strrchr(addr, ':');
	}
	if (!end)
		end = addr + strlen(addr);
	size_t n = (size_t)(end - start);
	if (n == 0 || n >= cap)
		return false;
	memcpy(host, start, n);
	host[n] = '\0';
	*is_ip = inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
	return true;
}

/* What the server's certificate must match: tls_sni, else the host (a name
 * or an address). Nothing to match for a unix socket without tls_sni. */
static int set_peer_name(SSL *ssl, const struct tls_client *tc, const char *host, bool is_ip)
{
	if (tc->sni || (host && !is_ip)) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		return SSL_set1_host(ssl, tc->sni ? tc->sni : host);
	}
	if (host)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	return 1;
}

int tls_server_side(struct side *s, const struct gen *g, const struct lb_pool *p,
		    const struct lb_server *srv)
{
	const struct tls_gen *t = tls_of(g);
	const struct tls_client *tc = NULL;
	char buf[256];
	bool is_ip = false;

	if (!p->cfg->tls)
		return 0;
	/* P may also be a pool of its own (a forward origin's) that is not
	 * among the generation's: then there is no context for it. */
	for (size_t i = 0; t && i < t->n_pools && i < g->cfg->n_pools; i++)
		if (&g->cfg->pools[i] == p->cfg)
			tc = t->pools[i];
	if (!tc)
		return 0;
	const char *host = addr_host(srv->addr.text, buf, sizeof(buf), &is_ip) ? buf : NULL;
	const char *sni = tc->sni ? tc->sni : (host && !is_ip ? host : NULL);
	SSL *ssl = SSL_new(tc->ctx);
	if (!ssl || !SSL_set_fd(ssl, s->fd) || (sni && !SSL_set_tlsext_host_name(ssl, sni)) ||
	    (tc->verify && !set_peer_name(ssl, tc, host, is_ip)))
		goto fail;
	uintptr_t key = session_key(tc, srv->addr.text, sni);
	if (!SSL_set_ex_data(ssl, tls_ex_session_key, (void *)key))
		goto fail;
	offer_session(ssl, key);
	SSL_set_connect_state(ssl);
	s->io = &tls_io_ops;
	s->io_ctx = ssl;
	s->rd = s->wr = true; /* the first read or write starts the handshake */
	return 0;
fail:
	SSL_free(ssl);
	ERR_clear_error();
	return -ENOMEM;
}
