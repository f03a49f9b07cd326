/*
 * privs.h - the pid file (-p) and dropping root for [global] user.
 */
#ifndef FULCRUM_PRIVS_H
#define FULCRUM_PRIVS_H

/* Writes the process id to PATH (started as root: into a file it makes
 * anew, see open_pidfile); -1 with the cause on stderr (a cut-off file is
 * removed). */
int write_pidfile(const char *path);
/* Removes PATH if it is still the regular file this process wrote: `-p
 * /dev/null` stays, and so do the files of instances this one failed to
 * start beside or was followed by. */
void remove_pidfile(const char *path);
/* Started as root with USER set: gives USER the access log and the pid
 * file PIDFILE (may be NULL), then switches to its uid and gid. Ignored
 * with a warning when not root; -1 with the cause on stderr on failure. */
int drop_privileges(const char *user, const char *pidfile);

#endif
