/*
 * The dispatcher gives up root (-user), as OpenSSH's privilege separation
 * does: it parses HTTP heads (libmicrohttpd) and runs the operator's Lua
 * for anyone who connects, so a bug there must not run as root.  Root is
 * needed only at start (the ports, the state directory, the zygote, which
 * keeps it to fork workers of other uids); after that the dispatcher runs
 * as -user, and asks the zygote to signal workers (CTL_KILL).
 */

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disp.h"
#include "err.h"
#include "log.h"

/* -user NAME or a number: its uid and gid (a number without a passwd
 * entry: the gid of the same number).  0, or -1 with err. */
static int
dpriv_lookup(const char *name, uid_t *uid, gid_t *gid, char *err)
{
	struct passwd	*pw;
	unsigned long	 v;
	char		*end;

	if ((pw = getpwnam(name)) != NULL) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
		return 0;
	}
	errno = 0;
	v = strtoul(name, &end, 10);
	if (name[0] < '0' || name[0] > '9' || *end != '\0' || errno != 0 ||
	    v >= UINT_MAX) {
		err_set(err, "-user %s: no such user", name);
		return -1;
	}
	*uid = (uid_t)v;
	*gid = (pw = getpwuid(*uid)) != NULL ? pw->pw_gid : (gid_t)v;
	return 0;
}

