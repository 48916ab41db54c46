# The debug counters (includes/debug.h): CP_DBG_INC/CP_DBG_DEC compile to
# nothing unless the build defines CYPOE_DEBUG (CYPOE_DEBUG=1 at build time).

cdef extern from "includes/debug.h":
    enum cp_debug_counter:
        CP_DBG_KERNELS
        CP_DBG_HANDLERS
        CP_DBG_TIMERS
        CP_DBG_SESSIONS
        CP_DBG_READWRITES
        CP_DBG_SOCKETFACTORIES
        CP_DBG_LINGERING
        CP_DBG_TLS_DRIVERS
        CP_DBG_BYTEBUFFERS
        CP_DBG_BUFFER_BLOCKS
        CP_DBG_POOL_BLOCKS
        CP_DBG_CORES
        CP_DBG_SCANS
        CP_DBG_RESP_COUNTERS
        CP_DBG_LOAD_ENGINES
        CP_DBG_LOAD_CONNS
        CP_DBG_LOAD_HISTOGRAMS
        CP_DBG_RESPONSE_PARSERS
        CP_DBG_PARSER_LINES
        CP_DBG_NAME_LOOKUPS
    const bint CP_DEBUG_BUILD
    void CP_DBG_INC(int counter) nogil
    void CP_DBG_DEC(int counter) nogil
    void CP_DBG_ADD(int counter, long long n) nogil
    object cp_debug_counters()
