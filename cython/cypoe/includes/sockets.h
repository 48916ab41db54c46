/* Small socket helpers shared by the compiled modules (includes/socket.pxd
 * declares them for Cython). */
#ifndef CYPOE_SOCKETS_H
#define CYPOE_SOCKETS_H

#include <stddef.h>
#include <errno.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/un.h>

#define CP_SUN_PATH_OFFSET offsetof(struct sockaddr_un, sun_path)

/* Read and drop what is waiting on fd, up to limit bytes (a lingering
 * close reads what the peer still sends, so that close() does not reset
 * the connection).  Returns 1 when the peer is done (EOF, or an error other
 * than EAGAIN/EINTR), 0 when nothing more is waiting now. */
static int cp_discard_input(int fd, Py_ssize_t limit) {
    char buf[16384];
    Py_ssize_t total = 0;
    ssize_t n;
    while (total < limit) {
        n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) { total += n; continue; }
        if (n == 0) return 1;
        if (errno == EINTR) continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : 1;
    }
    return 0;
}

/* Is unread input waiting on fd (or can that not be told)? */
static int cp_input_waiting(int fd) {
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) < 0)
        return 1;
    return n > 0;
}

#endif
