/*
 * proxy_proto.h - the PROXY protocol, versions 1 (text) and 2 (binary), as
 * HAProxy's proxy-protocol.txt defines them: a header a proxy sends first on
 * a connection to say who the real client is (SPEC §7).
 *
 * Pure code: pp_parse() reads a header from bytes a caller peeked from a
 * socket, pp_build_v1/v2() write one; no I/O, no allocation, no globals.
 * The worker side (reading it on accept, sending it to servers) is in
 * core/pp_conn.c.
 */
#ifndef FULCRUM_PROXY_PROTO_H
#define FULCRUM_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A v1 header is at most 107 bytes with its CRLF. */
#define PP_V1_MAX 107
/* The fixed part of a v2 header; its length field counts what follows. */
#define PP_V2_HEAD 16
/* Room pp_build_v1/v2 need at most (v1 TCP6 is the longest). */
#define PP_BUILD_MAX 108

enum pp_result {
	PP_DONE, /* a whole header: info->len bytes */
	PP_MORE, /* a valid beginning: read more */
	PP_ERROR, /* not a PROXY header, or a malformed one: info->error */
};

struct pp_info {
	size_t len; /* PP_DONE: the header's length; PP_MORE: the length needed
		       when known (v2 after 16 bytes), else 0 */
	int version; /* 1 or 2, once known */
	/* True when the header carries no address to use: v1 UNKNOWN, the v2
	 * LOCAL command, or a v2 family other than TCP over IPv4 or IPv6. The
	 * connection then keeps its real peer address. */
	bool local;
	struct sockaddr_storage src, dst; /* set when !local */
	const char *error; /* PP_ERROR: why, for the log */
};

/* Parses the header at the start of BUF (LEN bytes). Never reads past LEN;
 * the bytes after a complete header belong to the connection's payload. */
enum pp_result pp_parse(const char *buf, size_t len, struct pp_info *info);

/* Write a header for a connection from SRC to DST (both AF_INET, or both
 * AF_INET6; any other pair gives "PROXY UNKNOWN" or a v2 LOCAL header) into
 * BUF of CAP bytes (at least PP_BUILD_MAX). Return the length, or -ENOSPC. */
int pp_build_v1(char *buf, size_t cap, const struct sockaddr *src, const struct sockaddr *dst);
int pp_build_v2(char *buf, size_t cap, const struct sockaddr *src, const struct sockaddr *dst);

#endif