int
dpriv_setup(struct disp *d, char *warn, char *err)
{
	uid_t	uid;
	gid_t	gid;

	warn[0] = '\0';
	if (d->run_user[0] == '\0') {
		if (geteuid() == 0)
			err_set(warn, "the dispatcher keeps root while it "
			    "parses HTTP and runs the Lua policy: give -user "
			    "NAME to run as NAME once the ports are bound "
			    "(only the zygote keeps root then)");
		return 0;
	}
	if (dpriv_lookup(d->run_user, &uid, &gid, err) == -1)
		return -1;
	if (geteuid() != 0) {
		if (uid == geteuid())
			return 0;	/* already that user: nothing to do */
		err_set(err, "-user %s: only root can switch to another user "
		    "(the dispatcher runs as uid %ld)", d->run_user,
		    (long)geteuid());
		return -1;
	}
	if (uid == 0 || gid == 0) {
		err_set(err, "-user %s has uid %ld gid %ld: give an "
		    "unprivileged user (the point is to give up root)",
		    d->run_user, (long)uid, (long)gid);
		return -1;
	}
	/* A worker of the same uid could signal and trace us. */
	if (wuid_is_worker(d, uid)) {
		err_set(err, "-user %s (uid %ld) is also a worker uid "
		    "(-workerUids, -workerUser): give the dispatcher a user "
		    "of its own", d->run_user, (long)uid);
		return -1;
	}
	/* Per thread, inherited by threads made later: now, before any. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		err_set(err, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -1;
	}
	d->run_drop = 1;
	d->run_uid = uid;
	d->run_gid = gid;
	return 0;
}

/* A listening TCP socket on host:port (host NULL: every address), as
 * libmicrohttpd makes its own: its fd, or -1 with err. */
static int
dpriv_bind(const char *host, int port, int passive, const char *what,
    char *err)
{
	struct addrinfo	 hints, *res = NULL;
	char		 sport[16];
	int		 fd = -1, on = 1, off = 0, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = passive ? AI_PASSIVE : 0;
	snprintf(sport, sizeof(sport), "%d", port);
	if ((rc = getaddrinfo(host, sport, &hints, &res)) != 0) {
		err_set(err, "%s %s: %s", what, host ? host : "*",
		    gai_strerror(rc));
		return -1;
	}
	if ((fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) ==
	    -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on,
	    sizeof(on)) == -1 ||
	    (res->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &off, sizeof(off)) == -1) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 511) == -1) {
		err_set(err, "cannot listen on %s %s:%d: %s", what,
		    host ? host : "*", port, strerror(errno));
		if (fd != -1)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int
dpriv_listen(struct disp *d, char *err)
{
	if (!d->run_drop)
		return 0;
	if ((d->front_lfd = dpriv_bind(d->listen.name[0] ? d->listen.name :
	    NULL, d->listen.port, 1, "the public port", err)) == -1)
		return -1;
	if (d->console_on && (d->console_lfd = dpriv_bind(d->console.name,
	    d->console.port, 0, "the console", err)) == -1)
		return -1;
	return 0;
}

int
dpriv_family(int fd)
{
	struct sockaddr_storage	ss;
	socklen_t		len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return -1;
	return ss.ss_family;
}

int
dpriv_owner_ok(const struct disp *d, uid_t uid)
{
	return uid == geteuid() || (d->run_drop && uid == d->run_uid);
}

/*
 * Worker sockets of root in the state directory become -user's.  Whoever
 * chowned the directory's tree (systemd does, at each start of a service
 * whose RuntimeDirectory is not root's, with no User=) left the sockets of
 * running workers root's: once it gave root up, the dispatcher could no
 * longer reach the workers it just adopted.  Their listeners are checked
 * by their uid (SO_PEERCRED) all the same.
 */
static int
dpriv_chown_sockets(struct disp *d, char *err)
{
	struct dirent	*e;
	struct stat	 st;
	DIR		*dir;
	int		 fd, rc = 0;

	/* Its own open directory: state_fd's offset is left alone. */
	if ((fd = openat(d->state_fd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) == -1 || (dir = fdopendir(fd)) == NULL) {
		err_set(err, "-stateDir %s: %s", d->state_dir,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	while ((e = readdir(dir)) != NULL) {
		if (fstatat(d->state_fd, e->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == -1 || !S_ISSOCK(st.st_mode) ||
		    st.st_uid != 0)
			continue;
		if (fchownat(d->state_fd, e->d_name, d->run_uid, d->run_gid,
		    AT_SYMLINK_NOFOLLOW) == -1) {
			err_set(err, "chown %s/%s: %s", d->state_dir,
			    e->d_name, strerror(errno));
			rc = -1;
			break;
		}
	}
	closedir(dir);
	return rc;
}

/* The state directory, and the token made in it, become -user's: it
 * binds the workers' sockets there and removes them. */
static int
dpriv_chown(struct disp *d, char *err)
{
	if (fchown(d->state_fd, d->run_uid, d->run_gid) == -1) {
		err_set(err, "chown -stateDir %s: %s", d->state_dir,
		    strerror(errno));
		return -1;
	}
	if (fchownat(d->state_fd, DISP_TOKEN_NAME, d->run_uid, d->run_gid,
	    AT_SYMLINK_NOFOLLOW) == -1 && errno != ENOENT) {
		err_set(err, "chown %s/%s: %s", d->state_dir, DISP_TOKEN_NAME,
		    strerror(errno));
		return -1;
	}
	if (join_chown(d, err) == -1)
		return -1;
	return dpriv_chown_sockets(d, err);
}

int
dpriv_drop(struct disp *d, char *err)
{
	uid_t	ru, eu, su;
	gid_t	rg, eg, sg;

	if (!d->run_drop)
		return 0;
	/* Without root only the zygote can start workers of other uids. */
	if (d->zygote_req == -1) {
		err_set(err, "-user %s: the zygote did not start (see above); "
		    "without it and without root no worker could start",
		    d->run_user);
		return -1;
	}
	if (dpriv_chown(d, err) == -1)
		return -1;
	/* glibc applies each of these to every thread of the process. */
	if (setgroups(0, NULL) == -1 ||
	    setresgid(d->run_gid, d->run_gid, d->run_gid) == -1 ||
	    setresuid(d->run_uid, d->run_uid, d->run_uid) == -1) {
		err_set(err, "-user %s: cannot switch to uid %ld gid %ld: %s",
		    d->run_user, (long)d->run_uid, (long)d->run_gid,
		    strerror(errno));
		return -1;
	}
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1 ||
	    ru != d->run_uid || eu != ru || su != ru || rg != d->run_gid ||
	    eg != rg || sg != rg || setuid(0) != -1 || setgid(0) != -1) {
		err_set(err, "-user %s: root could be regained after the "
		    "switch", d->run_user);
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		err_set(err, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -1;
	}
	d->dropped = 1;
	log_info("gave up root: running as %s (uid %ld gid %ld); the zygote "
	    "keeps root to start workers", d->run_user, (long)d->run_uid,
	    (long)d->run_gid);
	return 0;
}
