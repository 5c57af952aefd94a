/*
 * check_etx.h — Check assertions on etx's own types.
 *
 *     CK_OK(etx_model_load(path, &m));
 *
 * CK_OK(expr): expr is an etx_status; the test fails unless its code is ETX_OK, with the
 * expression and the status's message (which says what went wrong and what to do).
 */
#ifndef ETX_TESTS_CHECK_ETX_H
#define ETX_TESTS_CHECK_ETX_H

#include <check.h>

#include "etx/etx.h"

#define CK_OK(expr)                                                                   \
    do {                                                                              \
        const etx_status ck_ok_status_ = (expr);                                      \
        ck_assert_msg(ck_ok_status_.code == ETX_OK, "%s: %s", #expr, ck_ok_status_.message); \
    } while (0)

#endif // ETX_TESTS_CHECK_ETX_H
