/* System facilities the command line's campaigns need and Lua lacks: a lock
 * that says who holds it, a durable append-only file that is never a
 * symlink, and signals turned into a flag. Plain C, no Lua header. */
#ifndef ST_SYS_H
#define ST_SYS_H

#include <stddef.h>
#include <sys/types.h>

/* Takes an exclusive flock on the open file fd without waiting (the
 * journal's own descriptor: no other file). Answers 0 (held until fd is
 * closed or the process dies, a kill -9 included), 1 when another process
 * holds it (*holder its pid from /proc/locks, or 0 when not found there),
 * -1 with errno on any other failure. */
int st_lock_fd(int fd, long *holder);

/* Opens path for appending (created 0600 when absent, never truncated,
 * never through a symlink: ELOOP), refusing what is not a regular file
 * (EINVAL). Answers the descriptor, or -1 with errno. */
int st_append_open(const char *path);

/* Writes all len bytes (retrying short writes and EINTR). Answers 0, or -1
 * with errno (ENOSPC, EFBIG, EIO...). */
int st_write_all(int fd, const char *buf, size_t len);

/* Reads up to len bytes at offset off (retrying EINTR). Answers the count
 * read (0 at the end), or -1 with errno. */
ssize_t st_read_at(int fd, char *buf, size_t len, off_t off);

/* Makes what was written to fd durable. 0, or -1 with errno. */
int st_sync(int fd);

/* Catches SIGINT and SIGTERM into a flag (st_signal_caught) and ignores
 * SIGXFSZ, so that writing past a file size limit fails with EFBIG instead
 * of killing the process. A second SIGINT writes message (copied, cut to
 * 511 bytes) to stderr and ends the process at once with status 130. */
void st_signals_catch(const char *message);

/* The first signal caught since st_signals_catch (SIGINT or SIGTERM), or 0. */
int st_signal_caught(void);

#endif
