# A growable byte buffer with a consumable front, shared by the filters
# (which serialise into it) and ReadWrite (which sends from it).

cdef class ByteBuffer:
    cdef char* data
    cdef Py_ssize_t start      # first unconsumed byte
    cdef Py_ssize_t end        # one past the last byte
    cdef Py_ssize_t cap

    # Make room for n more bytes at the end; returns the write pointer.
    # Call commit(n_written) afterwards.
    cdef char* reserve(self, Py_ssize_t n) except NULL
    cdef inline void commit(self, Py_ssize_t n) noexcept:
        self.end += n
    cdef int append(self, const char* p, Py_ssize_t n) except -1
    cdef int append_object(self, object o) except -1   # bytes / bytearray / memoryview
    # Drop n bytes from the front (n <= length).  consume() and clear() give
    # a big block back once at most a few bytes are left in it (see .pyx).
    cdef void consume(self, Py_ssize_t n) noexcept
    cdef void _give_back(self) noexcept
    cdef inline Py_ssize_t length(self) noexcept:
        return self.end - self.start
    cdef inline char* head(self) noexcept:
        return self.data + self.start
    cdef void clear(self) noexcept
    # Release memory above `keep` bytes of capacity when the buffer is empty.
    cdef void shrink(self, Py_ssize_t keep) noexcept
    cdef bytes to_bytes(self)
