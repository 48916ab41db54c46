# The TLS driver: ssl.SSLObject over memory BIOs, for a ReadWrite
# (ReadWrite.start_tls / set_driver).  The driver interface: _readwrite.pxd.

from cypoe._kernel cimport Timer
from cypoe._buffer cimport ByteBuffer
from cypoe._readwrite cimport Driver, ReadWrite


cdef class TLS:
    # The public settings object: ReadWrite(sock, driver=TLS(context, ...)).
    cdef readonly object context
    """The ssl.SSLContext."""
    cdef readonly bint server_side
    """True on the accepting side of the connection."""
    cdef readonly object server_hostname
    """The name checked against the certificate and sent for SNI, or None."""
    cdef readonly double handshake_timeout
    """Seconds the handshake may take before it fails with ETIMEDOUT."""


cdef class TLSDriver(Driver):
    cdef object sslobj
    cdef object inbio
    cdef object outbio
    cdef ByteBuffer raw         # ciphertext waiting for the socket
    cdef Timer timer            # handshake deadline
    cdef double timeout         # its length in seconds
    cdef bint done              # handshake finished
    cdef bint closing           # close_notify queued
    cdef bint peer_eof          # the socket reported EOF (written to inbio)
    cdef int _pump(self) except -1
    cdef int _handshake(self, ReadWrite rw) except -1
    cdef int _cancel_timer(self, ReadWrite rw) except -1
