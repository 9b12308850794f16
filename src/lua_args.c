/* Argument readers, result pushers and the call box. Readers take lists
 * raw (no __index/__len runs while C holds a position in them) and table
 * fields with ordinary access (a field given through __index counts); each
 * value read is copied or anchored before the next one is read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_bind.h"

/* ---- the call box ------------------------------------------------------- */

call_box *box_push(lua_State *L) {
    call_box *box = (call_box *)lua_newuserdata(L, sizeof *box);
    memset(box, 0, sizeof *box);
    box->ref = LUA_NOREF;
    luaL_getmetatable(L, BOX_MT);
    lua_setmetatable(L, -2);
    return box;
}

static void free_items(call_box *box) {
    size_t i;
    for (i = 0; i < box->nitems; i++) {
        if (box->item_recipients)
            st_recipients_free(&box->item_recipients[i]);
    }
    free(box->items);
    free(box->item_recipients);
    box->items = NULL;
    box->item_recipients = NULL;
    box->nitems = 0;
}

void box_release(lua_State *L, call_box *box) {
    if (box->ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, box->ref);
        box->ref = LUA_NOREF;
    }
    st_recipients_free(&box->recipients);
    st_send_result_free(&box->result);
    free_items(box);
    free((void *)box->ids);
    free(box->statuses);
    free(box->errors);
    free(box->answer_ids);
    st_buf_free(&box->url);
    st_buf_free(&box->aux);
    box->ids = NULL;
    box->statuses = NULL;
    box->errors = NULL;
    box->answer_ids = NULL;
    box->nids = 0;
    box->busy = 0;
    box->anchored = 0;
}

int box_gc(lua_State *L) {
    box_release(L, (call_box *)luaL_checkudata(L, 1, BOX_MT));
    return 0;
}

/* ---- errors ------------------------------------------------------------- */

/* The API name of an error's code; the core's out of memory becomes
 * Lua's own memory error here, the one place it reaches Lua (API.md: never
 * `network` or `invalid`). Every code a binding pushes goes through it. */
/* Out of memory in the core, raised as Lua raises its own: the bare
 * message, no position (the string lives in every state: pushing it
 * allocates nothing). */
int lst_nomem(lua_State *L) {
    lua_pushliteral(L, "not enough memory");
    return lua_error(L);
}

const char *lst_code_name(lua_State *L, st_code code) {
    if (code == ST_E_NOMEM)
        lst_nomem(L);
    return st_code_name(code);
}

int push_failure(lua_State *L, const st_error *err) {
    const char *code = lst_code_name(L, err->code);
    lua_pushnil(L);
    lua_pushstring(L, err->message);
    lua_pushstring(L, code);
    return 3;
}

int push_closed(lua_State *L) {
    st_error err;
    st_fail(&err, ST_E_CLOSED, "client is closed");
    return push_failure(L, &err);
}

/* Arguments are counted as the caller sees them: a method's client is not
 * counted, a module function ("st.parse") has none. */
static int shown_arg(const char *method, int idx) {
    return strncmp(method, "st.", 3) == 0 ? idx : idx - 1;
}

int arg_error(lua_State *L, const char *method, int idx, const char *why) {
    return luaL_error(L, "bad argument #%d to '%s' (%s)",
                      shown_arg(method, idx), method, why);
}

static int type_error(lua_State *L, const char *method, int arg, int idx,
                      const char *want) {
    return arg_error(L, method, arg,
                     lua_pushfstring(L, "%s expected, got %s", want,
                                     luaL_typename(L, idx)));
}

void check_table_arg(lua_State *L, const char *method, int arg) {
    if (lua_type(L, arg) != LUA_TTABLE)
        type_error(L, method, arg, arg, "table");
}

const char *check_string_arg(lua_State *L, const char *method, int arg,
                             size_t *len) {
    if (lua_type(L, arg) != LUA_TSTRING)
        type_error(L, method, arg, arg, "string");
    return lua_tolstring(L, arg, len);
}

/* ---- results ------------------------------------------------------------ */

