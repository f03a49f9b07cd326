/*
 * notify.h - telling systemd how the service is doing (sd_notify(3)): with
 * Type=notify in the unit, `systemctl start` returns once every listener is
 * open, `systemctl reload` shows the reload until it is done, and a binary
 * upgrade's new process takes over as the main process. fulcrum speaks the
 * protocol itself (one datagram per message to the unix socket named by
 * NOTIFY_SOCKET); without that variable nothing is sent.
 *
 * Thread: main only.
 */
#ifndef FULCRUM_NOTIFY_H
#define FULCRUM_NOTIFY_H

/* Reads NOTIFY_SOCKET; kept in the environment for an upgrade's process. */
void notify_init(void);
/* Sends one message of "KEY=VALUE" lines; a lost one is only logged. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
