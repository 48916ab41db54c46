# List helpers of the read path (includes/lists.h).

cdef extern from "includes/lists.h":
    # Empty a list we own, keeping its item array for the next use;
    # returns the capacity kept.
    Py_ssize_t cp_list_clear_keep(list l)
