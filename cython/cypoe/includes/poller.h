/* The readiness backends of cypoe's Kernel behind one small interface.
 *
 * cp_poller_wait() runs without the GIL and touches nothing but the poller's
 * own memory.  Each returned event carries the generation the fd had when it
 * was registered, so the kernel can drop events for an fd that was closed
 * (and maybe reused) earlier in the same loop iteration.
 *
 * epoll is compiled on Linux, kqueue on the BSDs and macOS, poll everywhere.
 *
 * Timeouts.  cp_poller_wait_ns() waits with a nanosecond timeout, so that a
 * timer due in 300 us is not slept through to the next whole millisecond:
 * kqueue takes a timespec, the poll backend uses ppoll() where it exists,
 * and epoll uses epoll_pwait2() (Linux 5.11; called through syscall() so an
 * older glibc does not matter).  Where epoll_pwait2 is missing (ENOSYS, or
 * EPERM from a seccomp filter that does not know it), a timerfd watched by
 * the epoll set is armed with the precise timeout instead.  The precise
 * mode is chosen by cp_poller_enable_precise(); without it the timeout is
 * rounded up to whole milliseconds (the scanner's poller, which only ever
 * waits 0 ms through cp_poller_wait()).
 */
#ifndef CYPOE_POLLER_H
#define CYPOE_POLLER_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>

#if defined(__linux__)
#  define CP_HAVE_EPOLL 1
#  include <sys/epoll.h>
#  include <sys/eventfd.h>
#  include <sys/timerfd.h>
#  include <sys/syscall.h>
#  ifndef __NR_epoll_pwait2
#    define __NR_epoll_pwait2 441   /* the same on every architecture since 5.1 */
#  endif
#else
#  define CP_HAVE_EPOLL 0
#endif

#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#  define CP_HAVE_KQUEUE 1
#  include <sys/types.h>
#  include <sys/event.h>
#  include <sys/time.h>
#else
#  define CP_HAVE_KQUEUE 0
#endif

#define CP_READ 1
#define CP_WRITE 2
/* Error or hang-up: reported together with READ|WRITE of the interest so the
 * handler meets the error in its own recv/send. */
#define CP_ERROR 4

#define CP_BACKEND_EPOLL 1
#define CP_BACKEND_KQUEUE 2
#define CP_BACKEND_POLL 3

#if defined(__linux__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#  define CP_HAVE_PPOLL 1
#else
#  define CP_HAVE_PPOLL 0
#endif

/* How a wait's timeout is honoured (cp_poller.wait_mode). */
#define CP_WAIT_MS 0             /* whole milliseconds, rounded up */
#define CP_WAIT_EPOLL_PWAIT2 1   /* epoll_pwait2: a timespec */
#define CP_WAIT_EPOLL_TIMERFD 2  /* epoll_wait + a timerfd armed in ns */
#define CP_WAIT_KEVENT 3         /* kevent: a timespec */
#define CP_WAIT_PPOLL 4          /* ppoll: a timespec */

/* cp_poller_enable_precise(): how to choose for epoll. */
#define CP_PRECISE_AUTO 0
#define CP_PRECISE_TIMERFD 1     /* skip epoll_pwait2 (tests of the fallback) */

typedef struct {
    int fd;
    int events;
    uint32_t gen;
} cp_event;

typedef struct {
    int kind;
    int kfd;                 /* epoll or kqueue fd, -1 for poll */
    /* epoll/kqueue: scratch for the kernel's answer */
    void *native;
    int native_cap;
    /* poll: the pollfd array, a position per fd, a generation per slot */
    struct pollfd *pfds;
    uint32_t *pgens;
    int npfds;
    int pcap;
    int *pos;                /* pos[fd] = index in pfds, or -1 */
    int poscap;
    int wait_mode;           /* CP_WAIT_* */
    int tfd;                 /* CP_WAIT_EPOLL_TIMERFD: the timerfd, else -1 */
} cp_poller;

static int cp_backend_available(int kind) {
    if (kind == CP_BACKEND_POLL) return 1;
    if (kind == CP_BACKEND_EPOLL) return CP_HAVE_EPOLL;
    if (kind == CP_BACKEND_KQUEUE) return CP_HAVE_KQUEUE;
    return 0;
}

