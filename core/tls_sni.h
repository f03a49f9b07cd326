/*
 * tls_sni.h - reading the server name (SNI) out of a TLS ClientHello
 * without terminating the connection, for SNI passthrough routing.
 *
 * The parser is pure and resumable in the STYLE.md sense: it is handed the
 * bytes received so far (from the first byte of the connection) and says
 * whether they hold a complete enough ClientHello, need more, or are not
 * one. It copies the name out, so the caller's buffer may go afterwards. A
 * ClientHello may arrive in several TCP segments and even span several TLS
 * records (RFC 8446 §5.1 allows a handshake message to be fragmented); both
 * are handled. No I/O, no allocation, no globals; any thread.
 */
#ifndef FULCRUM_TLS_SNI_H
#define FULCRUM_TLS_SNI_H

#include <stddef.h>

/* The longest host name an SNI entry may carry (RFC 6066 §3: 2^8 - 1 is the
 * DNS limit; anything longer is refused as invalid). */
#define TLS_SNI_MAX 255

/* How many bytes a caller should be ready to read before giving up: one
 * record of the largest plaintext size (2^14) plus its 5-byte header. */
#define TLS_HELLO_MAX (16384 + 5)

enum tls_hello_result {
	TLS_HELLO_SNI, /* a ClientHello with a server_name: hello->sni is set */
	TLS_HELLO_NO_SNI, /* a complete, well-formed ClientHello without one */
	TLS_HELLO_NEED_MORE, /* a valid start; read more bytes */
	TLS_HELLO_INVALID, /* not a TLS ClientHello (or a malformed one) */
	TLS_HELLO_TOO_LARGE, /* would need more than MAX bytes */
};

struct tls_hello {
	char sni[TLS_SNI_MAX + 1]; /* NUL-terminated, as sent (not lower-cased) */
	size_t sni_len;
};

/*
 * Parses BUF[0, LEN), the first LEN bytes the client sent. MAX is the most
 * the caller will ever hand in (a ClientHello that announces a larger size
 * is TLS_HELLO_TOO_LARGE at once; the caller treats NEED_MORE with LEN ==
 * MAX the same way). Returns TLS_HELLO_SNI as soon as the server_name
 * extension has been read, without waiting for the extensions after it.
 */
enum tls_hello_result tls_hello_parse(const void *buf, size_t len, size_t max,
				      struct tls_hello *hello);

const char *tls_hello_result_name(enum tls_hello_result r);

#endif
