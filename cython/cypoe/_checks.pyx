# cython: language_level=3
"""The parameter checks ReadWrite and the components share (filters,
watermarks, timeouts): one place, so that the same bad value gets the same
error wherever it is given.  ReadWrite and _components cimport them;
``cypoe._params`` re-exports them for the Python halves of the components."""
from cypoe._filters cimport FilterBase


cdef object check_filter(object f, str name, bint need_input, bint need_output):
    if isinstance(f, FilterBase):
        return f
    if need_input and not (hasattr(f, "get_one_start") and hasattr(f, "get_one")
                           and hasattr(f, "get_pending")):
        raise TypeError(f"{name}: expected a Filter, not {type(f).__name__}")
    if need_output and not hasattr(f, "put"):
        raise TypeError(f"{name}: expected a Filter, not {type(f).__name__}")
    return f


cdef object filter_instance(object spec, str name, bint need_input, bint need_output):
    if isinstance(spec, FilterBase):
        return spec
    if isinstance(spec, type) or not (hasattr(spec, "get_one_start") or hasattr(spec, "put")):
        # A class or a factory (check_filter_spec's error for anything else).
        spec = check_filter_spec(name, spec)()
    return check_filter(spec, name, need_input, need_output)


cpdef object check_filter_spec(str name, object spec):
    """The one check of a ``*_filter`` parameter (Server, Client, TCPMulti):
    a Filter instance (cloned per connection), a Filter class or a
    zero-argument factory.  Returns ``spec``; TypeError otherwise."""
    if spec is None:
        return None
    if isinstance(spec, type):
        return spec
    if hasattr(spec, "get_one_start"):
        if hasattr(spec, "clone"):
            return spec
    elif callable(spec):
        return spec
    raise TypeError(f"{name}: expected a Filter instance, a Filter class or a factory, "
                    f"not {type(spec).__name__}")


cdef Py_ssize_t mark_value(object v, str name) except -1:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name}: expected an int, not {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name}: must be > 0, not {v}")
    return v


cpdef tuple check_marks(tuple names, tuple values):
    """The four watermark settings ``names`` = (high, low, on_high, on_low)
    go together; 0 < low < high and the callbacks callable.  Returns
    (high, low), (0, 0) when none is given."""
    cdef Py_ssize_t high, low
    given = [n for n, v in zip(names, values) if v is not None]
    if not given:
        return 0, 0
    if len(given) != len(names):
        missing = [n for n, v in zip(names, values) if v is None]
        last = len(names) - 1
        raise TypeError(f"{missing[0]}: {', '.join(names[:last])} and {names[last]} go together")
    high = mark_value(values[0], names[0])
    low = mark_value(values[1], names[1])
    if low >= high:
        raise ValueError(f"{names[1]}: must be < {names[0]} ({low} >= {high})")
    for n, v in zip(names[2:], values[2:]):
        if not callable(v):
            raise TypeError(f"{n}: expected a callable or None, not {type(v).__name__}")
    return high, low


cpdef double check_timeout(str name, object value) except -1.0:
    """A timeout parameter: seconds as a float; None -> 0.0 (disabled)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number of seconds, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, not {value}")
    return float(value)
