/* System facilities for the command line's campaigns (st_sys.h). */
#define _DEFAULT_SOURCE /* flock */
#include "st_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int open_private(const char *path, int flags) {
    int fd;
    do
        fd = open(path, flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Refuses a directory, a FIFO or a device: only a file can be a journal
 * or a lock, and opening a FIFO for writing would hang. */
static int regular_or_close(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto fail;
    }
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* The pid holding a flock on the file of fd, from /proc/locks (lines such
 * as "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"), or 0. */
static long flock_holder(int fd) {
    struct stat st;
    char line[256];
    long found = 0;
    FILE *f;
    if (fstat(fd, &st) != 0 || (f = fopen("/proc/locks", "re")) == NULL)
        return 0;
    while (found == 0 && fgets(line, sizeof line, f) != NULL) {
        char kind[16], mode[16];
        long pid;
        unsigned maj, min;
        unsigned long ino;
        const char *p = strchr(line, ':');
        if (p == NULL || strstr(line, "->") != NULL)
            continue; /* a waiter, not the holder */
        if (sscanf(p + 1, " %15s %*s %15s %ld %x:%x:%lu", kind, mode, &pid, &maj,
                   &min, &ino) == 6 &&
            strcmp(kind, "FLOCK") == 0 && ino == (unsigned long)st.st_ino &&
            maj == major(st.st_dev) && min == minor(st.st_dev))
            found = pid;
    }
    fclose(f);
    return found;
}

int st_lock_fd(int fd, long *holder) {
    *holder = 0;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            *holder = flock_holder(fd);
            return 1;
        }
        return -1;
    }
    return 0;
}

int st_append_open(const char *path) {
    int fd = open_private(path, O_RDWR | O_APPEND | O_NONBLOCK);
    if (fd < 0)
        return -1;
    return regular_or_close(fd);
}

int st_write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) { /* no progress and no errno: call it an I/O error */
            errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t st_read_at(int fd, char *buf, size_t len, off_t off) {
    ssize_t n;
    do
        n = pread(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n;
}

int st_sync(int fd) {
    int rc;
    do
        rc = fdatasync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

/* ---- signals ------------------------------------------------------------ */

static volatile sig_atomic_t caught;
static char second_message[512];
static size_t second_len;

/* Only async-signal-safe calls here: write(2) and _exit(2). */
static void on_signal(int sig) {
    if (caught != 0 && sig == SIGINT) {
        int saved = errno;
        (void)!write(STDERR_FILENO, second_message, second_len);
        errno = saved;
        _exit(130);
    }
    if (caught == 0)
        caught = sig;
}

void st_signals_catch(const char *message) {
    struct sigaction sa;
    size_t len = strlen(message);
    if (len > sizeof second_message - 1)
        len = sizeof second_message - 1;
    memcpy(second_message, message, len);
    second_len = len;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGXFSZ, &sa, NULL);
}

int st_signal_caught(void) { return (int)caught; }
