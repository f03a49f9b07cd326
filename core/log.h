/*
 * log.h - the error log (stderr, levels) and the access log (SPEC §6).
 *
 * The error log writes one line per call straight to stderr; any thread may
 * call it. The access log is formatted by each worker into its own buffer
 * (struct log_buf) and written with one write(2) per event-loop batch, so a
 * busy worker pays one syscall per batch, not per request. Lines never mix:
 * each flush writes whole lines to an O_APPEND file.
 */
#ifndef FULCRUM_LOG_H
#define FULCRUM_LOG_H

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

void log_set_level(enum cfg_log_level level);
void log_msg(enum cfg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* Removes PATH, a file fulcrum made (WHAT says which), at exit; a failure
 * other than its being gone is a warning, not silence: after `user =` the
 * directory may not be ours to write any more. */
void log_unlink(const char *path, const char *what);

/* Opens (or reopens, for SIGUSR1) the access log named by TARGET: "off",
 * "stderr", "stdout" or a path. Returns 0 or -errno. Main thread only. */
int log_access_open(const char *target, enum cfg_log_format format);
/* Writes the next access lines in FORMAT, to the same file. */
void log_access_set_format(enum cfg_log_format format);
/* Whether TARGET could be opened as the access log (-t, and a reload before
 * it commits), without creating it. Returns 0 or -errno. */
int log_access_check(const char *target);
/* Gives the access log file, when there is one and root owns it, to UID:
 * the user that start-up is about to become, who reopens it on SIGUSR1.
 * Its group stays. Returns 0 or -errno. */
int log_access_chown(uid_t uid);
bool log_access_enabled(void);

/* One access-log record; strings may be NULL for "-". */
struct log_record {
	uint64_t start_wall_ms;
	const struct sockaddr *client;
	const char *listener;
	const char *pool;
	const char *server;
	const char *method; /* method, target, proto: NULL for tcp */
	size_t method_len;
	const char *target;
	size_t target_len;
	const char *proto;
	int status; /* 0 = "-" */
	uint64_t bytes_in, bytes_out;
	int64_t total_ms;
	int64_t ttfb_ms; /* -1 = "-" */
	const char *reason; /* NULL = normal end */
};

#define LOG_BUF_CAP 65536

struct log_buf {
	char data[LOG_BUF_CAP];
	size_t len;
};

/* Appends one formatted line to LB, flushing first if it would not fit. */
void log_access(struct log_buf *lb, const struct log_record *r);
/* Writes what LB holds to the access log. */
void log_flush(struct log_buf *lb);

/* Access-log lines lost to failed writes since the start (each loss is
 * also said on stderr, at most every 10 s). */
uint64_t log_access_lost(void);

/* "1.2.3.4:5678", "[::1]:80" or "unix:" into BUF; returns BUF. */
char *log_format_addr(const struct sockaddr *sa, char *buf, size_t cap);

#endif
