/*
 * backend.h - what the two halves of the bench backend share: the connection
 * and request they work on, the options, and the body pattern.
 *
 * main.c runs the workers (epoll, accept, timers, reading and writing);
 * http.c reads requests out of a connection's input and builds the answers
 * into its output. See main.c for what the program does.
 */
#ifndef FULCRUM_BENCH_BACKEND_H
#define FULCRUM_BENCH_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IN_CAP	    16384 /* request head limit and read buffer */
#define OUT_HIGH    (1 << 20) /* stop parsing while this much waits */
#define OUT_KEEP    65536 /* larger out buffers are freed when empty */
#define COPY_MAX    16384 /* bodies up to this are copied, larger are streamed */
#define AUX_MAX	    (16u << 20) /* /echo and /chunked bodies are buffered up to this */
#define PATTERN_CAP 65536 /* streamed bodies repeat this block */
#define LINGER_MS   2000 /* wait for the client's FIN after ours */
#define RUN_BUDGET  64 /* loop turns per event before yielding */
#define MAX_BACKLOG 4096

enum phase { PH_HEAD, PH_BODY, PH_SLEEP, PH_LINGER };
enum route { R_SMALL, R_LARGE, R_HEADERS, R_ECHO, R_CHUNKED, R_CLOSE };
enum chunk_state { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER };
/* what a parsing step achieved */
enum step { ST_NEED, ST_MORE, ST_COMPLETE, ST_ANSWERED };

/* The request being read; reset for each request on the connection. */
struct request {
	enum route route;
	bool head_only;
	bool keep_alive;
	bool chunked;
	bool expect_continue;
	bool too_large;
	int status;
	long long delay_ms;
	long long size; /* body size asked for with ?size=, -1 = default */
	long long max_age; /* -1 = no Cache-Control */
	unsigned long long body_left;
	enum chunk_state ck;
};

/*
 * One client connection, owned by the worker that accepted it; freed by
 * conn_close(). aux holds a copied request head (/headers) or the collected
 * body (/echo) until the answer is built.
 */
struct conn {
	int fd;
	struct worker *w;
	enum phase phase;
	bool rd_ready, wr_ready, rd_hup, rd_eof, closing;
	struct request req;
	uint64_t deadline_ms; /* PH_SLEEP and PH_LINGER only */
	struct conn *tprev, *tnext; /* the worker's timer list */
	char *out;
	size_t out_len, out_off, out_cap;
	unsigned long long bulk_left, bulk_sent;
	char *aux;
	size_t aux_len, aux_cap;
	size_t in_len, in_off;
	char in[IN_CAP];
};

/* A worker thread: its epoll, its listener, its connections waiting on time. */
struct worker {
	int ep;
	int lfd;
	struct conn *timers;
	pthread_t thread;
};

/* Options, set by main() before any thread starts, read-only afterwards. */
struct options {
	const char *bind;
	int port;
	char name[65];
	long long small_len; /* -1 = "hello from NAME\n" */
	long long large_len;
	int threads;
	bool echo;
};

extern struct options opt;
extern char pattern[PATTERN_CAP]; /* streamed and sized bodies repeat it */
extern char small_body[128]; /* "hello from NAME\n" */
extern size_t small_body_len;

/* main.c */
uint64_t now_ms(void);
void timer_add(struct conn *c, uint64_t deadline_ms);

/* http.c */
void conn_process(struct conn *c);
enum step finish_request(struct conn *c);

#endif
