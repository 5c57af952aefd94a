/*
 * check_device.h — asks whether a device is present without touching it in this process.
 *
 * A CUDA driver, once initialised, does not survive fork(): every runtime call in a forked
 * child fails with cudaErrorInitializationError. Check forks a process per test, so a
 * suite's main() must not call the device before the tests run. The first GPU run (H200,
 * 2026-12-04) failed every test of six suites that way: main() asked cudaGetDeviceCount.
 * The emulator fails the same way (tests/simt/simt.cpp, driver_lost), so this is tested here.
 *
 *     char name[256];
 *     if (!check_device_present(name, sizeof name)) return CHECK_SKIPPED;
 *
 * The question is asked in a child process that reports over a pipe and exits; this
 * process stays as it was. Device suites that run without forking (check_run_suite_nofork)
 * may call etx_dev_available() directly.
 */
#ifndef ETX_TESTS_CHECK_DEVICE_H
#define ETX_TESTS_CHECK_DEVICE_H

#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "device.h"

// 1 and the device's name in name[0..n) when a device answers, 0 when none does (or the
// probe could not run: no pipe, no fork; then the reason is printed).
static inline int check_device_present(char* name, size_t n) {
    int fds[2];
    if (n > 0) name[0] = '\0';
    if (pipe(fds) != 0) {
        perror("check_device_present: pipe");
        return 0;
    }
    fflush(NULL); // nothing buffered is written twice
    const pid_t pid = fork();
    if (pid < 0) {
        perror("check_device_present: fork");
        close(fds[0]), close(fds[1]);
        return 0;
    }
    if (pid == 0) { // the child: ask, write "1 name" or "0", leave without atexit handlers
        close(fds[0]);
        char line[300];
        const int ok = etx_dev_available();
        const int len = snprintf(line, sizeof line, "%d %s", ok, ok ? etx_dev_name() : "");
        const ssize_t w = write(fds[1], line, (size_t)len);
        close(fds[1]);
        _exit(w == len ? 0 : 1);
    }
    close(fds[1]);
    char buf[300];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got < 1) {
        fprintf(stderr, "check_device_present: the probe process failed (status %d)\n", status);
        return 0;
    }
    if (buf[0] != '1') return 0;
    if (n > 0) { // the name, cut to n - 1 bytes
        const char* src = got > 2 ? buf + 2 : "";
        size_t k = strlen(src);
        if (k > n - 1) k = n - 1;
        memcpy(name, src, k);
        name[k] = '\0';
    }
    return 1;
}

#endif // ETX_TESTS_CHECK_DEVICE_H
