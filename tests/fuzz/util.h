/*
 * util.h — what the fuzz targets (tests/fuzz/fuzz_*.c) share: turning the fuzzer's bytes
 * into a file for parsers that only take paths, a private temporary directory for
 * parsers that read several files from one folder, and a check macro that aborts (so
 * libFuzzer records a crash) when an invariant of a parser's result does not hold.
 */
#ifndef ETX_FUZZ_UTIL_H
#define ETX_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// A broken invariant is a finding: print it and abort, so that libFuzzer saves the input.
#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz: invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

// Writes data[0..n) to an in-memory file (memfd) and returns a path that opens it
// ("/proc/self/fd/N"). The same file is rewritten on every call: the path is valid until
// the next call. Aborts when the kernel has no memfd.
const char* fuzz_file(const uint8_t* data, size_t n);

// A directory of this process under $TMPDIR (or /tmp), created on first use and removed
// with its files at exit.
const char* fuzz_dir(void);
// Writes data[0..n) to fuzz_dir()/name (replacing it); returns the path (static buffer,
// valid until the next call).
const char* fuzz_dir_write(const char* name, const uint8_t* data, size_t n);
// Makes fuzz_dir()/name a symbolic link to target (replacing it).
void fuzz_dir_link(const char* name, const char* target);
// Removes fuzz_dir()/name if present.
void fuzz_dir_remove(const char* name);

// A NUL-terminated copy of data[0..n) (malloc'ed), for parsers that take C strings.
char* fuzz_cstr(const uint8_t* data, size_t n);

#endif // ETX_FUZZ_UTIL_H
