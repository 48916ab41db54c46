# The C face of the compiled framing filters, for the I/O layer.
#
# Contract of feed():
#   - `data` points at `n` bytes owned by the caller and valid only for the
#     call (ReadWrite passes the kernel's shared receive buffer); the filter
#     copies whatever it must keep.  n == 0 (data may be NULL) parses only
#     what is already buffered.
#   - Every complete record is appended to `out`, in order.
#   - A FilterError (cypoe.errors) may be raised after some records were
#     appended: those records are complete and must be delivered before the
#     error.  The bytes after the offending input stay buffered in the
#     filter, so the caller calls feed(NULL, 0, out) again (until it returns
#     without raising) to get the records that follow.
#   - BufferOverflow means the new bytes were not taken in at all.
# Contract of put_into(): serialise `records` (a tuple) and append the bytes
# to `out`; returns the number of records written.

from cypoe._buffer cimport ByteBuffer

cdef class FilterBase:
    cdef int feed(self, const char* data, Py_ssize_t n, list out) except -1
    cdef Py_ssize_t put_into(self, tuple records, ByteBuffer out) except -1
    # True when unparsed input is buffered.
    cdef bint has_pending(self)
