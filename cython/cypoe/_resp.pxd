# RespCounter's C face: the parser state between two feed() calls (the
# S_* states are in _resp.pyx).

cimport cython


@cython.final
cdef class RespCounter:
    cdef int state
    cdef long long num
    cdef bint neg, digits, content
    cdef long long args_left
    cdef long long skip
    cdef long long line_len
    cdef readonly object error
