/* wait: polls the statuses of ids until each is settled, the timeout
 * passes or the client is stopped; blocking, or as a task for a driver. */
#ifndef ST_WAIT_H
#define ST_WAIT_H

#include "st_status.h"

/* wait never polls more often than this, whatever interval it is given:
 * a tight loop of status requests would flood the gateway. */
#define ST_WAIT_MIN_INTERVAL 1.0
/* -1 and ST_E_INVALID for a negative, NaN or infinite timeout or interval. */
int st_wait_check(double timeout, double interval, st_error *err);
/* Polls the statuses of n distinct ids until each is settled (final, or
 * never accepted by the gateway), the timeout passes or the client is
 * stopped; out/errs as st_client_status_many gives, the last answer for
 * each. -1 only for a bad id or option (nothing was sent). */
int st_client_wait(st_client *c, const char *const *ids, size_t n,
                   double timeout, double interval, st_status *out,
                   st_error *errs, st_error *err);
/* st_client_wait as a task: its rounds' requests, and the pauses between
 * rounds as WAITs with a time. */
st_task *st_task_wait(st_client *c, const char *const *ids, size_t n,
                      double timeout, double interval, st_status *out,
                      st_error *errs, st_error *err);

#endif
