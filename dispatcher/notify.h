#ifndef NOTIFY_H
#define NOTIFY_H

/*
 * The service manager's readiness protocol (systemd's sd_notify(3), the
 * "notify socket" of Type=notify units): one datagram of NEWLINE-separated
 * VAR=VALUE lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
 * or an abstract name written with a leading '@').  Without the variable
 * every call is a no-op that succeeds, so the dispatcher runs the same
 * with and without a manager.  Sends never block: a manager that does not
 * read loses a message, not the dispatcher's loop.
 */

/*
 * Takes $NOTIFY_SOCKET and removes it from the environment, so that
 * workers (which are not the service's main process) do not inherit it;
 * opens the datagram socket (close-on-exec).  Call once, before any
 * thread starts.  0 (also when the variable is unset), or -1 with err
 * when it is set but unusable (then later calls are no-ops).
 */
int	notify_init(char *err);

/* Ready: the ports listen.  status (NULL allowed) is shown by systemctl
 * status.  0, or -1 with err. */
int	notify_ready(const char *status, char *err);

/*
 * Around a policy reload: RELOADING=1 (with the monotonic time, as
 * systemd 253 asks), then READY=1 with the outcome as status.  Both are
 * sent only once notify_ready was, so that the load at start does not
 * look like a reload.  Safe from any thread.  0, or -1 with err.
 */
int	notify_reloading(char *err);
int	notify_reloaded(const char *status, char *err);

/* Stopping (SIGTERM, SIGINT).  0, or -1 with err. */
int	notify_stopping(char *err);

/* Closes the socket; later calls are no-ops. */
void	notify_close(void);

#endif
