/*
 * common.h — small helpers shared by all host code: building etx_status values with a
 * formatted message, checked allocation, and file/line-naming check macros.
 *
 * Library code never prints and never aborts on bad input: it returns an etx_status.
 * Internal invariant violations (a bug in etx, not bad input) abort through ETX_ASSERT
 * with the file and line.
 */
#ifndef ETX_COMMON_H
#define ETX_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "etx/etx.h"

etx_status etx_ok(void);
// printf-style message; always NUL-terminated, truncated to ETX_MSG_LEN.
etx_status etx_error(etx_code code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Prefixes an existing error's message with more context ("loading X: <message>").
etx_status etx_error_wrap(etx_status inner, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Return early from a function returning etx_status when a call fails.
#define ETX_TRY(expr)                                   \
    do {                                                \
        etx_status _etx_st = (expr);                    \
        if (_etx_st.code != ETX_OK) return _etx_st;     \
    } while (0)

// Abort on a broken internal invariant, naming file and line.
#define ETX_ASSERT(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "etx: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

// malloc/calloc/realloc that abort with file and line when memory runs out. Used for
// small bookkeeping allocations; large model buffers use the checked etx_status path.
void* etx_xmalloc_(size_t n, const char* file, int line);
void* etx_xcalloc_(size_t n, size_t size, const char* file, int line);
void* etx_xrealloc_(void* p, size_t n, const char* file, int line);
char* etx_xstrdup_(const char* s, const char* file, int line);
#define xmalloc(n) etx_xmalloc_((n), __FILE__, __LINE__)
#define xcalloc(n, s) etx_xcalloc_((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) etx_xrealloc_((p), (n), __FILE__, __LINE__)
#define xstrdup(s) etx_xstrdup_((s), __FILE__, __LINE__)

// Reads a whole regular file into a malloc'ed, NUL-terminated buffer. A path that is not
// a regular file (a directory, /dev/zero, a FIFO, a terminal) is refused before anything
// is read, and so is a file larger than ETX_READ_FILE_MAX: endless or huge inputs get a
// named error instead of eating memory.
#define ETX_READ_FILE_MAX ((size_t)4 << 30) // 4 GiB: more than any data file etx reads whole
etx_status etx_read_file(const char* path, char** data, size_t* len);
// The same with a caller's bound (JSON configuration files use ETX_JSON_FILE_MAX).
#define ETX_JSON_FILE_MAX ((size_t)64 << 20) // 64 MiB: a policy, grid or config file
etx_status etx_read_file_max(const char* path, size_t max_bytes, char** data, size_t* len);

// 1 when any of x[0..n) is NaN or +-inf, else 0: one branch-free pass over the exponent
// bits, 8 floats at a time (the loaders' weight scan and the CPU's logits check).
int etx_floats_nonfinite(const float* x, size_t n);

// MemAvailable from /proc/meminfo in bytes, or -1 when unknown.
double available_memory_bytes(void);

// Seconds on the monotonic clock (for timing; the origin is arbitrary).
double etx_now_s(void);
// CPU seconds used so far by every thread of this process (CLOCK_PROCESS_CPUTIME_ID).
double etx_cpu_s(void);

// qsort comparator of doubles, ascending (medians of timings).
int etx_cmp_double(const void* a, const void* b);

#endif // ETX_COMMON_H
