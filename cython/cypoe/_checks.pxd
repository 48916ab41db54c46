# The parameter checks shared by ReadWrite and the components (Server,
# Client, TCPMulti; src/cypoe/_params.py re-exports them): one place, so the
# same bad value gets the same error from each.

# A filter given to ReadWrite (an instance): FilterBase, or a Python filter
# with the input (get_one_start/get_one/get_pending) or output (put) face
# asked for.  Returns f; TypeError otherwise.
cdef object check_filter(object f, str name, bint need_input, bint need_output)

# A filter given to ReadWrite as a spec, the components' forms: a filter
# instance (used as it is), a Filter class or a zero-argument factory
# (called once).  Returns the instance, checked by check_filter; anything
# else is check_filter_spec's TypeError.
cdef object filter_instance(object spec, str name, bint need_input, bint need_output)

# A component's *_filter parameter: a Filter instance (cloned per
# connection), a Filter class or a zero-argument factory, or None.
cpdef object check_filter_spec(str name, object spec)

# One watermark value: an int > 0.
cdef Py_ssize_t mark_value(object v, str name) except -1

# The four watermark settings (high, low, and their two callbacks) go
# together; 0 < low < high.  Returns (high, low), (0, 0) when none is given.
cpdef tuple check_marks(tuple names, tuple values)

# A timeout in seconds: float >= 0; None -> 0.0 (disabled).
cpdef double check_timeout(str name, object value) except -1.0
