/*
 * privs.h - the pid file (-p) and dropping root for [global] user.
 */
#ifndef FULCRUM_PRIVS_H
#define FULCRUM_PRIVS_H

/* Writes the process id to PATH, which may not be a symbolic link or a
 * file with other hard links; -1 with the cause on stderr (a cut-off file
 * is removed). */
int write_pidfile(const char *path);
/* Removes PATH if this process wrote it and it is a regular file: `-p
 * /dev/null` stays, and so does the file of an instance this one failed to
 * start beside. */
void remove_pidfile(const char *path);
/* Started as root with USER set: gives USER the access log and the pid
 * file PIDFILE (may be NULL), then switches to its uid and gid. Ignored
 * with a warning when not root; -1 with the cause on stderr on failure. */
int drop_privileges(const char *user, const char *pidfile);

#endif
