# cython: language_level=3
"""The lingering close (see ReadWrite.c_close_lingering in _readwrite.pyx).

close() on a socket with unread input, or one that input reaches
afterwards, resets the connection, and the reset throws away the output the
peer has not received yet.  So a gracefully closed connection's socket may
outlive the connection here: write side shut (the FIN follows the output),
input read and dropped until the peer's EOF or a deadline, then closed.
"""
cimport cython
from posix.unistd cimport close as fd_close

from cypoe._kernel cimport Kernel, Handler, Timer, EV_READ
from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_LINGERING,
                                   cp_debug_counters)
from cypoe.includes.socket cimport cp_discard_input
from cypoe.includes.consts cimport LINGER_READ


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


cdef int linger(Kernel k, int lfd, double seconds) except -1:
    return _Linger.start(k, lfd, seconds)


@cython.final
cdef class _Linger(Handler):
    """The socket of a connection closed gracefully, until the peer is done
    with it (see ReadWrite.c_close_lingering).  While any is lingering, one
    component per kernel keeps a graceful shutdown of the kernel waiting."""
    cdef int lfd
    cdef Kernel k
    cdef Timer timer

    def __dealloc__(self):
        if self.lfd >= 0:       # collected with its kernel, still lingering
            fd_close(self.lfd)
            CP_DBG_DEC(CP_DBG_LINGERING)

    @staticmethod
    cdef int start(Kernel k, int lfd, double seconds) except -1:
        cdef _Linger lg = _Linger.__new__(_Linger)
        lg.lfd = -1
        lg.k = k
        try:
            k.register(lg, lfd, EV_READ, False)
        except BaseException:
            fd_close(lfd)
            raise
        lg.lfd = lfd            # from here on the _Linger closes it
        CP_DBG_INC(CP_DBG_LINGERING)
        lg.timer = k.schedule(k.now() + seconds, lg._expire, (), None, False)
        _LingerSet.of(k).add()
        return 0

    cdef int on_readable(self) except -1:
        if cp_discard_input(self.lfd, LINGER_READ):
            self._done()
        return 0

    def _expire(self):
        self.timer = None
        self._done()

    cdef int _done(self) except -1:
        if self.lfd < 0:
            return 0
        self.k.unregister(self)
        if self.timer is not None:
            self.k.cancel_timer(self.timer)
            self.timer = None
        fd_close(self.lfd)
        self.lfd = -1
        CP_DBG_DEC(CP_DBG_LINGERING)
        _LingerSet.of(self.k).remove()
        return 0


@cython.final
cdef class _LingerSet:
    """A kernel component while sockets linger: a graceful shutdown waits
    for them (as it waits for connections flushing their output)."""
    cdef Kernel k
    cdef Py_ssize_t n

    @staticmethod
    cdef _LingerSet of(Kernel k):
        # The kernel's own list of components holds it while any socket
        # lingers (no registry of our own: nothing outlives the kernel).
        cdef _LingerSet ls
        for c in k._components:
            if type(c) is _LingerSet:
                return <_LingerSet>c
        ls = _LingerSet.__new__(_LingerSet)
        ls.k = k
        return ls

    cdef int add(self) except -1:
        self.n += 1
        if self.n == 1:
            self.k.register_component(self)
        return 0

    cdef int remove(self) except -1:
        self.n -= 1
        if self.n == 0:
            self.k.unregister_component(self)
        return 0

    def shutdown(self):
        pass        # lingering sockets end on their own (EOF or deadline)
