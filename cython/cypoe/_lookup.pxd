# The one name-resolution service (SocketFactory and the components):
# getaddrinfo in a worker thread, the answer delivered on the loop through
# a typed hook.  A user subclasses NameLookup, keeps its own context in its
# fields and overrides ``resolved``; ``start`` begins the lookup.

from cypoe._kernel cimport Kernel, Timer


cdef class NameLookup:
    cdef Kernel kernel
    cdef object host, port
    cdef int family, socktype
    cdef Timer _keep_alive            # keeps run() going while the lookup is in flight
    cdef bint _cancelled
    # Look ``host``/``port`` up (``family``, ``socktype``) in a thread;
    # ``resolved`` follows on the loop unless ``cancel()`` came first.
    # keep_alive: the loop does not end while the lookup is in flight.
    cdef int start(self, Kernel kernel, object host, object port, int family, int socktype,
                   bint keep_alive) except -1
    cdef int cancel(self) except -1
    # On the loop: the first address found (its family, its numeric host
    # and its sockaddr as the socket module gives it), or family 0 with
    # errnum/errstr (the lookup failed).  The base class does nothing.
    cdef int resolved(self, int family, str numeric, object sockaddr, int errnum,
                      str errstr) except -1