static int cp_default_backend(void) {
    if (CP_HAVE_EPOLL) return CP_BACKEND_EPOLL;
    if (CP_HAVE_KQUEUE) return CP_BACKEND_KQUEUE;
    return CP_BACKEND_POLL;
}

static int cp_poller_init(cp_poller *p, int kind, int max_events) {
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->kfd = -1;
    p->tfd = -1;
    p->wait_mode = CP_WAIT_MS;
    if (max_events < 1) max_events = 1;
#if CP_HAVE_EPOLL
    if (kind == CP_BACKEND_EPOLL) {
        p->kfd = epoll_create1(EPOLL_CLOEXEC);
        if (p->kfd < 0) return -1;
        p->native = malloc(sizeof(struct epoll_event) * (size_t)max_events);
        if (!p->native) { close(p->kfd); p->kfd = -1; errno = ENOMEM; return -1; }
        p->native_cap = max_events;
        return 0;
    }
#endif
#if CP_HAVE_KQUEUE
    if (kind == CP_BACKEND_KQUEUE) {
        p->kfd = kqueue();
        if (p->kfd < 0) return -1;
        (void)fcntl(p->kfd, F_SETFD, FD_CLOEXEC);
        p->native = malloc(sizeof(struct kevent) * (size_t)max_events);
        if (!p->native) { close(p->kfd); p->kfd = -1; errno = ENOMEM; return -1; }
        p->native_cap = max_events;
        return 0;
    }
#endif
    if (kind == CP_BACKEND_POLL) {
        return 0;
    }
    errno = ENOSYS;
    return -1;
}

static void cp_poller_close(cp_poller *p) {
    if (p->kfd >= 0) close(p->kfd);
    p->kfd = -1;
    if (p->tfd >= 0) close(p->tfd);
    p->tfd = -1;
    free(p->native); p->native = NULL;
    free(p->pfds); p->pfds = NULL;
    free(p->pgens); p->pgens = NULL;
    free(p->pos); p->pos = NULL;
    p->npfds = p->pcap = p->poscap = p->native_cap = 0;
}

static short cp_poll_mask(int events) {
    short m = 0;
    if (events & CP_READ) m |= POLLIN;
    if (events & CP_WRITE) m |= POLLOUT;
    return m;
}

static int cp_poll_ctl(cp_poller *p, int fd, uint32_t gen, int old_ev, int new_ev) {
    int i;
    if (fd >= p->poscap) {
        int ncap = p->poscap ? p->poscap : 64;
        int *np;
        while (ncap <= fd) ncap *= 2;
        np = (int *)realloc(p->pos, sizeof(int) * (size_t)ncap);
        if (!np) { errno = ENOMEM; return -1; }
        for (i = p->poscap; i < ncap; i++) np[i] = -1;
        p->pos = np;
        p->poscap = ncap;
    }
    i = p->pos[fd];
    if (new_ev == 0) {
        if (i >= 0) {
            int last = p->npfds - 1;
            if (i != last) {
                p->pfds[i] = p->pfds[last];
                p->pgens[i] = p->pgens[last];
                p->pos[p->pfds[i].fd] = i;
            }
            p->npfds--;
            p->pos[fd] = -1;
        }
        return 0;
    }
    if (i < 0) {
        if (p->npfds == p->pcap) {
            int ncap = p->pcap ? p->pcap * 2 : 64;
            struct pollfd *nf = (struct pollfd *)realloc(p->pfds, sizeof(struct pollfd) * (size_t)ncap);
            uint32_t *ng;
            if (!nf) { errno = ENOMEM; return -1; }
            p->pfds = nf;
            ng = (uint32_t *)realloc(p->pgens, sizeof(uint32_t) * (size_t)ncap);
            if (!ng) { errno = ENOMEM; return -1; }
            p->pgens = ng;
            p->pcap = ncap;
        }
        i = p->npfds++;
        p->pos[fd] = i;
        p->pfds[i].fd = fd;
    }
    p->pfds[i].events = cp_poll_mask(new_ev);
    p->pfds[i].revents = 0;
    p->pgens[i] = gen;
    (void)old_ev;
    return 0;
}

