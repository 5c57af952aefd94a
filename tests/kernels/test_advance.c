/*
 * test_advance.c — etx_advance_rows (kernels/advance.cu) against its CPU twin, a plain
 * loop: rows 1, 5, 128 and 300 (several blocks, a partial one), with and without the
 * metrics lengths, some rows' next token a pick's fault code (fed as token 0); rows past
 * n are left alone.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "advance.h"
#include "device.h"
#include "check_device.h"
#include "check_main.h"
#include "test_rng.h"

// The CPU twin of one step forward for rows [0, n).
static void advance_twin(int32_t* tokens, int32_t* row_pos, int32_t* n_pos, EtxSeqState* st, const int32_t* next,
                         int n) {
    for (int i = 0; i < n; i++) {
        tokens[i] = next[i] >= 0 ? next[i] : 0; // a fault code feeds token 0
        row_pos[i]++;
        if (n_pos && n_pos[i] > 0) n_pos[i]++;
        st[i].step++;
        st[i].prev_token = tokens[i];
    }
}

static void* dev_copy_of(const void* h, size_t bytes) {
    void* d = etx_dev_malloc(bytes);
    ck_assert_ptr_nonnull(d);
    etx_dev_upload(d, h, bytes);
    return d;
}

static uint64_t rng_state; // test_rng.h

static void check(int n, int with_npos) {
    const int cap = n + 7; // rows past n must not change
    int32_t *tok = malloc(cap * 4), *pos = malloc(cap * 4), *np = malloc(cap * 4), *next = malloc(cap * 4);
    EtxSeqState* st = calloc((size_t)cap, sizeof *st);
    for (int i = 0; i < cap; i++) {
        tok[i] = rng_below(&rng_state, 1000), next[i] = rng_below(&rng_state, 1000);
        if (i % 7 == 3) next[i] = -1 - (int32_t)rng_below(&rng_state, 3); // picks that faulted
        pos[i] = rng_below(&rng_state, 500);
        np[i] = i % 3 ? pos[i] + 1 : 0; // some rows without metrics
        st[i].step = rng_below(&rng_state, 50), st[i].prev_token = rng_below(&rng_state, 1000);
        st[i].key = rng_next_u64(&rng_state);
        st[i].max_tokens = 77, st[i].pause_token = 5;
    }
    int32_t *dtok = dev_copy_of(tok, cap * 4), *dpos = dev_copy_of(pos, cap * 4), *dnp = dev_copy_of(np, cap * 4), *dnext = dev_copy_of(next, cap * 4);
    EtxSeqState* dst = dev_copy_of(st, (size_t)cap * sizeof *st);
    etx_advance_rows(dtok, dpos, with_npos ? dnp : NULL, dst, dnext, n, NULL);
    etx_dev_sync();
    advance_twin(tok, pos, with_npos ? np : NULL, st, next, n);
    int32_t* got = malloc(cap * 4);
    EtxSeqState* gst = calloc((size_t)cap, sizeof *gst);
    int32_t* want[3] = {tok, pos, np};
    int32_t* dev[3] = {dtok, dpos, dnp};
    for (int k = 0; k < 3; k++) {
        etx_dev_download(got, dev[k], cap * 4);
        ck_assert_msg(memcmp(got, want[k], cap * 4) == 0, "n %d array %d differs", n, k);
    }
    etx_dev_download(gst, dst, (size_t)cap * sizeof *gst);
    ck_assert(memcmp(gst, st, (size_t)cap * sizeof *st) == 0);
    etx_dev_free(dtok), etx_dev_free(dpos), etx_dev_free(dnp), etx_dev_free(dnext), etx_dev_free(dst);
    free(tok), free(pos), free(np), free(next), free(st), free(got), free(gst);
}

START_TEST(advance_matches_its_twin) {
    rng_state = rng_seed(7);
    int sizes[] = {1, 5, 128, 300};
    for (int i = 0; i < 4; i++) {
        check(sizes[i], 1);
        check(sizes[i], 0);
    }
}
END_TEST

int main(void) {
    char dev_name[256];
    if (!check_device_present(dev_name, sizeof dev_name)) { // asked in a child: see check_device.h
        fprintf(stderr, "test_advance: no CUDA device: skipped\n");
        return CHECK_SKIPPED;
    }
    Suite* s = suite_create("advance");
    TCase* tc = tcase_create("core");
    tcase_add_test(tc, advance_matches_its_twin);
    suite_add_tcase(s, tc);
    return check_run_suite(s);
}
