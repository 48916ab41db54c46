# ReadWrite.put as a METH_FASTCALL method (includes/fastput.h): _readwrite
# sets the two implementations and installs the method on ReadWrite;
# install_fast_put (_readwrite.pxd) installs it on a Cython subclass.

cdef extern from "includes/fastput.h":
    ctypedef object (*cp_put_fn)(object, object)
    cp_put_fn cp_rw_put1_impl          # (rw, record)
    cp_put_fn cp_rw_putn_impl          # (rw, tuple of records)
    int cp_install_put(object type) except -1