/* Change what fd is watched for: old_ev -> new_ev (CP_READ|CP_WRITE, 0 = none). */
static int cp_poller_ctl(cp_poller *p, int fd, uint32_t gen, int old_ev, int new_ev) {
#if CP_HAVE_EPOLL
    if (p->kind == CP_BACKEND_EPOLL) {
        struct epoll_event ev;
        int op;
        if (old_ev == new_ev) return 0;
        memset(&ev, 0, sizeof(ev));
        if (new_ev & CP_READ) ev.events |= EPOLLIN;
        if (new_ev & CP_WRITE) ev.events |= EPOLLOUT;
        ev.data.u64 = ((uint64_t)gen << 32) | (uint32_t)fd;
        if (old_ev == 0) op = EPOLL_CTL_ADD;
        else if (new_ev == 0) op = EPOLL_CTL_DEL;
        else op = EPOLL_CTL_MOD;
        if (epoll_ctl(p->kfd, op, fd, &ev) < 0) {
            /* The fd may have been closed behind our back: removal is done. */
            if (op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT)) return 0;
            if (op == EPOLL_CTL_ADD && errno == EEXIST)
                return epoll_ctl(p->kfd, EPOLL_CTL_MOD, fd, &ev);
            if (op == EPOLL_CTL_MOD && errno == ENOENT)
                return epoll_ctl(p->kfd, EPOLL_CTL_ADD, fd, &ev);
            return -1;
        }
        return 0;
    }
#endif
#if CP_HAVE_KQUEUE
    if (p->kind == CP_BACKEND_KQUEUE) {
        struct kevent ch[2];
        int n = 0;
        void *udata = (void *)(uintptr_t)gen;
        if ((new_ev & CP_READ) && !(old_ev & CP_READ)) {
            EV_SET(&ch[n], fd, EVFILT_READ, EV_ADD | EV_ENABLE, 0, 0, udata); n++;
        } else if (!(new_ev & CP_READ) && (old_ev & CP_READ)) {
            EV_SET(&ch[n], fd, EVFILT_READ, EV_DELETE, 0, 0, udata); n++;
        }
        if ((new_ev & CP_WRITE) && !(old_ev & CP_WRITE)) {
            EV_SET(&ch[n], fd, EVFILT_WRITE, EV_ADD | EV_ENABLE, 0, 0, udata); n++;
        } else if (!(new_ev & CP_WRITE) && (old_ev & CP_WRITE)) {
            EV_SET(&ch[n], fd, EVFILT_WRITE, EV_DELETE, 0, 0, udata); n++;
        }
        if (n == 0) return 0;
        if (kevent(p->kfd, ch, n, NULL, 0, NULL) < 0) {
            if (new_ev == 0 && (errno == EBADF || errno == ENOENT)) return 0;
            return -1;
        }
        return 0;
    }
#endif
    if (p->kind == CP_BACKEND_POLL) return cp_poll_ctl(p, fd, gen, old_ev, new_ev);
    errno = ENOSYS;
    return -1;
}

#if CP_HAVE_EPOLL
/* The epoll data of the timerfd: no watched fd has it (fd -1). */
#define CP_TIMERFD_MARK UINT64_MAX

/* The kernel's struct __kernel_timespec: 64-bit fields on every ABI. */
typedef struct { int64_t tv_sec; int64_t tv_nsec; } cp_kernel_timespec;

static int cp_epoll_pwait2(int epfd, struct epoll_event *evs, int max, int64_t timeout_ns) {
    cp_kernel_timespec ts;
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    return (int)syscall(__NR_epoll_pwait2, epfd, evs, max,
                        timeout_ns < 0 ? NULL : &ts, NULL, (size_t)0);
}
#endif

/* Choose the most precise wait this system offers (see the top of this
 * file).  Returns 0, or -1 with errno when the timerfd the epoll fallback
 * needs cannot be made (EMFILE...). */
