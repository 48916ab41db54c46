# cython: language_level=3
"""ByteBuffer: one contiguous, growable byte buffer with a consumable front.

Appends go to the end, consumers take from the front.  When the front has
been consumed past half the capacity the live bytes are moved down instead
of growing, so a buffer that is drained as fast as it is filled never grows.

A buffer gives back what it grew for a big record once that record is
consumed: when consume() or clear() leaves at most IDLE_LIVE bytes in a
buffer of more than POOL_BLOCK capacity, the big block is released (the few
live bytes move into a small block), so an idle connection's memory never
depends on the longest record it once buffered.  The cost is bounded (a copy
of at most IDLE_LIVE bytes, one free) and is only paid after the buffer grew
past POOL_BLOCK, so small records never pay it.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove

from cypoe.includes.debug cimport (CP_DBG_INC, CP_DBG_DEC, CP_DBG_BYTEBUFFERS,
                                   CP_DBG_BUFFER_BLOCKS, CP_DBG_POOL_BLOCKS,
                                   cp_debug_counters)

# Blocks of the first size a buffer grows to are recycled through a small
# free list: a connection's output buffer is released every time it drains
# (so an idle connection holds no memory) and is needed again at the next
# put.  glibc's malloc takes its slow path for this size (no tcache), so the
# free list saves a malloc/free pair per drain.  Bounded: POOL_MAX blocks.
cdef enum:
    POOL_BLOCK = 4096
    POOL_MAX = 64
    # consume()/clear() leaving at most this many bytes in a buffer larger
    # than POOL_BLOCK move them into a POOL_BLOCK block (room left to grow)
    IDLE_LIVE = POOL_BLOCK // 2
cdef char* _pool[POOL_MAX]
cdef int _pool_n = 0


cdef inline void _release(char* p, Py_ssize_t cap) noexcept:
    global _pool_n
    CP_DBG_DEC(CP_DBG_BUFFER_BLOCKS)
    if cap == POOL_BLOCK and _pool_n < POOL_MAX:
        _pool[_pool_n] = p
        _pool_n += 1
        CP_DBG_INC(CP_DBG_POOL_BLOCKS)
    else:
        free(p)


def _debug_counters():
    """This module's debug counters (a dict), or None in a release build:
    see cypoe.debug_counters()."""
    return cp_debug_counters()


cdef class ByteBuffer:
    """A growable byte buffer (internal; exposed to Python for tests)."""

    def __cinit__(self, Py_ssize_t capacity=0):
        self.data = NULL
        self.start = 0
        self.end = 0
        self.cap = 0
        if capacity > 0:
            self.data = <char*>malloc(capacity)
            if self.data == NULL:
                raise MemoryError()
            CP_DBG_INC(CP_DBG_BUFFER_BLOCKS)
            self.cap = capacity
        CP_DBG_INC(CP_DBG_BYTEBUFFERS)

    def __dealloc__(self):
        CP_DBG_DEC(CP_DBG_BYTEBUFFERS)
        if self.data != NULL:
            _release(self.data, self.cap)
            self.data = NULL

    cdef char* reserve(self, Py_ssize_t n) except NULL:
        global _pool_n
        cdef Py_ssize_t live, need, newcap
        cdef char* p
        if self.end + n <= self.cap and self.data != NULL:
            return self.data + self.end
        if self.data == NULL and n <= POOL_BLOCK and _pool_n > 0:
            _pool_n -= 1
            self.data = _pool[_pool_n]
            CP_DBG_DEC(CP_DBG_POOL_BLOCKS)
            CP_DBG_INC(CP_DBG_BUFFER_BLOCKS)
            self.cap = POOL_BLOCK
            self.start = 0
            self.end = 0
            return self.data
        live = self.end - self.start
        need = live + n
        if self.start > 0:
            # Move the live bytes down before growing: a buffer drained as
            # fast as it is filled then never grows.
            memmove(self.data, self.data + self.start, live)
            self.start = 0
            self.end = live
            if need <= self.cap:
                return self.data + self.end
        newcap = self.cap * 2 if self.cap else 4096
        while newcap < need:
            newcap *= 2
        p = <char*>realloc(self.data, newcap)
        if p == NULL:
            raise MemoryError()
        if self.data == NULL:
            CP_DBG_INC(CP_DBG_BUFFER_BLOCKS)
        self.data = p
        self.cap = newcap
        return self.data + self.end

    cdef int append(self, const char* p, Py_ssize_t n) except -1:
        cdef char* w
        if n <= 0:
            return 0
        w = self.reserve(n)
        memcpy(w, p, n)
        self.end += n
        return 0

    cdef int append_object(self, object o) except -1:
        cdef Py_buffer view
        if type(o) is bytes:      # exact bytes: no buffer protocol round trip
            return self.append(PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o))
        PyObject_GetBuffer(o, &view, PyBUF_SIMPLE)
        try:
            self.append(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef void consume(self, Py_ssize_t n) noexcept:
        self.start += n
        if self.start >= self.end:
            self.start = 0
            self.end = 0
        if self.cap > POOL_BLOCK and self.end - self.start <= IDLE_LIVE:
            self._give_back()

    cdef void clear(self) noexcept:
        self.start = 0
        self.end = 0
        if self.cap > POOL_BLOCK:
            self._give_back()

    cdef void _give_back(self) noexcept:
        """Release a big block that holds at most IDLE_LIVE live bytes."""
        global _pool_n
        cdef Py_ssize_t live = self.end - self.start
        cdef char* p
        if live == 0:
            free(self.data)
            CP_DBG_DEC(CP_DBG_BUFFER_BLOCKS)
            self.data = NULL
            self.cap = 0
            self.start = 0
            self.end = 0
            return
        if _pool_n > 0:
            _pool_n -= 1
            p = _pool[_pool_n]
            CP_DBG_DEC(CP_DBG_POOL_BLOCKS)
        else:
            p = <char*>malloc(POOL_BLOCK)
            if p == NULL:
                return          # keep the big block; nothing is lost
        memcpy(p, self.data + self.start, live)
        free(self.data)
        self.data = p
        self.cap = POOL_BLOCK
        self.start = 0
        self.end = live

    cdef void shrink(self, Py_ssize_t keep) noexcept:
        if self.end == self.start and self.cap > keep:
            _release(self.data, self.cap)
            self.data = NULL
            self.cap = 0
            self.start = 0
            self.end = 0

    cdef bytes to_bytes(self):
        return PyBytes_FromStringAndSize(self.data + self.start, self.end - self.start)

    # Python face, for tests and for pure-Python callers.
    def __len__(self):
        return self.end - self.start

    def write(self, data):
        self.append_object(data)

    def read(self, Py_ssize_t n=-1):
        cdef Py_ssize_t live = self.end - self.start
        if n < 0 or n > live:
            n = live
        out = PyBytes_FromStringAndSize(self.data + self.start, n)
        self.consume(n)
        return out

    def getvalue(self):
        return self.to_bytes()

    @property
    def capacity(self):
        return self.cap
