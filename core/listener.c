/*
 * listener.c - listening sockets (see listener.h). Main thread.
 */
#include "core/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int open_unix(const struct cfg_addr *a, int backlog, bool check, mode_t mode,
		     const char **what)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*what = "socket";
		return -errno;
	}
	/* A stale socket file from an earlier run would make bind fail; one
	 * that a live process still accepts on is in use. Only a refusal says
	 * that nobody does: a file this user may not connect to (EACCES) may
	 * be another service's live socket, and is left alone. */
	if (check) {
		int err = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ? 0 : errno;
		if (err != ECONNREFUSED && err != ENOENT) {
			*what = "bind";
			errno = err == 0 || err == EAGAIN ? EADDRINUSE : err;
			goto fail;
		}
	}
	/* Only a socket file is ours to replace: never a file of another kind
	 * that happens to sit at the path. */
	struct stat st;
	if (lstat(un->sun_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		*what = "bind";
		errno = EEXIST;
		goto fail;
	}
	unlink(un->sun_path);
	/* The socket file is made with MODE, not the umask's (with systemd's
	 * UMask=0027 no client could connect): set through the umask around
	 * bind, since a chmod by name afterwards would follow a link swapped
	 * in meanwhile. Only the main thread makes files, so the process-wide
	 * umask is ours for this moment. */
	mode_t umask_was = umask(~mode & 0777);
	int rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
	umask(umask_was);
	if (rc < 0) {
		*what = "bind";
		goto fail;
	}
	if (listen(fd, backlog) < 0) {
		*what = "listen";
		goto fail;
	}
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}

/* 0 when nothing listens on A, else -errno (-EADDRINUSE). Binding without
 * SO_REUSEPORT fails against any listener on the port, ours or another's;
 * SO_REUSEADDR keeps sockets in TIME_WAIT from counting. */
static int check_unused(const struct cfg_addr *a)
{
	int one = 1;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int err = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (a->ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		err = -errno;
	close(fd);
	return err;
}

bool listener_bound_at(const struct sockaddr_storage *ss, const struct cfg_addr *a)
{
	if (ss->ss_family != a->ss.ss_family)
		return false;
	switch (ss->ss_family) {
	case AF_INET: {
		const struct sockaddr_in *x = (const void *)ss, *y = (const void *)&a->ss;
		return x->sin_addr.s_addr == y->sin_addr.s_addr &&
		       (y->sin_port == 0 || x->sin_port == y->sin_port);
	}
	case AF_INET6: {
		const struct sockaddr_in6 *x = (const void *)ss, *y = (const void *)&a->ss;
		return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
		       (y->sin6_port == 0 || x->sin6_port == y->sin6_port);
	}
	case AF_UNIX: {
		const struct sockaddr_un *x = (const void *)ss, *y = (const void *)&a->ss;
		return strncmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0;
	}
	default:
		return false;
	}
}

bool listener_any_port(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_port == 0;
	if (a->ss.ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)&a->ss)->sin6_port == 0;
	return false;
}

int listener_open(struct cfg_addr *a, int backlog, bool first, mode_t unix_mode, const char **what)
{
	int one = 1;

	if (a->ss.ss_family == AF_UNIX)
		return open_unix(a, backlog, first, unix_mode, what);
	if (first && !listener_any_port(a)) {
		*what = "bind";
		int err = check_unused(a);
		if (err < 0)
			return err;
	}
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*what = "socket";
		return -errno;
	}
	*what = "setsockopt";
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	*what = "bind";
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		goto fail;
	*what = "listen";
	if (listen(fd, backlog) < 0)
		goto fail;
	socklen_t len = a->len;
	if (getsockname(fd, (struct sockaddr *)&a->ss, &len) < 0)
		goto fail;
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}
