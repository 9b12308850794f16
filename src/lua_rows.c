/* client:_scan_rows: the campaign's check of its file's plain rows in one
 * C loop (not part of the API). campaign/input.lua reads every row in Lua
 * at ~20,000 instructions a row; this takes the rows a plain line holds
 * (most) and stops at the first it cannot judge alone, which input.lua then
 * reads as it always did: a quoted or blank-looking line, another field
 * count, an empty to or text, a number that is not bare digits, a row its
 * check refuses (input.lua names the column), a number seen before (input.lua
 * looks for a twin). What it takes is what input.lua would have taken.
 *
 *   client:_scan_rows(s, pos, line, n, delim, limit, cols, starts, first_of
 *                     [, kept, keep])
 *     -> pos, line, n, taken
 *
 * s the file's text, pos (1-based) the next record, line its line number,
 * n the rows so far; a row is taken only if the next record starts at or
 * before limit (the first byte that is not UTF-8). cols: { width, to, text,
 * sender, callback_url, name } (field numbers, 0: none). Each taken row n
 * gets starts[n] = its pos and first_of[its number] = n; the first keep
 * of them also kept[n] = their send_many item ({ to =, text = } and the
 * optional fields that are not empty), as input.lua's item_of makes it. */
#include <string.h>

#include "lua_bind.h"
#include "st_csv.h"
#include "st_send.h"

enum { COL_TO, COL_TEXT, COL_SENDER, COL_CALLBACK_URL, COL_NAME };

/* Longest sender, callback_url or name copied for the check; a longer one
 * is input.lua's (the check refuses most of them anyway). */
#define OPTION_MAX 512

typedef struct row_scan {
    lua_State *L;
    lst_client *u;
    const char *s;
    size_t len;
    st_csv_split split;
    int starts, first_of, kept; /* stack indexes (kept: 0, none) */
    lua_Integer keep;           /* items still to keep */
    char option[3][OPTION_MAX + 1];
} row_scan;

/* Field j of the row, NUL-terminated in its own buffer; NULL when empty. */
static const char *option(row_scan *rs, const st_span *f, int j, int *fits) {
    char *out = rs->option[j - COL_SENDER];
    if (f[j].len == 0)
        return NULL;
    if (f[j].len > OPTION_MAX) {
        *fits = 0;
        return NULL;
    }
    memcpy(out, rs->s + f[j].at, f[j].len);
    out[f[j].len] = '\0';
    return out;
}

/* The number as a table key, as input.lua makes it: bare digits, no
 * leading 0, 10 to 15 of them; 0 for any other. */
static lua_Integer number_key(const char *s, size_t n) {
    lua_Integer key = 0;
    size_t i;
    if (n < ST_PHONE_MIN || n > ST_PHONE_MAX || s[0] == '0')
        return 0;
    for (i = 0; i < n; i++) {
        if ((unsigned char)(s[i] - '0') > 9)
            return 0;
        key = key * 10 + (s[i] - '0');
    }
    return key;
}

/* Whether the row's fields f pass the check a send makes, to key. */
static int row_passes(row_scan *rs, const st_span *f, lua_Integer *key) {
    st_recipients r;
    st_send_params p;
    st_error err;
    int fits = 1;
    *key = number_key(rs->s + f[COL_TO].at, f[COL_TO].len);
    if (*key == 0 || f[COL_TEXT].len == 0)
        return 0;
    memset(&r, 0, sizeof r);
    memcpy(r.first.digits, rs->s + f[COL_TO].at, f[COL_TO].len);
    r.first.digits[f[COL_TO].len] = '\0';
    r.count = 1;
    p.text = rs->s + f[COL_TEXT].at;
    p.text_len = f[COL_TEXT].len;
    p.sender = option(rs, f, COL_SENDER, &fits);
    p.callback_url = option(rs, f, COL_CALLBACK_URL, &fits);
    p.name = option(rs, f, COL_NAME, &fits);
    if (!p.sender)
        p.sender = st_client_sender(rs->u->core);
    return fits && st_client_check_send(rs->u->core, &r, &p, &err) == 0;
}

/* Takes row n at pos unless its number was seen before (input.lua then
 * looks for a twin); 1 when taken. */
static int take_row(row_scan *rs, lua_Integer key, lua_Integer n,
                    size_t pos) {
    lua_State *L = rs->L;
    int seen;
    lua_pushinteger(L, key);
    lua_rawget(L, rs->first_of);
    seen = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (seen)
        return 0;
    lua_pushinteger(L, key);
    lua_pushinteger(L, n);
    lua_rawset(L, rs->first_of);
    lua_pushinteger(L, (lua_Integer)pos + 1);
    lua_rawseti(L, rs->starts, (int)n);
    return 1;
}

static const char *const ITEM_KEYS[ST_CSV_WANT] = {
    "to", "text", "sender", "callback_url", "name"};