static int cp_poller_enable_precise(cp_poller *p, int how) {
#if CP_HAVE_EPOLL
    if (p->kind == CP_BACKEND_EPOLL) {
        struct epoll_event probe, ev;
        if (how != CP_PRECISE_TIMERFD) {
            /* A zero-timeout call on our own (empty) set: 0 when supported. */
            if (cp_epoll_pwait2(p->kfd, &probe, 1, 0) >= 0) {
                p->wait_mode = CP_WAIT_EPOLL_PWAIT2;
                return 0;
            }
            if (errno != ENOSYS && errno != EPERM) return -1;
        }
        p->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (p->tfd < 0) return -1;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.u64 = CP_TIMERFD_MARK;
        if (epoll_ctl(p->kfd, EPOLL_CTL_ADD, p->tfd, &ev) < 0) {
            int e = errno;
            close(p->tfd);
            p->tfd = -1;
            errno = e;
            return -1;
        }
        p->wait_mode = CP_WAIT_EPOLL_TIMERFD;
        return 0;
    }
#endif
#if CP_HAVE_KQUEUE
    if (p->kind == CP_BACKEND_KQUEUE) { p->wait_mode = CP_WAIT_KEVENT; return 0; }
#endif
#if CP_HAVE_PPOLL
    if (p->kind == CP_BACKEND_POLL) { p->wait_mode = CP_WAIT_PPOLL; return 0; }
#endif
    (void)how;
    return 0;
}

static const char *cp_poller_wait_mechanism(const cp_poller *p) {
    switch (p->wait_mode) {
    case CP_WAIT_EPOLL_PWAIT2: return "epoll_pwait2";
    case CP_WAIT_EPOLL_TIMERFD: return "timerfd";
    case CP_WAIT_KEVENT: return "kevent";
    case CP_WAIT_PPOLL: return "ppoll";
    default: return "milliseconds";
    }
}

/* timeout_ns rounded up to whole milliseconds, for the millisecond calls. */
static int cp_timeout_ms(int64_t timeout_ns) {
    if (timeout_ns < 0) return -1;
    if (timeout_ns > (int64_t)86400 * 1000000000) return 86400000;
    return (int)((timeout_ns + 999999) / 1000000);
}

/* Wait up to timeout_ns (-1: for ever) and fill out[0..n).  Returns n, or -1
 * with errno (EINTR included: the caller decides).  Call without the GIL. */
