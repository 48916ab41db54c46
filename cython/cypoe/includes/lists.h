/* List helpers of the read path (declared for Cython in lists.pxd). */
#ifndef CYPOE_LISTS_H
#define CYPOE_LISTS_H

#include <Python.h>

/* Empty a list we own, keeping its item array for the next use (the
   record list of ReadWrite._feed_c, refilled on every read); returns the
   capacity kept. */
static inline Py_ssize_t cp_list_clear_keep(PyObject* l) {
    PyListObject* o = (PyListObject*)l;
    Py_ssize_t i = Py_SIZE(o);
    Py_SET_SIZE(o, 0);
    while (--i >= 0)
        Py_DECREF(o->ob_item[i]);
    return o->allocated;
}

#endif