/* kept[n] = row n's send_many item, from its fields f. */
static void keep_item(row_scan *rs, const st_span *f, lua_Integer n) {
    lua_State *L = rs->L;
    int j;
    lua_createtable(L, 0, 2);
    for (j = 0; j < ST_CSV_WANT; j++)
        if (f[j].len > 0) {
            lua_pushstring(L, ITEM_KEYS[j]);
            lua_pushlstring(L, rs->s + f[j].at, f[j].len);
            lua_rawset(L, -3);
        }
    lua_rawseti(L, rs->kept, (int)n);
}

static size_t col(lua_State *L, int cols, int i) {
    lua_Integer v;
    lua_rawgeti(L, cols, i);
    v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v > 0 ? (size_t)v : 0;
}

static void read_split(lua_State *L, int cols, const char *delim,
                       st_csv_split *split) {
    int j;
    split->delim = delim[0];
    split->width = col(L, cols, 1);
    for (j = 0; j < ST_CSV_WANT; j++)
        split->want[j] = col(L, cols, j + 2);
}

int lst_scan_rows(lua_State *L) {
    row_scan rs;
    size_t pos, limit, delim_len;
    lua_Integer line, n, taken = 0;
    const char *delim;
    rs.L = L;
    rs.u = check_client(L);
    rs.s = luaL_checklstring(L, 2, &rs.len);
    pos = (size_t)luaL_checkinteger(L, 3) - 1;
    line = luaL_checkinteger(L, 4);
    n = luaL_checkinteger(L, 5);
    delim = luaL_checklstring(L, 6, &delim_len);
    limit = (size_t)luaL_checkinteger(L, 7);
    luaL_checktype(L, 8, LUA_TTABLE);
    luaL_checktype(L, 9, LUA_TTABLE);
    luaL_checktype(L, 10, LUA_TTABLE);
    luaL_argcheck(L, delim_len == 1, 6, "one byte expected");
    read_split(L, 8, delim, &rs.split);
    rs.starts = 9, rs.first_of = 10, rs.kept = 0, rs.keep = 0;
    if (!lua_isnoneornil(L, 11)) {
        luaL_checktype(L, 11, LUA_TTABLE);
        rs.kept = 11;
        rs.keep = luaL_checkinteger(L, 12);
    }
    while (client_is_open(rs.u) && pos < rs.len) {
        st_span f[ST_CSV_WANT];
        size_t next;
        lua_Integer key;
        st_csv_line kind = st_csv_plain_line(rs.s, rs.len, pos, &rs.split, f,
                                             &next);
        if (kind == ST_CSV_OTHER || next + 1 > limit)
            break;
        if (kind == ST_CSV_PLAIN) {
            if (!row_passes(&rs, f, &key) || !take_row(&rs, key, n + 1, pos))
                break;
            n++, taken++;
            if (rs.keep > 0) {
                rs.keep--;
                keep_item(&rs, f, n);
            }
        }
        pos = next, line++;
    }
    lua_pushinteger(L, (lua_Integer)pos + 1);
    lua_pushinteger(L, line);
    lua_pushinteger(L, n);
    lua_pushinteger(L, taken);
    return 4;
}

/* st._csv_items(s, delim, cols, starts, rows, first, last, items): the
 * send_many items of rows[first..last] (row numbers whose records start at
 * starts[row] in s, all checked by a scan) into items[1..], as input.lua's
 * Index:item makes them; a row whose line is not plain, or an items slot
 * already filled, is left as it is (Index:item reads it). Answers how many
 * it made. A campaign's later chunks: ~5,000 instructions a row in Lua. */
int lst_csv_items(lua_State *L) {
    row_scan rs;
    size_t delim_len;
    const char *delim;
    lua_Integer i, first, last, made = 0;
    rs.L = L;
    rs.s = luaL_checklstring(L, 1, &rs.len);
    delim = luaL_checklstring(L, 2, &delim_len);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TTABLE);
    first = luaL_checkinteger(L, 6);
    last = luaL_checkinteger(L, 7);
    luaL_checktype(L, 8, LUA_TTABLE);
    luaL_argcheck(L, delim_len == 1, 2, "one byte expected");
    read_split(L, 3, delim, &rs.split);
    rs.kept = 8;
    for (i = first; i <= last; i++) {
        lua_Integer slot = i - first + 1, pos;
        st_span f[ST_CSV_WANT];
        size_t next;
        int filled, known;
        lua_rawgeti(L, 8, (int)slot);
        filled = !lua_isnil(L, -1);
        lua_rawgeti(L, 5, (int)i);
        lua_rawget(L, 4); /* starts[rows[i]] */
        pos = st_lua_tointeger(L, -1, &known);
        lua_pop(L, 2);
        if (filled || !known || pos < 1 || (size_t)pos > rs.len ||
            st_csv_plain_line(rs.s, rs.len, (size_t)pos - 1, &rs.split, f,
                              &next) != ST_CSV_PLAIN)
            continue;
        keep_item(&rs, f, slot);
        made++;
    }
    lua_pushinteger(L, made);
    return 1;
}
