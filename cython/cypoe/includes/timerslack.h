/* The calling thread's timer slack (Linux: prctl PR_{GET,SET}_TIMERSLACK).
 *
 * epoll_pwait2() and ppoll() sleeps are stretched by the thread's timer slack
 * (50 us by default), so a timer would fire about 50 us late on an idle loop.
 * Kernel.run() sets the slack to 1 us while it runs and puts the old value
 * back when it returns.  Elsewhere these do nothing and report -1.
 */
#ifndef CYPOE_TIMERSLACK_H
#define CYPOE_TIMERSLACK_H

#if defined(__linux__)
#include <sys/prctl.h>
static long cp_timer_slack_get(void) {
    return (long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
}
static int cp_timer_slack_set(long ns) {
    if (ns <= 0) return -1;
    return prctl(PR_SET_TIMERSLACK, (unsigned long)ns, 0, 0, 0);
}
#else
static long cp_timer_slack_get(void) { return -1; }
static int cp_timer_slack_set(long ns) { (void)ns; return -1; }
#endif

#endif
