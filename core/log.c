/*
 * log.c - error log and access log (see log.h).
 */
#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/util.h"

static _Atomic int log_level = LOG_LVL_INFO;
/* The access log's fd; reopening dup2()s the new file onto it, so workers
 * never see a closed or reused descriptor. -1 when off. */
static _Atomic int access_fd = -1;
static _Atomic int access_format = LOG_FMT_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum cfg_log_level level)
{
	atomic_store(&log_level, level);
}

void log_msg(enum cfg_log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
		return;

	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

void log_unlink(const char *path, const char *what)
{
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("cannot remove the %s %s: %s", what, path, strerror(errno));
}

/* The access log's descriptor while the log is off: pointed at /dev/null
 * rather than closed, since a worker may still write to the number it
 * loaded, and a closed number could be reused for a client's socket. The
 * log turned on again takes it back. */
static int parked_fd = -1;

/* Whether the access log file may be given to the dropped user
 * (giveable, log_access_chown); never a copy of stderr or stdout. */
static bool access_giveable;

static void park(int fd)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null >= 0) {
		dup3(null, fd, O_CLOEXEC);
		close(null);
	}
	parked_fd = fd;
}

static bool is_stream_name(const char *target)
{
	return strcmp(target, "off") == 0 || strcmp(target, "stderr") == 0 ||
	       strcmp(target, "stdout") == 0;
}

/* The directory part of PATH into DIR. */
static void dir_of(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, cap, ".");
	else
		snprintf(dir, cap, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

/* Whether TARGET's directory is root's alone (root owns it, no group or
 * other may write it): nobody but root can have put a link or a file
 * there. */
static bool in_root_only_dir(const char *target)
{
	char path[PATH_MAX];
	struct stat dir;

	dir_of(target, path, sizeof(path));
	return stat(path, &dir) == 0 && dir.st_uid == 0 && !(dir.st_mode & (S_IWGRP | S_IWOTH));
}

/* Opens an access-log file for appending. Non-blocking, so that a FIFO
 * with no reader fails (ENXIO) instead of holding up the start, a reload or
 * -t; writes then block as they do to a file (see log_flush). Root, in a
 * directory another user can write, does not follow a link nor write to a
 * file with a second name: one planted by the service user would have root
 * create or append to any file (nginx's CVE-2016-1247). */
static int open_log_file(const char *target, int flags)
{
	bool strict = geteuid() == 0 && !in_root_only_dir(target);
	struct stat st;

	int fd = open(target,
		      O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK | flags |
			      (strict ? O_NOFOLLOW : 0),
		      0640);
	if (fd >= 0 && strict && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1) {
		close(fd);
		errno = EMLINK;
		return -1;
	}
	if (fd >= 0)
		fcntl(fd, F_SETFL, O_APPEND); /* blocking again */
	return fd;
}

/* Whether the log file FD, opened at TARGET, may go to the dropped user:
 * one this process CREATED, or root's with no other name in a directory
 * only root can write, where nobody else can have put it (a log a start
 * that failed had made, a file the operator made). */
static bool giveable(const char *target, int fd, bool created)
{
	struct stat st, at;

	if (created)
		return true;
	/* The file at the path itself, not one a link there leads to. */
	return fstat(fd, &st) == 0 && lstat(target, &at) == 0 && st.st_dev == at.st_dev &&
	       st.st_ino == at.st_ino && S_ISREG(st.st_mode) && st.st_uid == 0 &&
	       st.st_nlink == 1 && in_root_only_dir(target);
}

int log_access_check(const char *target)
{
	if (is_stream_name(target))
		return 0;
	int fd = open_log_file(target, 0);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	/* It would be created: its directory must exist and let us. */
	char dir[PATH_MAX];
	dir_of(target, dir, sizeof(dir));
	return access(dir, W_OK | X_OK) < 0 ? -errno : 0;
}

int log_access_chown(uid_t uid)
{
	int fd = atomic_load(&access_fd);
	struct stat st;

	/* Only its owner changes, as nginx does: a group logrotate set
	 * stays. */
	if (fd < 0 || !access_giveable || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != 0)
		return 0;
	return fchown(fd, uid, (gid_t)-1) < 0 ? -errno : 0;
}

int log_access_open(const char *target, enum cfg_log_format format)
{
	int fd;
	bool giving = false;

	if (strcmp(target, "off") == 0) {
		int old = atomic_exchange(&access_fd, -1);
		if (old >= 0)
			park(old);
		return 0;
	}
	/* Copies close on exec: a binary upgrade's new process opens its own. */
	if (strcmp(target, "stderr") == 0)
		fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
	else if (strcmp(target, "stdout") == 0)
		fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
	else {
		fd = open_log_file(target, O_CREAT | O_EXCL);
		bool created = fd >= 0;
		if (fd < 0 && errno == EEXIST)
			fd = open_log_file(target, 0);
		giving = fd >= 0 && giveable(target, fd, created);
	}
	if (fd < 0)
		return -errno;

	int cur = atomic_load(&access_fd);
	bool parked = cur < 0 && parked_fd >= 0;
	if (parked)
		cur = parked_fd;
	if (cur >= 0) {
		/* Swap the file under the descriptor workers already use. */
		if (dup3(fd, cur, O_CLOEXEC) < 0) {
			int err = errno;
			close(fd);
			return -err;
		}
		close(fd);
		fd = cur;
	}
	/* The format changes with the file: not when the new one failed. */
	log_access_set_format(format);
	access_giveable = giving;
	if (parked)
		parked_fd = -1;
	atomic_store(&access_fd, fd);
	return 0;
}

void log_access_set_format(enum cfg_log_format format)
{
	atomic_store(&access_format, format);
}

bool log_access_enabled(void)
{
	return atomic_load_explicit(&access_fd, memory_order_relaxed) >= 0;
}

char *log_format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	if (!sa) {
		snprintf(buf, cap, "-");
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, cap, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, cap, "unix:");
	}
	return buf;
}

