# The lingering close: the socket of a connection closed gracefully stays
# open, write side shut, its input read and dropped, until the peer's EOF or
# a deadline (ReadWrite.c_close_lingering decides when that is needed).

from cypoe._kernel cimport Kernel

# Keep lfd (a dup of the connection's socket, write side already shut)
# until the peer is done with it or `seconds` have passed, then close it.
# lfd is closed on every path, an exception included.
cdef int linger(Kernel k, int lfd, double seconds) except -1
