/* Reading the gateway's plain-text answers. Every answer is untrusted input:
 * bounded copies only, and anything unexpected becomes a `gateway` error that
 * quotes (part of) what came. */
#include <stdio.h>
#include <string.h>

#include "st_parse.h"
#include "st_text.h"

static const struct {
    const char *sentence;
    st_code code;
} refusals[] = {
    {"Неправильный логин или пароль", ST_E_AUTH},
    {"Ваш аккаунт заблокирован", ST_E_BLOCKED},
    {"Данное направление закрыто для Вас", ST_E_DIRECTION_CLOSED},
    {"Нет отправителя", ST_E_NO_SENDER},
    {"Нет текста сообщения", ST_E_NO_TEXT},
    {"Такого отправителя нет", ST_E_UNKNOWN_SENDER},
    {"Укажите номер телефона", ST_E_NO_PHONE},
    {"Flood SMS", ST_E_FLOOD},
    {"Сообщение с таким ID не принималось", ST_E_NOT_FOUND},
};

static const struct {
    const char *word;
    st_state state;
    int final;
} states[] = {
    {"deliver", ST_STATE_DELIVERED, 1},
    {"not_deliver", ST_STATE_UNDELIVERED, 1},
    {"expired", ST_STATE_EXPIRED, 1},
    {"read", ST_STATE_READ, 1},
    {"partly_deliver", ST_STATE_PARTLY_DELIVERED, 0},
    {"send", ST_STATE_SENT, 0},
};

static const char *const state_names[] = {
    "delivered", "undelivered", "expired", "read",
    "partly_delivered", "sent", "unknown",
};

const char *st_state_name(st_state s) {
    return state_names[s];
}

st_code st_match_refusal(const char *body, size_t n) {
    size_t i;
    for (i = 0; i < sizeof refusals / sizeof refusals[0]; i++)
        if (st_sentence_equal(body, n, refusals[i].sentence,
                              strlen(refusals[i].sentence)))
            return refusals[i].code;
    return ST_OK;
}

/* Length of the longest prefix of s[0..n) of at most max bytes that does
 * not end inside a UTF-8 sequence. */
static size_t utf8_prefix(const char *s, size_t n, size_t max) {
    size_t len = n < max ? n : max;
    if (len == n)
        return len;
    while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
        len--;
    return len;
}

/* Copies an untrusted answer into a message: at most ST_QUOTE_MAX bytes,
 * control bytes, NULs and malformed UTF-8 shown as '?', so a message is
 * always one line of valid UTF-8. */
static void quote_answer(char *out, size_t cap, const char *s, size_t n) {
    size_t i = 0, o = 0, len = utf8_prefix(s, n, ST_QUOTE_MAX);
    while (i < len && o + 5 < cap) {
        unsigned char ch = (unsigned char)s[i];
        size_t clen = st_utf8_char_len(s + i, len - i);
        if (clen == 0 || ch < 0x20 || ch == 0x7F) {
            out[o++] = '?';
            i += clen ? clen : 1;
        } else {
            memcpy(out + o, s + i, clen);
            o += clen;
            i += clen;
        }
    }
    if (len < n && o + 4 < cap)
        memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
}

static int unexpected(st_error *err, const char *what, const char *s,
                      size_t n) {
    char quoted[ST_QUOTE_MAX + 8];
    if (n == 0)
        return st_fail(err, ST_E_GATEWAY, "gateway sent an empty %s answer",
                       what);
    quote_answer(quoted, sizeof quoted, s, n);
    return st_fail(err, ST_E_GATEWAY, "gateway sent an unreadable %s answer: %s",
                   what, quoted);
}

/* Trims the answer and reports a refusal sentence; 1 when one was found.
 * No sentence starts with a digit or '-', which is how every good send and
 * balance answer starts: those skip the comparisons. */
static int take_refusal(const char **s, size_t *n, st_error *err) {
    char quoted[ST_QUOTE_MAX + 8];
    st_code code;
    st_trim(s, n);
    if (*n > 0 && (((*s)[0] >= '0' && (*s)[0] <= '9') || (*s)[0] == '-'))
        return 0;
    code = st_match_refusal(*s, *n);
    if (code == ST_OK)
        return 0;
    quote_answer(quoted, sizeof quoted, *s, *n);
    st_fail(err, code, "gateway refused: %s", quoted);
    return 1;
}

static int is_id_separator(char ch) {
    return ch == ',' || ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Reads the ids of a trimmed answer; copies at most cap of them. Returns
 * how many there are, or -1 if the answer is not a list of ids. */
static long scan_ids(const char *s, size_t len, char (*ids)[ST_ID_MAX + 1],
                     size_t cap) {
    size_t i = 0, found = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start || i - start > ST_ID_MAX)
            return -1;
        if (found < cap) {
            memcpy(ids[found], s + start, i - start);
            ids[found][i - start] = '\0';
        }
        found++;
        while (i < len && is_id_separator(s[i]))
            i++;
    }
    return found > 0 ? (long)found : -1;
}

size_t st_send_answer_ids(const char *body, size_t n) {
    long found;
    st_trim(&body, &n);
    found = scan_ids(body, n, NULL, 0);
    return found > 0 ? (size_t)found : 0;
}

