# The socket API every compiled module uses, declared once.  Constants that
# share a name with Python's socket module carry a c_ prefix (the modules
# import that one as _socket, and its names are Python objects).

cdef extern from "<errno.h>":
    int EWOULDBLOCK

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr* addr, socklen_t len)
    int bind(int fd, const sockaddr* addr, socklen_t len)
    int accept4(int fd, sockaddr* addr, socklen_t* len, int flags)
    int shutdown(int fd, int how)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t len)
    int getsockname(int fd, sockaddr* addr, socklen_t* len)
    int getpeername(int fd, sockaddr* addr, socklen_t* len)
    int c_SOCK_NONBLOCK "SOCK_NONBLOCK"
    int c_SOCK_CLOEXEC "SOCK_CLOEXEC"
    int c_SOCK_STREAM "SOCK_STREAM"
    int c_AF_INET "AF_INET"
    int c_AF_INET6 "AF_INET6"
    int c_AF_UNIX "AF_UNIX"
    int SOL_SOCKET, SO_ERROR, SO_REUSEADDR, SO_REUSEPORT
    int MSG_NOSIGNAL
    int SHUT_RD, SHUT_WR

cdef extern from "<fcntl.h>" nogil:
    int fcntl(int fd, int cmd, ...)
    int F_DUPFD_CLOEXEC

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)
    unsigned int ntohl(unsigned int)
    int c_IPPROTO_TCP "IPPROTO_TCP"

cdef extern from "<netinet/tcp.h>" nogil:
    int c_TCP_NODELAY "TCP_NODELAY"

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

cdef extern from "<sys/un.h>" nogil:
    struct sockaddr_un:
        sa_family_t sun_family
        char sun_path[108]

cdef extern from "includes/sockets.h" nogil:
    size_t CP_SUN_PATH_OFFSET      # offsetof(struct sockaddr_un, sun_path)
    # Read and drop what is waiting on fd, up to limit bytes: 1 when the
    # peer is done (EOF or an error), 0 when nothing more is waiting now.
    int cp_discard_input(int fd, Py_ssize_t limit)
    # Is unread input waiting on fd (or can that not be told)?
    int cp_input_waiting(int fd)
