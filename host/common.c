/*
 * common.c — etx_status construction, checked allocation, whole-file reads.
 */
#include "common.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

etx_status etx_ok(void) {
    etx_status s;
    s.code = ETX_OK;
    s.message[0] = '\0';
    return s;
}

etx_status etx_error(etx_code code, const char* fmt, ...) {
    etx_status s;
    s.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s.message, sizeof s.message, fmt, ap);
    va_end(ap);
    return s;
}

etx_status etx_error_wrap(etx_status inner, const char* fmt, ...) {
    etx_status s;
    s.code = inner.code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s.message, sizeof s.message, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    // append ": <inner message>", truncating (memcpy, not snprintf: truncation is intended)
    size_t used = (size_t)n < sizeof s.message ? (size_t)n : sizeof s.message - 1;
    const char sep[] = ": ";
    size_t room = sizeof s.message - 1 - used;
    size_t ns = room < 2 ? room : 2;
    memcpy(s.message + used, sep, ns);
    used += ns;
    room -= ns;
    size_t ni = strlen(inner.message);
    if (ni > room) ni = room;
    memcpy(s.message + used, inner.message, ni);
    s.message[used + ni] = '\0';
    return s;
}

const char* etx_code_name(etx_code code) {
    switch (code) {
    case ETX_OK: return "ok";
    case ETX_ERR_IO: return "I/O error";
    case ETX_ERR_FORMAT: return "format error";
    case ETX_ERR_INVALID_ARG: return "invalid argument";
    case ETX_ERR_UNSUPPORTED: return "unsupported";
    case ETX_ERR_NOMEM: return "out of memory";
    case ETX_ERR_STATE: return "invalid state";
    }
    return "unknown error";
}

static void oom(size_t n, const char* file, int line) {
    fprintf(stderr, "etx: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void* etx_xmalloc_(size_t n, const char* file, int line) {
    void* p = malloc(n ? n : 1);
    if (!p) oom(n, file, line);
    return p;
}

void* etx_xcalloc_(size_t n, size_t size, const char* file, int line) {
    void* p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size, file, line);
    return p;
}

void* etx_xrealloc_(void* p, size_t n, const char* file, int line) {
    void* q = realloc(p, n ? n : 1);
    if (!q) oom(n, file, line);
    return q;
}

char* etx_xstrdup_(const char* s, const char* file, int line) {
    size_t n = strlen(s) + 1;
    char* p = etx_xmalloc_(n, file, line);
    memcpy(p, s, n);
    return p;
}

etx_status etx_read_file(const char* path, char** data, size_t* len) {
    return etx_read_file_max(path, ETX_READ_FILE_MAX, data, len);
}

etx_status etx_read_file_max(const char* path, size_t max_bytes, char** data, size_t* len) {
    *data = NULL;
    if (len) *len = 0;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, before the
    // check below could refuse it; it is cleared again for the reads
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return etx_error(ETX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    // fstat on the open file (not stat on the path): what is checked is what is read
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        close(fd);
        return etx_error(ETX_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return etx_error(ETX_ERR_IO, "%s is not a regular file (%s); give a file", path,
                         S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a pipe" :
                         S_ISCHR(st.st_mode) ? "a character device" : "a special file");
    }
    const int flags = fcntl(fd, F_GETFL);
    FILE* f = flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        const int e = errno;
        close(fd);
        return etx_error(ETX_ERR_IO, "cannot open %s: %s", path, strerror(e));
    }
    if ((unsigned long long)st.st_size > (unsigned long long)max_bytes) {
        fclose(f);
        return etx_error(ETX_ERR_IO, "%s is %lld bytes, more than the %zu this file may have", path,
                         (long long)st.st_size, max_bytes);
    }
    // the size can change between fstat and the reads (a file being appended to): read up
    // to the bound and refuse past it rather than trusting st_size
    size_t cap = (size_t)st.st_size + 1 < ((size_t)1 << 16) ? ((size_t)1 << 16) : (size_t)st.st_size + 1;
    size_t n = 0;
    char* buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (n > max_bytes) {
            fclose(f);
            free(buf);
            return etx_error(ETX_ERR_IO, "%s grew past the %zu bytes this file may have while being read", path,
                             max_bytes);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return etx_error(ETX_ERR_IO, "error reading %s", path);
    }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return etx_ok();
}

// A float is NaN or +-inf exactly when its eight exponent bits are all ones, i.e. when
// (bits & 0x7f800000) + 0x00800000 carries into bit 31; ORed 8 floats at a time (a fixed
// inner loop, which GCC vectorises at -O2), so a scan costs a fraction of a nanosecond
// per float.
int etx_floats_nonfinite(const float* x, size_t n) {
    uint32_t acc = 0;
    size_t i = 0;
    union {
        float f;
        uint32_t u;
    } v; // a float's bits (C11 type punning through a union)
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            v.f = x[i + k];
            acc |= (v.u & 0x7f800000u) + 0x00800000u;
        }
    for (; i < n; i++) {
        v.f = x[i];
        acc |= (v.u & 0x7f800000u) + 0x00800000u;
    }
    return (int)(acc >> 31);
}

// MemAvailable from /proc/meminfo in bytes, or -1 when unknown.
double available_memory_bytes(void) {
    FILE* f = fopen("/proc/meminfo", "r");
    if (!f) return -1.0;
    char line[256];
    double kib = -1.0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
    fclose(f);
    return kib < 0 ? -1.0 : kib * 1024.0;
}

double etx_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double etx_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int etx_cmp_double(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}