int st_parse_send_answer(const char *body, size_t n, size_t expected,
                         char (*ids)[ST_ID_MAX + 1], st_error *err) {
    const char *s = body;
    size_t len = n;
    long found;
    if (take_refusal(&s, &len, err))
        return -1;
    found = scan_ids(s, len, ids, expected);
    if (found < 0)
        return unexpected(err, "send", s, len);
    if ((size_t)found != expected) {
        char quoted[ST_QUOTE_MAX + 8];
        quote_answer(quoted, sizeof quoted, s, len);
        return st_fail(err, ST_E_GATEWAY,
                       "gateway sent %ld message ids for %zu recipients: %s",
                       found, expected, quoted);
    }
    return 0;
}

static size_t first_line_len(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && s[i] != '\n' && s[i] != '\r')
        i++;
    return i;
}

/* Copies s[0..n), trimmed, into out (cap bytes) if it fits; -1 if not. */
static int copy_trimmed(char *out, size_t cap, const char *s, size_t n) {
    st_trim(&s, &n);
    if (n >= cap)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

static void classify_state(st_status *out) {
    size_t i;
    out->state = ST_STATE_UNKNOWN;
    out->final = 0;
    for (i = 0; i < sizeof states / sizeof states[0]; i++)
        if (out->raw[0] == states[i].word[0] &&
            strcmp(out->raw, states[i].word) == 0) {
            out->state = states[i].state;
            out->final = states[i].final;
            return;
        }
}

/* A time as gateways write one: digits and the separators of dates and
 * clock times, nothing else (no NUL, no second line). */
static int looks_like_time(const char *s, size_t n) {
    static const char allowed[] = "0123456789-:./ +TZ";
    size_t i;
    for (i = 0; i < n; i++)
        if (!memchr(allowed, s[i], sizeof allowed - 1))
            return 0;
    return 1;
}

static int is_state_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || ch == '_';
}

/* Reads a trimmed answer as a state word and an optional time; -1 when it
 * is not exactly that. */
static int read_state(const char *s, size_t len, st_status *out) {
    const char *when;
    size_t word = 0, when_len;
    while (word < len && is_state_char(s[word]))
        word++;
    when = s + word;
    when_len = len - word;
    if (word == 0 || word >= sizeof out->raw ||
        (when_len > 0 && when[0] != ' ' && when[0] != '\t') ||
        !looks_like_time(when, when_len) ||
        copy_trimmed(out->updated, sizeof out->updated, when, when_len) != 0)
        return -1;
    memcpy(out->raw, s, word);
    out->raw[word] = '\0';
    classify_state(out);
    return 0;
}

/* A status answer is one word of [a-z_], optionally followed by white
 * space and a time, and nothing else: anything more (a second line, a NUL,
 * an HTML page after the word) is not a state the gateway reported. No
 * refusal sentence looks like that (they hold capitals, Cyrillic or
 * several words), so the state is tried first and the sentences, with
 * their case folding, only for what is not one. */
int st_parse_status_answer(const char *body, size_t n, st_status *out,
                           st_error *err) {
    const char *s = body;
    size_t len = n;
    st_trim(&s, &len);
    if (read_state(s, len, out) == 0)
        return 0;
    s = body, len = n;
    if (take_refusal(&s, &len, err))
        return -1;
    return unexpected(err, "status", s, len);
}

/* Reads an unsigned decimal with '.' or ',' as separator without strtod,
 * which would follow the host program's locale. Returns bytes read. */
static size_t read_decimal(const char *s, size_t n, double *value) {
    size_t i = 0;
    double v = 0, scale = 1;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        v = v * 10 + (s[i++] - '0');
    if (i == 0)
        return 0;
    if (i + 1 < n && (s[i] == '.' || s[i] == ',') && s[i + 1] >= '0' &&
        s[i + 1] <= '9') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            v = v * 10 + (s[i] - '0');
            scale *= 10;
        }
    }
    *value = v / scale;
    return i;
}

static int is_currency_char(unsigned char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch >= 0x80 ||
           ch == '.' || ch == '$';
}

int st_parse_balance_answer(const char *body, size_t n, st_balance *out,
                            st_error *err) {
    const char *s = body, *p;
    size_t len = n, line, used, rest, i;
    int negative;
    if (take_refusal(&s, &len, err))
        return -1;
    line = first_line_len(s, len);
    if (line != len || !st_utf8_valid(s, len)) /* one line of text only */
        return unexpected(err, "balance", s, len);
    negative = line > 0 && s[0] == '-';
    p = s + negative;
    used = read_decimal(p, line - negative, &out->balance);
    rest = line - negative - used;
    for (i = 0; i < rest && (p[used + i] == ' ' || p[used + i] == '\t'); i++)
        ;
    if (used == 0 || (i == 0 && rest > 0))
        return unexpected(err, "balance", s, len);
    for (; i < rest; i++)
        if (!is_currency_char((unsigned char)p[used + i]))
            return unexpected(err, "balance", s, len);
    if (copy_trimmed(out->currency, sizeof out->currency, p + used,
                     rest) != 0 ||
        !st_utf8_valid(out->currency, strlen(out->currency)) ||
        copy_trimmed(out->raw, sizeof out->raw, s, len) != 0)
        return unexpected(err, "balance", s, len);
    if (negative)
        out->balance = -out->balance;
    return 0;
}
