/* Time: a monotonic clock, and a sleep that finishes its time whatever
 * signals come (EINTR) and never overflows time_t. */
#include "st_clock.h"

#include <errno.h>
#include <time.h>

double st_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void st_sleep(double seconds) {
    struct timespec ts;
    if (!(seconds > 0))
        return;
    if (seconds > ST_SLEEP_MAX) /* time_t must not overflow */
        seconds = ST_SLEEP_MAX;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