/* Access-log lines a failed write lost, all told and since the last error
 * line said so; when that was (CLOCK_MONOTONIC seconds). */
static _Atomic uint64_t lost_total, lost_unreported;
static _Atomic int64_t lost_reported_at = -1; /* never */

#define LOST_REPORT_EVERY_S 10

uint64_t log_access_lost(void)
{
	return atomic_load_explicit(&lost_total, memory_order_relaxed);
}

/* Counts the lines of LEN bytes at DATA a write could not take, and says
 * so on stderr at most every LOST_REPORT_EVERY_S seconds: a full disk or a
 * closed pipe must not lose lines in silence, nor flood the error log. */
static void lost(const char *data, size_t len, int err)
{
	uint64_t lines = 0;
	for (const char *p = data; (p = memchr(p, '\n', len - (size_t)(p - data))); p++)
		lines++;
	if (lines == 0)
		return;
	atomic_fetch_add_explicit(&lost_total, lines, memory_order_relaxed);
	atomic_fetch_add_explicit(&lost_unreported, lines, memory_order_relaxed);

	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t last = atomic_load_explicit(&lost_reported_at, memory_order_relaxed);
	if ((last >= 0 && ts.tv_sec - last < LOST_REPORT_EVERY_S) ||
	    !atomic_compare_exchange_strong(&lost_reported_at, &last, (int64_t)ts.tv_sec))
		return;
	uint64_t n = atomic_exchange_explicit(&lost_unreported, 0, memory_order_relaxed);
	log_error("access log: write failed (%s): %llu lines lost "
		  "(fulcrum_access_log_lines_lost_total "
		  "counts them all)",
		  strerror(err), (unsigned long long)n);
}

void log_flush(struct log_buf *lb)
{
	int fd = atomic_load_explicit(&access_fd, memory_order_relaxed);
	size_t off = 0;

	while (fd >= 0 && off < lb->len) {
		ssize_t n = write(fd, lb->data + off, lb->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* A short line stays whole in a line count: a cut one
			 * counts as lost, the reader sees it broken. */
			lost(lb->data + off, lb->len - off, n < 0 ? errno : ENOSPC);
			break;
		}
		off += (size_t)n;
	}
	lb->len = 0;
}

/* The code point of the well-formed UTF-8 sequence P of K bytes when it is
 * one a reader of the log should see escaped: C1 controls, line and
 * paragraph separators, and the bidirectional overrides that can make a
 * line read otherwise than it is; else 0. */
static unsigned invisible(const unsigned char *p, size_t k)
{
	unsigned cp = k == 2   ? (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu)
		      : k == 3 ? (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu)
			       : 0;
	bool hide = (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) ||
		    (cp >= 0x2066 && cp <= 0x2069);
	return hide ? cp : 0;
}

/* Copies S (LEN bytes) escaped for a JSON string or a quoted text field:
 * quotes, backslashes, control characters (C0, C1 and the invisible ones
 * above) and bytes that are not well-formed UTF-8 never reach the log raw;
 * UTF-8 text (a path in another script) is kept as it is. */
