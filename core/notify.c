/*
 * notify.c - systemd's notification socket (see notify.h). Main thread.
 */
#include "core/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

void notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len = path ? strlen(path) : 0;

	/* A path, or "@name" for an abstract socket; nothing else (vsock). */
	if (len < 2 || (path[0] != '/' && path[0] != '@') || len >= sizeof(notify_addr.sun_path))
		return;
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_fd < 0) {
		log_warn("NOTIFY_SOCKET %s: %s; systemd will not hear from fulcrum", path,
			 strerror(errno));
		return;
	}
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, len);
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0';
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

void notify_send(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (notify_fd < 0)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	if (sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
		   (const struct sockaddr *)&notify_addr, notify_len) < 0)
		log_warn("cannot tell systemd \"%.*s\": %s", (int)strcspn(msg, "\n"), msg,
			 strerror(errno));
}
