/* Time: a monotonic clock and a sleep that finishes its time. Plain C. */
#ifndef ST_CLOCK_H
#define ST_CLOCK_H

/* Seconds on a monotonic clock, and a sleep that finishes its time (at
 * most ST_SLEEP_MAX seconds; NaN or less than 0 sleeps not at all). */
#define ST_SLEEP_MAX 1e6
double st_now(void);
void st_sleep(double seconds);

#endif
