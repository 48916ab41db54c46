/* ReadWrite.put as a METH_FASTCALL method (declared for Cython in
 * fastput.pxd).
 *
 * ``def put(self, *records)`` compiles to a METH_VARARGS function that the
 * interpreter calls through a freshly built argument tuple (two, with
 * binding=True: one with self and a slice without it).  This put() of one
 * record -- the echo / request-response case -- goes straight to c_put1
 * with no tuple at all.  _readwrite.pyx sets the two _impl pointers and
 * installs the method on ReadWrite (and install_fast_put on subclasses).
 */
#ifndef CYPOE_FASTPUT_H
#define CYPOE_FASTPUT_H

#include <Python.h>

typedef PyObject* (*cp_put_fn)(PyObject*, PyObject*);
static cp_put_fn cp_rw_put1_impl = NULL;   /* (rw, record) */
static cp_put_fn cp_rw_putn_impl = NULL;   /* (rw, tuple of records) */

static PyObject* cp_rw_put(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                           PyObject* kwnames) {
    PyObject *t, *r;
    Py_ssize_t i;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_Format(PyExc_TypeError, "put() got an unexpected keyword argument '%U'",
                     PyTuple_GET_ITEM(kwnames, 0));
        return NULL;
    }
    if (nargs == 1)
        return cp_rw_put1_impl(self, args[0]);
    t = PyTuple_New(nargs);
    if (t == NULL)
        return NULL;
    for (i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(t, i, args[i]);
    }
    r = cp_rw_putn_impl(self, t);
    Py_DECREF(t);
    return r;
}

static PyMethodDef cp_rw_put_def = {
    "put", (PyCFunction)(void(*)(void))cp_rw_put, METH_FASTCALL | METH_KEYWORDS,
    "put($self, /, *records)\n--\n\n"
    "Serialise ``records`` through the output filter and queue them;\n"
    "returns True while buffered output is at or above ``high_mark``."};

static int cp_install_put(PyObject* type) {
    PyObject* d = PyDescr_NewMethod((PyTypeObject*)type, &cp_rw_put_def);
    int r;
    if (d == NULL)
        return -1;
    r = PyDict_SetItemString(((PyTypeObject*)type)->tp_dict, "put", d);
    Py_DECREF(d);
    PyType_Modified((PyTypeObject*)type);
    return r;
}

#endif
