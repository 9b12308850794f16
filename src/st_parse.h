/* Reading the gateway's plain-text answers: ids, states, balances and
 * refusal sentences. */
#ifndef ST_PARSE_H
#define ST_PARSE_H

#include <stddef.h>

#include "st_error.h"
#include "st_validate.h"

typedef enum st_state {
    ST_STATE_DELIVERED,
    ST_STATE_UNDELIVERED,
    ST_STATE_EXPIRED,
    ST_STATE_READ,
    ST_STATE_PARTLY_DELIVERED,
    ST_STATE_SENT,
    ST_STATE_UNKNOWN
} st_state;

typedef struct st_status {
    st_state state;
    int final;
    char raw[64];      /* the state word as the gateway wrote it */
    char updated[128]; /* "" when the gateway gave no time */
} st_status;

typedef struct st_balance {
    double balance;
    char currency[32]; /* "" when none */
    char raw[128];
} st_balance;

const char *st_state_name(st_state s);
/* A gateway refusal sentence in body, or ST_OK if the body is not one. */
st_code st_match_refusal(const char *body, size_t n);
/* Each parser first recognises refusals (err->code is then the refusal). */
int st_parse_send_answer(const char *body, size_t n, size_t expected,
                         char (*ids)[ST_ID_MAX + 1], st_error *err);
/* How many ids a well-formed send answer holds; 0 for anything else. */
size_t st_send_answer_ids(const char *body, size_t n);
int st_parse_status_answer(const char *body, size_t n, st_status *out,
                           st_error *err);
int st_parse_balance_answer(const char *body, size_t n, st_balance *out,
                            st_error *err);

#endif