static int cp_poller_wait_ns(cp_poller *p, cp_event *out, int max_out, int64_t timeout_ns) {
    int n, i, k = 0;
#if CP_HAVE_EPOLL
    if (p->kind == CP_BACKEND_EPOLL) {
        struct epoll_event *evs = (struct epoll_event *)p->native;
        int wait_ms = cp_timeout_ms(timeout_ns);
        if (max_out > p->native_cap) max_out = p->native_cap;
        if (p->wait_mode == CP_WAIT_EPOLL_PWAIT2) {
            n = cp_epoll_pwait2(p->kfd, evs, max_out, timeout_ns);
        } else {
            if (p->wait_mode == CP_WAIT_EPOLL_TIMERFD && timeout_ns > 0) {
                /* The timerfd wakes us at the precise time; the millisecond
                 * timeout stays as a backstop.  An armed timer left over from
                 * a wait that ended early at most wakes one later wait. */
                struct itimerspec its;
                memset(&its, 0, sizeof(its));
                its.it_value.tv_sec = (time_t)(timeout_ns / 1000000000);
                its.it_value.tv_nsec = (long)(timeout_ns % 1000000000);
                if (timerfd_settime(p->tfd, 0, &its, NULL) == 0) wait_ms = -1;
            }
            n = epoll_wait(p->kfd, evs, max_out, wait_ms);
        }
        if (n < 0) return -1;
        for (i = 0; i < n; i++) {
            uint32_t e = evs[i].events;
            int m = 0;
            if (evs[i].data.u64 == CP_TIMERFD_MARK) {
                /* Our timer fired: consume it (level-triggered) and skip. */
                uint64_t ticks;
                ssize_t r;
                do { r = read(p->tfd, &ticks, sizeof(ticks)); } while (r < 0 && errno == EINTR);
                continue;
            }
            if (e & (EPOLLIN | EPOLLPRI | EPOLLRDHUP)) m |= CP_READ;
            if (e & EPOLLOUT) m |= CP_WRITE;
            if (e & (EPOLLERR | EPOLLHUP)) m |= CP_ERROR;
            out[k].fd = (int)(uint32_t)(evs[i].data.u64 & 0xffffffffu);
            out[k].gen = (uint32_t)(evs[i].data.u64 >> 32);
            out[k].events = m;
            k++;
        }
        return k;
    }
#endif
#if CP_HAVE_KQUEUE
    if (p->kind == CP_BACKEND_KQUEUE) {
        struct kevent *evs = (struct kevent *)p->native;
        struct timespec ts, *tsp = NULL;
        if (max_out > p->native_cap) max_out = p->native_cap;
        if (timeout_ns >= 0) {
            if (p->wait_mode != CP_WAIT_KEVENT)
                timeout_ns = (int64_t)cp_timeout_ms(timeout_ns) * 1000000;
            ts.tv_sec = (time_t)(timeout_ns / 1000000000);
            ts.tv_nsec = (long)(timeout_ns % 1000000000);
            tsp = &ts;
        }
        n = kevent(p->kfd, NULL, 0, evs, max_out, tsp);
        if (n < 0) return -1;
        for (i = 0; i < n; i++) {
            int m = 0;
            if (evs[i].filter == EVFILT_READ) m |= CP_READ;
            else if (evs[i].filter == EVFILT_WRITE) m |= CP_WRITE;
            if (evs[i].flags & (EV_ERROR | EV_EOF)) m |= CP_ERROR;
            out[k].fd = (int)evs[i].ident;
            out[k].gen = (uint32_t)(uintptr_t)evs[i].udata;
            out[k].events = m;
            k++;
        }
        return k;
    }
#endif
    if (p->kind == CP_BACKEND_POLL) {
#if CP_HAVE_PPOLL
        if (p->wait_mode == CP_WAIT_PPOLL) {
            struct timespec ts;
            ts.tv_sec = (time_t)(timeout_ns / 1000000000);
            ts.tv_nsec = (long)(timeout_ns % 1000000000);
            n = ppoll(p->pfds, (nfds_t)p->npfds, timeout_ns < 0 ? NULL : &ts, NULL);
        } else
#endif
        n = poll(p->pfds, (nfds_t)p->npfds, cp_timeout_ms(timeout_ns));
        if (n < 0) return -1;
        for (i = 0; i < p->npfds && k < max_out && n > 0; i++) {
            short r = p->pfds[i].revents;
            int m = 0;
            if (!r) continue;
            n--;
            if (r & (POLLIN | POLLPRI)) m |= CP_READ;
            if (r & POLLOUT) m |= CP_WRITE;
            if (r & (POLLERR | POLLHUP | POLLNVAL)) m |= CP_ERROR;
            out[k].fd = p->pfds[i].fd;
            out[k].gen = p->pgens[i];
            out[k].events = m;
            k++;
        }
        return k;
    }
    errno = ENOSYS;
    return -1;
}

/* The millisecond wait (the scanner's): -1 waits for ever. */
static int cp_poller_wait(cp_poller *p, cp_event *out, int max_out, int timeout_ms) {
    return cp_poller_wait_ns(p, out, max_out, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000);
}

/* A non-blocking, close-on-exec pipe. */
static int cp_pipe_open(int *rfd, int *wfd) {
    int fds[2], i;
#if defined(__linux__)
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) { *rfd = fds[0]; *wfd = fds[1]; return 0; }
#endif
    if (pipe(fds) < 0) return -1;
    for (i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        fcntl(fds[i], F_SETFL, fl | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    *rfd = fds[0];
    *wfd = fds[1];
    return 0;
}

/* A wakeup channel for call_soon_threadsafe: an eventfd on Linux, a pipe
 * elsewhere.  Both ends non-blocking and close-on-exec. */
static int cp_wakeup_open(int *rfd, int *wfd) {
#if CP_HAVE_EPOLL
    int e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e >= 0) { *rfd = e; *wfd = e; return 0; }
    if (errno == EMFILE || errno == ENFILE) return -1;
#endif
    return cp_pipe_open(rfd, wfd);
}

static void cp_wakeup_signal(int wfd) {
    uint64_t one = 1;
    ssize_t r;
    do { r = write(wfd, &one, sizeof(one)); } while (r < 0 && errno == EINTR);
}

static void cp_wakeup_drain(int rfd) {
    char buf[256];
    ssize_t r;
    do { r = read(rfd, buf, sizeof(buf)); } while (r > 0 || (r < 0 && errno == EINTR));
}

#endif /* CYPOE_POLLER_H */
