/* The read-only calls: a status (one id, many at once), the balance, and
 * the URLs they request. */
#ifndef ST_STATUS_H
#define ST_STATUS_H

#include "st_client.h"
#include "st_parse.h"

int st_client_status(st_client *c, const char *id, st_status *out,
                     st_error *err);

typedef struct st_status_hooks {
    /* ids[i] is done: s where e->code is ST_OK. */
    void (*on_result)(void *ctx, size_t i, const st_status *s,
                      const st_error *e);
    void *ctx;
} st_status_hooks;

/* Statuses of n ids at once: out[i] where errs[i].code is ST_OK. -1 only
 * for a bad id (err names its index; nothing was sent). hooks may be NULL. */
int st_client_status_many(st_client *c, const char *const *ids, size_t n,
                          st_status *out, st_error *errs,
                          const st_status_hooks *hooks, st_error *err);
int st_client_balance(st_client *c, st_balance *out, st_error *err);

/* The same calls as tasks for a driver: checked (NULL and err for a bad
 * id, nothing sent), their requests not started yet. The arguments, out
 * arrays and hooks must outlive them. */
st_task *st_task_status_many(st_client *c, const char *const *ids, size_t n,
                             st_status *out, st_error *errs,
                             const st_status_hooks *hooks, st_error *err);
st_task *st_task_balance(st_client *c, st_balance *out, st_error *err);

/* The URL a status (of id) or balance call requests; -1 and ST_E_INVALID
 * for a bad id. */
int st_client_build_url(const st_client *c, st_call call, const char *id,
                        st_buf *url, st_error *err);

/* -1 with err naming the first bad id of n (nothing may be sent). */
int st_check_ids(const char *const *ids, size_t n, st_error *err);

/* ---- rounds of status requests, for wait (st_wait.c) ---- */

/* The statuses of ids[which[k]], k < m, as a task (NULL without memory). */
st_task *st_status_round_task(st_client *c, const char *const *ids,
                              const size_t *which, size_t m, st_status *out,
                              st_error *errs);
/* The same round run to its end on the client's transport; without
 * memory each id asked gets that error. */
void st_status_round(st_client *c, const char *const *ids,
                     const size_t *which, size_t m, st_status *out,
                     st_error *errs, const st_status_hooks *hooks);

#endif