static size_t put_escaped(char *out, size_t cap, const char *s, size_t len)
{
	const unsigned char *end = (const unsigned char *)s + len;
	size_t o = 0;
	for (size_t i = 0; i < len && o + 7 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];
		size_t k = ch >= 0x80 ? json_utf8_len((const unsigned char *)s + i, end) : 0;
		unsigned hidden = k ? invisible((const unsigned char *)s + i, k) : 0;
		if (hidden) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", hidden);
			i += k - 1;
		} else if (k) {
			memcpy(out + o, s + i, k); /* k <= 4 fits: o + 7 < cap */
			o += k;
			i += k - 1;
		} else if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
	return o;
}

static void format_time(uint64_t wall, char *buf, size_t cap)
{
	time_t secs = (time_t)(wall / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall % 1000));
}

static const char *or_dash(const char *s)
{
	return s ? s : "-";
}

static int format_text(char *out, size_t cap, const struct log_record *r, const char *when,
		       const char *client)
{
	char request[1024], status[16], ttfb[24];
	char m[64], t[768];

	if (r->method) {
		put_escaped(m, sizeof(m), r->method, r->method_len);
		put_escaped(t, sizeof(t), r->target, r->target_len);
		snprintf(request, sizeof(request), "\"%s %s %s\"", m, t, or_dash(r->proto));
	} else {
		snprintf(request, sizeof(request), "\"- - -\"");
	}
	snprintf(status, sizeof(status), r->status ? "%d" : "-", r->status);
	snprintf(ttfb, sizeof(ttfb), r->ttfb_ms >= 0 ? "%lld" : "-", (long long)r->ttfb_ms);
	return snprintf(out, cap, "%s %s %s %s/%s %s %s %llu %llu %lld %s %s\n", when, client,
			or_dash(r->listener), or_dash(r->pool), or_dash(r->server), request, status,
			(unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
			(long long)r->total_ms, ttfb, or_dash(r->reason));
}

static void json_str(char *out, size_t cap, const char *s, size_t len)
{
	if (!s) {
		snprintf(out, cap, "null");
		return;
	}
	out[0] = '"';
	size_t n = put_escaped(out + 1, cap - 2, s, len);
	out[n + 1] = '"';
	out[n + 2] = '\0';
}

static int format_json(char *out, size_t cap, const struct log_record *r, const char *when,
		       const char *client)
{
	char m[80], t[820], status[16], ttfb[24];

	json_str(m, sizeof(m), r->method, r->method_len);
	json_str(t, sizeof(t), r->target, r->target_len);
	snprintf(status, sizeof(status), r->status ? "%d" : "null", r->status);
	snprintf(ttfb, sizeof(ttfb), r->ttfb_ms >= 0 ? "%lld" : "null", (long long)r->ttfb_ms);
	return snprintf(out, cap,
			"{\"time\":\"%s\",\"client\":\"%s\",\"listener\":\"%s\",\"pool\":%s%s%s,"
			"\"server\":%s%s%s,\"method\":%s,\"target\":%s,\"proto\":%s%s%s,"
			"\"status\":%s,\"bytes_in\":%llu,\"bytes_out\":%llu,\"total_ms\":%lld,"
			"\"ttfb_ms\":%s,\"reason\":%s%s%s}\n",
			when, client, or_dash(r->listener), r->pool ? "\"" : "",
			r->pool ? r->pool : "null", r->pool ? "\"" : "", r->server ? "\"" : "",
			r->server ? r->server : "null", r->server ? "\"" : "", m, t,
			r->proto ? "\"" : "", r->proto ? r->proto : "null", r->proto ? "\"" : "",
			status, (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
			(long long)r->total_ms, ttfb, r->reason ? "\"" : "",
			r->reason ? r->reason : "null", r->reason ? "\"" : "");
}

void log_access(struct log_buf *lb, const struct log_record *r)
{
	char when[80], client[80], line[4096];
	int n;

	if (!log_access_enabled())
		return;
	format_time(r->start_wall_ms, when, sizeof(when));
	log_format_addr(r->client, client, sizeof(client));
	if (atomic_load_explicit(&access_format, memory_order_relaxed) == LOG_FMT_JSON)
		n = format_json(line, sizeof(line), r, when, client);
	else
		n = format_text(line, sizeof(line), r, when, client);
	if (n <= 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (lb->len + (size_t)n > sizeof(lb->data))
		log_flush(lb);
	memcpy(lb->data + lb->len, line, (size_t)n);
	lb->len += (size_t)n;
}