void set_string(lua_State *L, const char *key, const char *value) {
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

void set_number(lua_State *L, const char *key, double value) {
    lua_pushnumber(L, (lua_Number)value);
    lua_setfield(L, -2, key);
}

void set_integer(lua_State *L, const char *key, double value) {
    lua_pushinteger(L, (lua_Integer)value);
    lua_setfield(L, -2, key);
}

void push_error_record(lua_State *L, const st_error *err) {
    const char *code = lst_code_name(L, err->code);
    lua_createtable(L, 0, 2);
    set_string(L, "err", err->message);
    set_string(L, "code", code);
}

/* A send's failure says whether the gateway may have the request: `sent`
 * is false only when it provably never left (API.md). */
void push_send_error_record(lua_State *L, const st_error *err, int sent) {
    push_error_record(L, err);
    lua_pushboolean(L, sent);
    lua_setfield(L, -2, "sent");
}

int push_send_failure(lua_State *L, const st_error *err, int sent) {
    push_failure(L, err);
    lua_pushboolean(L, sent);
    return 4;
}

void push_send_result(lua_State *L, const st_send_result *res) {
    size_t i;
    lua_createtable(L, (int)res->count, 0);
    for (i = 0; i < res->count; i++) {
        const st_send_record *rec = &res->records[i];
        lua_createtable(L, 0, rec->id[0] ? 2 : 3); /* to, and id or err+code */
        set_string(L, "to", rec->to);
        if (rec->id[0]) {
            set_string(L, "id", rec->id);
        } else {
            const st_error *e = &res->errors[rec->chunk];
            set_string(L, "err", e->message);
            set_string(L, "code", lst_code_name(L, e->code));
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
}

void push_status(lua_State *L, const char *id, const st_status *s) {
    /* id (here or by the caller), state, raw, final [, updated]: four
     * fields take a hash part half the size of five */
    lua_createtable(L, 0, s->updated[0] ? 5 : 4);
    if (id)
        set_string(L, "id", id);
    set_string(L, "state", st_state_name(s->state));
    set_string(L, "raw", s->raw);
    lua_pushboolean(L, s->final);
    lua_setfield(L, -2, "final");
    if (s->updated[0])
        set_string(L, "updated", s->updated);
}

void push_balance(lua_State *L, const st_balance *b) {
    lua_createtable(L, 0, b->currency[0] ? 3 : 2);
    set_number(L, "balance", b->balance);
    set_string(L, "raw", b->raw);
    if (b->currency[0])
        set_string(L, "currency", b->currency);
}

/* ---- recipients --------------------------------------------------------- */

/* A phone number given as a Lua number: its decimal digits, or NULL when
 * it is not a whole number (a type error). Negative numbers and numbers
 * too large for 15 digits come back as text the phone check refuses. */
static const char *number_digits(lua_State *L, int idx, char *buf,
                                 size_t cap) {
    lua_Number v = lua_tonumber(L, idx);
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        if (i < 0) /* "-7903..." would pass as a number with a dash */
            snprintf(buf, cap, "%s", "out of range");
        else
            snprintf(buf, cap, "%lld", (long long)i);
        return buf;
    }
#endif
    if (!(v == floor(v)) || !isfinite((double)v))
        return NULL;
    if (v < 0 || v >= 1e16)
        snprintf(buf, cap, "%s", "out of range");
    else
        snprintf(buf, cap, "%.0f", (double)v);
    return buf;
}

/* Why the value at idx cannot be a recipient (a string, or a whole
 * number), or NULL. */
static const char *recipient_type_problem(lua_State *L, int idx) {
    char digits[64];
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING)
        return NULL;
    if (t == LUA_TNUMBER)
        return number_digits(L, idx, digits, sizeof digits)
                   ? NULL
                   : "a phone number given as a number must be a whole number";
    return "want a string or a whole number";
}

/* Why the value at idx is not a recipient list (one recipient, or a list
 * of them read raw): a message pushed on the stack, or NULL. */
static const char *recipients_type_problem(lua_State *L, int idx) {
    size_t i, n;
    const char *why;
    if (lua_type(L, idx) != LUA_TTABLE) {
        why = recipient_type_problem(L, idx);
        return why ? lua_pushfstring(L, "%s (got %s)", why,
                                     luaL_typename(L, idx))
                   : NULL;
    }
    n = lua_rawlen(L, idx);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        why = recipient_type_problem(L, -1);
        if (why) {
            why = lua_pushfstring(L, "recipient %d: %s (got %s)", (int)i, why,
                                  luaL_typename(L, -1));
            lua_remove(L, -2);
            return why;
        }
        lua_pop(L, 1);
    }
    return NULL;
}

