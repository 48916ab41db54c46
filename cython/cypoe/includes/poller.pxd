# The readiness poller (includes/poller.h): epoll | kqueue | poll behind one
# small C interface, used by the Kernel and by the port scanner.

from libc.stdint cimport uint32_t, int64_t

cdef extern from "includes/poller.h" nogil:
    ctypedef struct cp_event:
        int fd
        int events
        uint32_t gen
    ctypedef struct cp_poller:
        int kind
        int kfd
    int CP_READ, CP_WRITE, CP_ERROR
    int CP_BACKEND_EPOLL, CP_BACKEND_KQUEUE, CP_BACKEND_POLL
    int CP_PRECISE_AUTO, CP_PRECISE_TIMERFD
    int cp_backend_available(int kind)
    int cp_default_backend()
    int cp_poller_init(cp_poller* p, int kind, int max_events)
    int cp_poller_enable_precise(cp_poller* p, int how)
    const char* cp_poller_wait_mechanism(const cp_poller* p)
    void cp_poller_close(cp_poller* p)
    int cp_poller_ctl(cp_poller* p, int fd, uint32_t gen, int old_ev, int new_ev)
    int cp_poller_wait(cp_poller* p, cp_event* out, int max_out, int timeout_ms)
    int cp_poller_wait_ns(cp_poller* p, cp_event* out, int max_out, int64_t timeout_ns)
    int cp_pipe_open(int* rfd, int* wfd)
    int cp_wakeup_open(int* rfd, int* wfd)
    void cp_wakeup_signal(int wfd)
    void cp_wakeup_drain(int rfd)
