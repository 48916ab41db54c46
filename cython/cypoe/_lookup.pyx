# cython: language_level=3
"""The one name-resolution service of cypoe: ``getaddrinfo`` for a name
that is not a numeric address, in a thread, so that a lookup never blocks
the loop.  SocketFactory and the components (Client, TCPMulti) subclass
``NameLookup`` and receive the answer through its typed ``resolved`` hook,
on the loop."""
cimport cython

from cypoe._kernel cimport Kernel, Timer
from cypoe.includes.debug cimport CP_DBG_INC, CP_DBG_DEC, CP_DBG_NAME_LOOKUPS, cp_debug_counters

import socket as _socket
import threading as _threading


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


def _noop():
    pass


cdef class NameLookup:
    """One lookup (subclass it: see _lookup.pxd)."""

    def __cinit__(self):
        CP_DBG_INC(CP_DBG_NAME_LOOKUPS)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_NAME_LOOKUPS)

    cdef int start(self, Kernel kernel, object host, object port, int family, int socktype,
                   bint keep_alive) except -1:
        self.kernel = kernel
        self.host = host
        self.port = port
        self.family = family
        self.socktype = socktype
        if keep_alive:
            self._keep_alive = kernel.schedule(kernel.now() + 1e9, _noop, (), None, True)
        _threading.Thread(target=self._run, name="cypoe-resolve", daemon=True).start()
        return 0

    cdef int cancel(self) except -1:
        self._cancelled = True
        if self._keep_alive is not None:
            self.kernel.cancel_timer(self._keep_alive)
            self._keep_alive = None
        return 0

    def _run(self):
        # In the lookup thread: only getaddrinfo and the kernel's
        # thread-safe queue are touched here.
        try:
            infos = _socket.getaddrinfo(self.host, self.port, self.family, self.socktype)
            if not infos:
                raise OSError(0, "no address")
            fam, _, _, _, sa = infos[0]
            result = (int(fam), str(sa[0]), sa, 0, None)
        except (OSError, UnicodeError) as exc:
            result = (0, None, None, getattr(exc, "errno", None) or 0,
                      getattr(exc, "strerror", None) or str(exc))
        self.kernel.call_soon_threadsafe(self._deliver, *result)

    def _deliver(self, int family, numeric, sockaddr, int errnum, errstr):
        # On the loop.
        if self._keep_alive is not None:
            self.kernel.cancel_timer(self._keep_alive)
            self._keep_alive = None
        if self._cancelled:
            return
        self.resolved(family, numeric, sockaddr, errnum, errstr)

    cdef int resolved(self, int family, str numeric, object sockaddr, int errnum,
                      str errstr) except -1:
        return 0
