/* cypoe's debug counters.
 *
 * Built with CYPOE_DEBUG=1 (setup.py defines the CYPOE_DEBUG macro), every
 * compiled module counts the objects and resources it makes and gives back:
 * CP_DBG_INC/CP_DBG_DEC at the place where a resource is taken or released.
 * cypoe.debug_counters() sums the modules' tables (each module has its own
 * copy of the static table below: a counter is usually moved by one module
 * only, and a sum is right either way).  The test suite's autouse fixture
 * checks that every counter is back to its start after each test.
 *
 * In a release build the macros expand to nothing: no code, no data.
 */
#ifndef CYPOE_DEBUG_H
#define CYPOE_DEBUG_H

#include <Python.h>

enum cp_debug_counter {
    CP_DBG_KERNELS,             /* Kernel objects alive */
    CP_DBG_HANDLERS,            /* fd watchers registered with a kernel */
    CP_DBG_TIMERS,              /* timers pending (neither fired nor cancelled) */
    CP_DBG_SESSIONS,            /* Session objects alive */
    CP_DBG_READWRITES,          /* ReadWrite objects alive (connections included) */
    CP_DBG_SOCKETFACTORIES,     /* SocketFactory objects alive (listeners included) */
    CP_DBG_LINGERING,           /* sockets lingering after a graceful close */
    CP_DBG_TLS_DRIVERS,         /* TLS drivers (one per TLS connection) alive */
    CP_DBG_BYTEBUFFERS,         /* ByteBuffer objects alive */
    CP_DBG_BUFFER_BLOCKS,       /* memory blocks held by ByteBuffers */
    CP_DBG_POOL_BLOCKS,         /* blocks cached in the buffer pool (bounded; not a leak) */
    CP_DBG_CORES,               /* component cores (Server/Client/TCPMulti) alive */
    CP_DBG_SCANS,               /* ConnectScan objects alive */
    CP_DBG_RESP_COUNTERS,       /* RespCounter objects alive */
    CP_DBG_LOAD_ENGINES,        /* LoadEngine objects alive (cypoe load's compiled engine) */
    CP_DBG_LOAD_CONNS,          /* LoadConn state arrays allocated (one set per connection) */
    CP_DBG_LOAD_HISTOGRAMS,     /* Hist counts arrays allocated */
    CP_DBG_RESPONSE_PARSERS,    /* RESP/HTTP parser states allocated (filters, load connections) */
    CP_DBG_PARSER_LINES,        /* HTTP parsers' split-line buffers allocated */
    CP_DBG_NAME_LOOKUPS,        /* NameLookup objects alive (one per lookup in a thread) */
    CP_DBG_N
};

/* Names, in enum order: the keys of cypoe.debug_counters(). */
static const char* const cp_debug_names[CP_DBG_N] = {
    "kernels", "handlers", "timers", "sessions", "readwrites", "socketfactories",
    "lingering_sockets", "tls_drivers", "bytebuffers", "buffer_blocks",
    "pool_blocks", "component_cores", "scans", "resp_counters",
    "load_engines", "load_conns", "load_histograms", "response_parsers", "parser_lines",
    "name_lookups",
};

#ifdef CYPOE_DEBUG
static long long cp_debug_counts[CP_DBG_N];
#define CP_DEBUG_BUILD 1
#define CP_DBG_ADD(c, n) ((void)(cp_debug_counts[(c)] += (n)))
#else
#define CP_DEBUG_BUILD 0
#define CP_DBG_ADD(c, n) ((void)0)
#endif
#define CP_DBG_INC(c) CP_DBG_ADD((c), 1)
#define CP_DBG_DEC(c) CP_DBG_ADD((c), -1)

/* This module's counters as a dict {name: value}, or None in a release
 * build. */
static PyObject* cp_debug_counters(void) {
#ifdef CYPOE_DEBUG
    PyObject *d = PyDict_New(), *v;
    int i;
    if (d == NULL)
        return NULL;
    for (i = 0; i < CP_DBG_N; i++) {
        v = PyLong_FromLongLong(cp_debug_counts[i]);
        if (v == NULL || PyDict_SetItemString(d, cp_debug_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
#else
    Py_RETURN_NONE;
#endif
}

#endif
