# Socket helpers shared by the connection layer (_readwrite, _socketfactory)
# and the components (_components, _load): numeric connect, address
# conversion, handle checks and the process-wide connection ids.

from cypoe.includes.socket cimport sockaddr_storage, socklen_t


# A number unique within the process: the id of every ReadWrite (a
# component's connections included) and SocketFactory.
cdef unsigned long long new_id() noexcept

# os.strerror(err).
cdef str strerror(int err)

# Non-blocking TCP connect to a numeric address (no name lookup, ever):
# socket(SOCK_NONBLOCK|SOCK_CLOEXEC) + TCP_NODELAY + optional bind + connect.
# Returns the fd (connect in progress or done: hand it to
# ReadWrite.setup(..., connecting=True)), or -1 with err[0] = errno and
# op[0] = "socket" | "bind" | "connect".  A host that is not a numeric
# address of `family` raises ValueError.
cdef int nb_connect(int family, str host, int port, str bind_host, int bind_port,
                    int* err, const char** op) except -2

# nb_connect with a protocol (0: TCP) and socket options set before the
# bind (NB_* flags; a failure there is op "setsockopt"): SocketFactory's
# stream connects.
cdef enum:
    NB_REUSEADDR = 1
    NB_REUSEPORT = 2
cdef int nb_connect_ex(int family, str host, int port, str bind_host, int bind_port,
                       int proto, int flags, int* err, const char** op) except -2

# sockaddr (as accept()/getsockname() fill it) -> Python's sockaddr value.
cdef object sockaddr_to_py(void* sa, unsigned int salen)

# getpeername (peer=True) or getsockname of fd as Python's sockaddr value,
# or None (closed, not a socket, not connected).
cdef object fd_sockname(int fd, bint peer)

# The fd of a socket, file object or int handle (None -> None); `name` is
# the parameter named in the TypeError / ValueError.
cdef object fileno_of(object handle, str name)

cdef bint fd_is_socket(int fd)