/* Adds the one recipient (string or whole number) at idx. */
static int add_recipient(lua_State *L, int idx, st_recipients *r,
                         st_error *err) {
    char digits[64];
    size_t len;
    const char *s;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        s = number_digits(L, idx, digits, sizeof digits);
        len = strlen(s);
    } else {
        s = lua_tolstring(L, idx, &len);
    }
    return st_recipients_add(r, s, len, err);
}

/* Copies the recipients at idx, whose types are known to be right. No Lua
 * object is made meanwhile, so nothing can change the list under us. */
static int copy_recipients(lua_State *L, int idx, st_recipients *r,
                           st_error *err) {
    size_t i, n;
    if (lua_type(L, idx) != LUA_TTABLE)
        return add_recipient(L, idx, r, err);
    n = lua_rawlen(L, idx);
    if (n == 0)
        return st_fail(err, ST_E_INVALID, "invalid recipients: none given");
    for (i = 1; i <= n; i++) {
        int rc;
        lua_rawgeti(L, idx, (int)i);
        rc = add_recipient(L, -1, r, err);
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int read_recipients(lua_State *L, const char *method, int arg,
                    st_recipients *r, st_error *err) {
    const char *why = recipients_type_problem(L, arg);
    if (why)
        arg_error(L, method, arg, why);
    return copy_recipients(L, arg, r, err);
}

/* ---- send arguments ----------------------------------------------------- */

/* The keys a send's opts (or a send_many item) may hold: a typo such as
 * "sendr" must not silently send with the default sender. */
enum send_key { KEY_NONE, KEY_TO, KEY_TEXT, KEY_SENDER, KEY_CALLBACK_URL,
                KEY_NAME };

/* Which of them key is (by its first byte first: a bulk call asks this
 * for every field of every item). */
static enum send_key send_key(const char *key) {
    switch (key[0]) {
    case 't':
        return strcmp(key, "to") == 0     ? KEY_TO
               : strcmp(key, "text") == 0 ? KEY_TEXT
                                          : KEY_NONE;
    case 's':
        return strcmp(key, "sender") == 0 ? KEY_SENDER : KEY_NONE;
    case 'c':
        return strcmp(key, "callback_url") == 0 ? KEY_CALLBACK_URL : KEY_NONE;
    case 'n':
        return strcmp(key, "name") == 0 ? KEY_NAME : KEY_NONE;
    default:
        return KEY_NONE;
    }
}

static int is_send_key(const char *key) { return send_key(key) != KEY_NONE; }

/* -1 with err when the table at idx holds a key no send reads; raw, so no
 * user code runs. */
static int check_send_keys(lua_State *L, int idx, st_error *err) {
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            !is_send_key(lua_tostring(L, -2))) {
            int is_string = lua_type(L, -2) == LUA_TSTRING;
            st_fail(err, ST_E_INVALID,
                    "invalid send option %s%.40s%s: the keys are sender, "
                    "callback_url and name",
                    is_string ? "'" : "(a key of type ",
                    is_string ? lua_tostring(L, -2) : luaL_typename(L, -2),
                    is_string ? "'" : ")");
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

typedef enum field_state { FIELD_OK, FIELD_WRONG_TYPE, FIELD_BAD_VALUE } field_state;

/* Reads tbl[key] with ordinary access and leaves the value on the stack
 * (anchoring it); answers the string, or NULL when absent or bad, with
 * *state set to say which (left alone when fine). */
static const char *string_field(lua_State *L, int tbl, const char *key,
                                int may_be_empty, size_t *len,
                                field_state *state) {
    const char *s;
    size_t n;
    lua_getfield(L, tbl, key);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING) {
        *state = FIELD_WRONG_TYPE;
        return NULL;
    }
    s = lua_tolstring(L, -1, &n);
    if ((n == 0 && !may_be_empty) || strlen(s) != n) {
        if (*state == FIELD_OK)
            *state = FIELD_BAD_VALUE;
        return NULL;
    }
    if (len)
        *len = n;
    return s;
}

/* sender, callback_url and name of the table at idx, their values left
 * on the stack (3 slots); idx may hold nil. */
static field_state read_send_options(lua_State *L, int idx,
                                     st_send_params *p) {
    field_state state = FIELD_OK;
    p->sender = p->callback_url = p->name = NULL;
    if (lua_isnil(L, idx)) {
        lua_settop(L, lua_gettop(L) + 3);
        return FIELD_OK;
    }
    p->sender = string_field(L, idx, "sender", 0, NULL, &state);
    p->callback_url = string_field(L, idx, "callback_url", 0, NULL, &state);
    p->name = string_field(L, idx, "name", 0, NULL, &state);
    return state;
}

static const char *const options_problem =
    "sender, callback_url and name must be non-empty strings without NUL "
    "bytes";

int read_send_args(lua_State *L, const char *method, int arg, call_box *box,
                   st_send_params *p, st_error *err) {
    int opts = arg + 2;
    field_state state;
    const char *why = recipients_type_problem(L, arg);
    if (why)
        arg_error(L, method, arg, why);
    p->text = check_string_arg(L, method, arg + 1, &p->text_len);
    if (!lua_isnoneornil(L, opts) && lua_type(L, opts) != LUA_TTABLE)
        type_error(L, method, opts, opts, "table or nil");
    if (copy_recipients(L, arg, &box->recipients, err) != 0)
        return -1;
    lua_settop(L, lua_gettop(L) > opts ? lua_gettop(L) : opts);
    if (lua_istable(L, opts) && check_send_keys(L, opts, err) != 0)
        return -1;
    state = read_send_options(L, opts, p);
    if (state == FIELD_WRONG_TYPE)
        return arg_error(L, method, opts, options_problem);
    if (state == FIELD_BAD_VALUE)
        return st_fail(err, ST_E_INVALID, "invalid send option: %s",
                       options_problem);
    return 0;
}

/* ---- send_many items ---------------------------------------------------- */

/* Moves the values of the stack above base into the anchor table, so they
 * live as long as the call and the stack stays small. */
static void anchor_above(lua_State *L, int base, int anchor, call_box *box) {
    while (lua_gettop(L) > base)
        lua_rawseti(L, anchor, ++box->anchored);
}

/* One field of a plain item (key at -2, value at -1); the value of a
 * string field is anchored. 0 when fine; -1 with err for a bad `to`; 1 for
 * a bad string field. */
static int take_plain_field(lua_State *L, enum send_key key, int anchor,
                            call_box *box, size_t i, st_error *err) {
    st_send_params *p = &box->items[i].params;
    const char **slot = NULL;
    size_t len;
    const char *v;
    if (key == KEY_TO && lua_type(L, -1) == LUA_TSTRING) { /* the usual */
        v = lua_tolstring(L, -1, &len);
        return st_recipients_add(&box->item_recipients[i], v, len, err);
    }
    if (key == KEY_TO) {
        const char *why = recipients_type_problem(L, -1);
        if (why)
            return st_fail(err, ST_E_INVALID, "'to': %s", why);
        return copy_recipients(L, -1, &box->item_recipients[i], err);
    }
    if (key == KEY_TEXT)
        slot = &p->text;
    else if (key == KEY_SENDER)
        slot = &p->sender;
    else if (key == KEY_CALLBACK_URL)
        slot = &p->callback_url;
    else if (key == KEY_NAME)
        slot = &p->name;
    if (!slot || lua_type(L, -1) != LUA_TSTRING)
        return 1;
    v = lua_tolstring(L, -1, &len);
    if (slot == &p->text) /* its NUL bytes are the text check's to name */
        p->text_len = len;
    else if (len == 0 || strlen(v) != len)
        return 1;
    *slot = v;
    lua_pushvalue(L, -1);
    lua_rawseti(L, anchor, ++box->anchored);
    return 0;
}

/* The keys "to" and "text" as the items hold them: Lua keeps one copy of
 * a short string, so after the first item a pointer comparison names them.
 * The two strings are kept on the stack (slot), so no other string can
 * take their address meanwhile. */
typedef struct known_keys {
    int slot; /* stack index of "to"; "text" at slot + 1 */
    const char *to, *text;
} known_keys;

/* Which send key the key at -2 is. */
static enum send_key key_at(lua_State *L, known_keys *keys) {
    const char *k;
    enum send_key key;
    if (lua_type(L, -2) != LUA_TSTRING)
        return KEY_NONE;
    k = lua_tostring(L, -2);
    if (k == keys->to || k == keys->text)
        return k == keys->to ? KEY_TO : KEY_TEXT;
    key = send_key(k);
    if (key == KEY_TO || key == KEY_TEXT) {
        lua_pushvalue(L, -2);
        lua_replace(L, keys->slot + (key == KEY_TEXT));
        *(key == KEY_TO ? &keys->to : &keys->text) = k;
    }
    return key;
}

/* A plain item (no metatable, so no user code can run): one raw pass over
 * its fields, which a bulk call of 50,000 items notices. */
static int read_plain_item(lua_State *L, int item, int anchor,
                           known_keys *keys, call_box *box, size_t i,
                           st_error *err) {
    st_send_params *p = &box->items[i].params;
    int has_to = 0;
    lua_pushnil(L);
    while (lua_next(L, item) != 0) {
        enum send_key key = key_at(L, keys);
        int rc;
        if (key == KEY_NONE)
            return check_send_keys(L, item, err); /* says which key */
        rc = take_plain_field(L, key, anchor, box, i, err);
        if (rc < 0)
            return -1;
        if (rc > 0)
            return st_fail(err, ST_E_INVALID, "'text' must be a string and %s",
                           options_problem);
        has_to |= key == KEY_TO;
        lua_pop(L, 1);
    }
    if (!has_to)
        return st_fail(err, ST_E_INVALID,
                       "'to': want a string or a whole number (got nil)");
    if (!p->text)
        return st_fail(err, ST_E_INVALID, "'text' must be a string and %s",
                       options_problem);
    box->items[i].recipients = &box->item_recipients[i];
    return 0;
}

/* The item at the stack top, read into slot i of the box. */
static int read_item(lua_State *L, int anchor, known_keys *keys,
                     call_box *box, size_t i, st_error *err) {
    int item = lua_gettop(L);
    st_send_item *out = &box->items[i];
    field_state state = FIELD_OK;
    const char *why;
    if (!lua_istable(L, item))
        return st_fail(err, ST_E_INVALID, "want a table with to and text");
    if (!lua_getmetatable(L, item))
        return read_plain_item(L, item, anchor, keys, box, i, err);
    lua_pop(L, 1);
    if (check_send_keys(L, item, err) != 0)
        return -1;
    lua_getfield(L, item, "to");
    why = recipients_type_problem(L, -1);
    if (why)
        return st_fail(err, ST_E_INVALID, "'to': %s", why);
    if (copy_recipients(L, -1, &box->item_recipients[i], err) != 0)
        return -1;
    lua_pop(L, 1);
    out->recipients = &box->item_recipients[i];
    out->params.text_len = 0;
    out->params.text = string_field(L, item, "text", 1,
                                    &out->params.text_len, &state);
    if (read_send_options(L, item, &out->params) != FIELD_OK ||
        state != FIELD_OK || !out->params.text)
        return st_fail(err, ST_E_INVALID,
                       "'text' must be a string and %s", options_problem);
    anchor_above(L, item, anchor, box);
    return 0;
}

static int alloc_items(call_box *box, size_t n) {
    size_t slots = n ? n : 1;
    box->items = calloc(slots, sizeof *box->items);
    box->item_recipients = calloc(slots, sizeof *box->item_recipients);
    box->nitems = n;
    return box->items && box->item_recipients ? 0 : -1;
}

int read_send_items(lua_State *L, int arg, int anchor, call_box *box,
                    st_error *err) {
    size_t i, n = lua_rawlen(L, arg);
    known_keys keys = {0, NULL, NULL};
    int top;
    if (alloc_items(box, n) != 0)
        return lst_nomem(L);
    luaL_checkstack(L, 2, "streamtelecom");
    keys.slot = lua_gettop(L) + 1;
    lua_pushnil(L);
    lua_pushnil(L);
    top = lua_gettop(L);
    for (i = 0; i < n; i++) {
        char message[ST_ERR_MAX];
        lua_rawgeti(L, arg, (int)i + 1);
        if (read_item(L, anchor, &keys, box, i, err) == 0) {
            lua_settop(L, top);
            continue;
        }
        lua_settop(L, keys.slot - 1);
        if (err->code == ST_E_NOMEM) /* the item is good: memory is short */
            return lst_nomem(L);
        snprintf(message, sizeof message, "%s", err->message);
        return st_fail(err, ST_E_INVALID, "invalid item %zu: %s", i + 1,
                       message);
    }
    lua_settop(L, keys.slot - 1);
    return 0;
}

/* ---- id lists ----------------------------------------------------------- */

static void alloc_ids(lua_State *L, call_box *box, size_t n) {
    size_t slots = n ? n : 1;
    box->ids = calloc(slots, sizeof *box->ids);
    box->statuses = calloc(slots, sizeof *box->statuses);
    box->errors = calloc(slots, sizeof *box->errors);
    if (!box->ids || !box->statuses || !box->errors)
        lst_nomem(L);
}

/* An id checked with its Lua length: "1234\0..." is not "1234". */
static int check_id(lua_State *L, int idx, size_t i, st_error *err) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    char message[ST_ERR_MAX];
    if (st_id_check(s, len, err) == 0)
        return 0;
    snprintf(message, sizeof message, "%s", err->message);
    return st_fail(err, err->code, "invalid id %zu: %s", i, message);
}

int read_ids(lua_State *L, const char *method, int arg, int anchor,
             call_box *box, st_error *err) {
    size_t i, n;
    if (lua_type(L, arg) != LUA_TTABLE)
        type_error(L, method, arg, arg, "table");
    n = lua_rawlen(L, arg);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, arg, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            arg_error(L, method, arg,
                      lua_pushfstring(L, "id %d is a %s, want a string",
                                      (int)i, luaL_typename(L, -1)));
        lua_pop(L, 1);
    }
    alloc_ids(L, box, n);
    /* Anchoring allocates, and a collection may run a finaliser that
     * changes the list: each id is checked again as it is taken. */
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, arg, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            arg_error(L, method, arg, "the list changed while it was read");
        if (check_id(L, -1, i, err) != 0) {
            lua_pop(L, 1);
            return -1;
        }
        lua_pushvalue(L, -1);
        lua_rawget(L, anchor);
        if (lua_isnil(L, -1)) { /* first time: keep it, as a key of anchor */
            box->ids[box->nids++] = lua_tostring(L, -2);
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
            lua_rawset(L, anchor);
        } else {
            lua_pop(L, 2);
        }
    }
    return 0;
}

double number_field(lua_State *L, const char *method, int arg,
                    const char *key, double def) {
    double v = def;
    if (lua_isnoneornil(L, arg))
        return def;
    if (lua_type(L, arg) != LUA_TTABLE)
        type_error(L, method, arg, arg, "table or nil");
    lua_getfield(L, arg, key);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            arg_error(L, method, arg,
                      lua_pushfstring(L, "'%s' must be a number", key));
        v = (double)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

void lst_new_class(lua_State *L, const char *mtname, const luaL_Reg *meta,
                   const luaL_Reg *methods) {
    luaL_newmetatable(L, mtname);
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, meta, 1);
    if (methods) {
        lua_newtable(L);
        lua_pushvalue(L, -2);
        luaL_setfuncs(L, methods, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

void *lst_check_self(lua_State *L, int idx, const char *mtname) {
    void *p = lua_touserdata(L, idx);
    if (p && lua_getmetatable(L, idx)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (same)
            return p;
    }
    return luaL_checkudata(L, idx, mtname);
}
