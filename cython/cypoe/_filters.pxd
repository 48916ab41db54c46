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
# put_one(): the same for one record, without a tuple (ReadWrite's put fast
# path); the result must be exactly put_into((record,), out)'s.

from cypoe._buffer cimport ByteBuffer
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

cdef class FilterBase:
    cdef int feed(self, const char* data, Py_ssize_t n, list out) except -1
    cdef Py_ssize_t put_into(self, tuple records, ByteBuffer out) except -1
    cdef int put_one(self, object record, ByteBuffer out) except -1
    # True when unparsed input is buffered.
    cdef bint has_pending(self) noexcept
    # get_pending()'s bytes (a copy of the unparsed input), or None, without
    # a Python method call (ReadWrite keeps it across a batch).
    cdef object pending_bytes(self)


# The output side of the filters whose records are the bytes themselves
# (Stream; the response framings RedisReply and HTTPResponse): put_into()
# and put_one() append each record (bytes-like) as it is.  Inline, so that
# sharing them costs the put fast path nothing.
cdef inline Py_ssize_t put_records_as_is(tuple records, ByteBuffer out) except -1:
    # Indexed, not iterated: no iterator object per put.
    cdef Py_ssize_t i
    for i in range(PyTuple_GET_SIZE(records)):
        out.append_object(<object>PyTuple_GET_ITEM(records, i))
    return PyTuple_GET_SIZE(records)

cdef inline int put_record_as_is(object record, ByteBuffer out) except -1:
    return out.append_object(record)


# ---------------------------------------------------------------------------
# The built-in filters (added by the filters work; the I/O layer may cimport
# them to recognise a built-in filter, but only needs FilterBase's methods).

cdef class _Framing(FilterBase):
    # Line's and Block's shared state and POE face (get, get_one_start,
    # get_one, get_pending) over their C parsers.
    cdef ByteBuffer buf
    cdef readonly Py_ssize_t max_buffer
    cdef bint dirty               # buf may hold whole records (get_one_start, errors)
    cdef object error             # exception a parse pass stopped on
    cdef int _parse_buf(self, list out, Py_ssize_t limit) except -1
    cdef int _feed_object(self, object chunk, list out) except -1


cdef class Line(_Framing):
    cdef int mode                 # MODE_* in _filters.pyx
    cdef bytes term               # input terminator (literal / detected)
    cdef const char* tp
    cdef Py_ssize_t tl
    cdef bytes out_term
    cdef object regexp
    cdef readonly Py_ssize_t max_length
    """The longest line accepted, terminator excluded (bytes)."""
    cdef readonly object encoding # None or a codec name (str)
    """The codec lines are decoded with and records encoded with, or None (bytes records)."""
    cdef bytes enc_name           # encoding as bytes, for PyUnicode_Decode
    cdef object record_decoder    # None or callable(bytes) -> record
    cdef bint plain               # no encoding, no record decoder
    cdef int skip                 # byte to drop if it comes next, or -1
    cdef bint choosing            # autodetect: term is skip's partner; skip makes it a pair
    cdef bint discarding          # dropping an over-long line up to its terminator
    cdef dict kwargs

    cdef _set_term(self, bytes term)
    cdef Py_ssize_t _parse(self, const char* base, Py_ssize_t n, list out,
                           Py_ssize_t limit) except -1
    cdef Py_ssize_t _parse_regexp(self, const char* base, Py_ssize_t n, list out,
                                  Py_ssize_t limit) except -1
    cdef Py_ssize_t _keep(self, const char* base, Py_ssize_t n) noexcept
    cdef Py_ssize_t _seek(self, const char* data, Py_ssize_t n)
    cdef int _absorb(self, const char* data, Py_ssize_t n) except -1
    cdef int _emit(self, const char* p, Py_ssize_t n, list out) except -1
    cdef bint _drop_skip(self, unsigned char b)


cdef class Block(_Framing):
    cdef int codec_kind           # CODEC_* in _filters.pyx
    cdef Py_ssize_t bsize         # fixed block size (CODEC_FIXED)
    cdef Py_ssize_t prefix_size
    cdef bint prefix_big          # big-endian prefix
    cdef object prefix_struct
    cdef object encode
    cdef object decode
    cdef readonly Py_ssize_t max_length
    """The largest length-prefixed frame accepted (bytes); with ``block_size``, the block size."""
    cdef Py_ssize_t cur_hs        # header size of the frame at the buffer's head
    cdef Py_ssize_t cur_ps        # its payload size, or -1 when not decoded yet
    cdef unsigned long long skip_payload
    cdef bint bad_run
    cdef readonly unsigned long long garbage_bytes
    """Bytes dropped before frame headers (non-digits where a length was expected)."""
    cdef dict kwargs

    cdef Py_ssize_t _parse(self, const char* base, Py_ssize_t n, list out,
                           Py_ssize_t limit) except -1
    cdef tuple _decode_custom(self, const char* p, Py_ssize_t n)
    cdef Py_ssize_t _header(self, Py_ssize_t n, char* hdr) except -1
    cdef object _encode_custom(self, object record)
    cdef int _write_frame(self, object record, ByteBuffer out) except -1


cdef class Stream(FilterBase):
    cdef ByteBuffer buf
