/*
 * check_main.h — the end of every Check suite's main: run the suite, report, exit.
 *
 *     int main(void) { return check_run_suite(my_suite()); }
 *
 * check_run_suite runs every test of the suite with Check's normal output (fork mode and
 * timeouts as Check reads them from the environment: CK_FORK, CK_DEFAULT_TIMEOUT, set per
 * suite by CMakeLists.txt), frees the runner and returns EXIT_SUCCESS when no test failed,
 * EXIT_FAILURE otherwise. A suite that cannot run on this machine (a device suite without
 * a device) returns CHECK_SKIPPED instead, the SKIP_RETURN_CODE ctest is told about.
 */
#ifndef ETX_TESTS_CHECK_MAIN_H
#define ETX_TESTS_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

#define CHECK_SKIPPED 77 // ctest: SKIP_RETURN_CODE

static inline int check_run_suite(Suite* s) {
    SRunner* sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

// The same without forking a process per test: for suites that load a model (and start
// OpenMP's thread pool, which does not survive fork()) before their tests run.
static inline int check_run_suite_nofork(Suite* s) {
    SRunner* sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif // ETX_TESTS_CHECK_MAIN_H
