/*
 * test_forward_qwen.c — the CPU forward pass on the evaluation model,
 * Qwen2.5-Coder-1.5B-Instruct Q4_K_M (models/fetch_eval_model.sh), and its 0.5B sibling
 * (fetch_eval_model.sh --small), against llama.cpp.
 *
 * The models (1.1 GB, 0.5 GB) are not in git: where models/cache/ lacks one, its test says
 * so on stderr and passes without checking anything (CI). The 0.5B is compared in the same
 * way (fixtures qwen25-coder-0.5b.*), its bounds from its own llama.cpp measurements.
 * Where a model is present:
 *
 * Reference: llama.cpp (llama-cpp-python 0.3.36, CPU, 2 threads) on the same GGUF,
 * recorded by tests/scripts/gen_llamacpp_qwen_fixtures.py under
 * fixtures/forward/llamacpp/qwen25-coder-1.5b.{json,topk.bin}: 7 prompts (two GSM8K-style
 * questions, a coding request and a greeting through the chat template, Python and C code,
 * plain text), and for 4 of them llama.cpp's 32-token greedy continuation; for every
 * position of prompt + continuation (evaluated at once), llama.cpp's top-20 logits and ids
 * and its row max/mean/std/min. etx runs the same token ids through cpu_forward (prefill,
 * every position's logits) and is compared position by position:
 *   - argmax agreement: etx's top-1 = llama.cpp's top-1,
 *   - top-5 overlap: tokens shared by the two top-5 sets,
 *   - |etx - llama.cpp| on llama.cpp's top-20 ids: max and mean,
 *   - greedy continuations: at each continuation position etx's argmax must be the token
 *     llama.cpp chose there. The sequence is fed teacher-forced, so this is exactly etx's
 *     own greedy decode up to its first disagreement (the prefill rows equal the decode
 *     rows to float32 noise, test_forward's consistency tests); a disagreement is allowed
 *     only at a near-tie of llama.cpp's (below), and ends the comparison of that
 *     continuation.
 *
 * The second reference separates the two sources of difference: llama.cpp on the same model
 * dequantized to a float32 GGUF by llama.cpp's own quantize tool, with an f32 KV cache
 * (fixtures .f32.topk.bin, same positions). That is float32 arithmetic on the same weight
 * values, as etx's, so it is held to the bound of the transformers references
 * (test_forward.c): max |diff| over its top-20 <= 1e-4 of the row scale at every position;
 * summation order and libm differ, ~1e-6 of the scale, while any mistake in the model
 * (RoPE layout, a bias, a norm) is >= 1e-2.
 *
 * Why etx and llama.cpp on the Q4_K_M file differ, and the tolerances: both sides dequantize the same Q4_K / Q6_K
 * blocks to the same float values. etx then computes in float32. llama.cpp's CPU path
 * quantizes every activation vector to 8 bits (Q8_K: one float scale per 256 values,
 * rounding error up to scale/2, i.e. ~0.2-0.4 % of a block's largest value) before each
 * K-quant dot product, and keeps its KV cache in f16. These errors enter all 196 matrix
 * products of the 28 layers and the residual stream carries them to the logits. See the
 * bounds' comment below for their measured size.
 */
#include <cJSON.h>
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_forward.h"
#include "check_etx.h"
#include "check_main.h"

#define QWEN15_MODEL ETX_FIXTURES "/../../models/cache/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf"
#define QWEN15_FIX ETX_FIXTURES "/forward/llamacpp/qwen25-coder-1.5b"
#define QWEN05_MODEL ETX_FIXTURES "/../../models/cache/Qwen2.5-Coder-0.5B-Instruct-AWQ.Q4_K_M.gguf"
#define QWEN05_FIX ETX_FIXTURES "/forward/llamacpp/qwen25-coder-0.5b"

// The one chosen tolerance: against float32 llama.cpp, max |diff| <= F32_REL * row scale
// (as test_forward.c's transformers references). Everything checked against llama.cpp on
// the Q4_K_M file follows from it and from llama.cpp's own measurement of its Q8_K
// activations and f16 cache (the fixture's q8k_pos_max/mean), by the triangle inequality;
// see the comment above test_llamacpp_qwen15.
#define F32_REL 1e-4

static cJSON* load_json(const char* path) {
    char* text;
    size_t len;
    CK_OK(etx_read_file(path, &text, &len));
    cJSON* j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s: bad JSON", path);
    return j;
}

static int32_t* json_ids(const cJSON* arr, int* n) {
    *n = cJSON_GetArraySize(arr);
    int32_t* ids = malloc((size_t)(*n > 0 ? *n : 1) * sizeof(int32_t));
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

static double json_num(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "fixture: no number \"%s\"", key);
    return v->valuedouble;
}

// the k largest entries' indices, descending
static void topk(const float* x, int n, int k, int* idx) {
    for (int j = 0; j < k; j++) idx[j] = -1;
    for (int i = 0; i < n; i++) {
        int j = k;
        while (j > 0 && (idx[j - 1] < 0 || x[i] > x[idx[j - 1]])) j--;
        if (j >= k) continue;
        for (int m = k - 1; m > j; m--) idx[m] = idx[m - 1];
        idx[j] = i;
    }
}

// one position of the fixture: llama.cpp's top-K ids and logits, and its row statistics
typedef struct {
    const int32_t* ids;
    const float* val;
    const float* stats; // max, mean, std, min over the vocabulary
} TopkRecord;

static TopkRecord record_at(const char* blob, int K, size_t i) {
    const char* p = blob + i * (size_t)(8 * K + 16);
    return (TopkRecord){(const int32_t*)p, (const float*)(p + 4 * K), (const float*)(p + 8 * K)};
}

typedef struct {
    int positions;
    int argmax_same, f32_argmax_same_q; // etx's top-1 = llama.cpp's; llama.cpp float32's = its Q4_K_M run's
    double top5_sum, f32_top5_sum;      // top-5 tokens shared with llama.cpp (Q4_K_M), summed over positions
    int top5_min;
    double max_diff, sum_mean, worst_mean, q8k_max; // |etx - llama.cpp| over its top-K; llama.cpp's own
    double max_diff_later, worst_mean_later; // the same past position 0 (the outlier token, see below)
    int later, later_same;
    int near_ties;                       // positions where float32 llama.cpp's top-1/2 or 5/6 gap is a near-tie
    int gen_compared, gen_same;
    double f32_max_rel, f32_max_abs;     // |etx - llama.cpp float32|, relative to the row scale and absolute
} Tally;

// Compares etx and llama.cpp at every position of every case of `fix` (.json and .topk.bin);
// `model`: the GGUF. Returns 0 when the model is absent (skipped), 1 after the comparison.
static int compare_with_llamacpp(const char* model, const char* fix, Tally* t) {
    if (access(model, R_OK) != 0) {
        fprintf(stderr, "test_forward_qwen: %s is absent (models/fetch_eval_model.sh fetches it); skipped\n", model);
        return 0;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s.json", fix);
    cJSON* meta = load_json(path);
    int K = (int)json_num(meta, "k");
    snprintf(path, sizeof path, "%s.topk.bin", fix);
    char* blob;
    size_t blob_len;
    CK_OK(etx_read_file(path, &blob, &blob_len));
    ck_assert_uint_eq(blob_len, (size_t)json_num(meta, "n_positions") * (size_t)(8 * K + 16));
    snprintf(path, sizeof path, "%s.f32.topk.bin", fix);
    char* blob32;
    CK_OK(etx_read_file(path, &blob32, &blob_len));
    ck_assert_uint_eq(blob_len, (size_t)json_num(meta, "n_positions") * (size_t)(8 * K + 16));

    etx_model m;
    CK_OK(gguf_model_load(model, &m));
    int V = m.cfg.vocab_size;
    ck_assert_int_eq(V, (int)json_num(meta, "vocab"));
    const cJSON* q8k_max = cJSON_GetObjectItemCaseSensitive(meta, "q8k_pos_max");
    const cJSON* q8k_mean = cJSON_GetObjectItemCaseSensitive(meta, "q8k_pos_mean");
    ck_assert_int_eq(cJSON_GetArraySize(q8k_max), (int)json_num(meta, "n_positions"));
    ck_assert_int_eq(cJSON_GetArraySize(q8k_mean), (int)json_num(meta, "n_positions"));
    memset(t, 0, sizeof *t);
    t->top5_min = 5;
    size_t rec = 0;
    const cJSON* c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(meta, "cases")) {
        const char* name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        int n, n_gen, n_prompt = (int)json_num(c, "n_prompt");
        int32_t* ids = json_ids(cJSON_GetObjectItemCaseSensitive(c, "ids"), &n);
        int32_t* gen = json_ids(cJSON_GetObjectItemCaseSensitive(c, "greedy"), &n_gen);
        const cJSON* margins = cJSON_GetObjectItemCaseSensitive(c, "margins");
        ck_assert_int_eq(n, n_prompt + n_gen);

        float* logits = malloc((size_t)n * V * sizeof(float));
        KVCache kv;
        CpuRunState s;
        CK_OK(build_kv_cache(&kv, &m.cfg, n));
        CK_OK(build_cpu_run_state(&s, &m.cfg));
        CK_OK(cpu_forward(&m, &s, &kv, ids, n, logits, 1));

        double case_max = 0.0, case_mean = 0.0;
        int case_same = 0, case_top5 = 5;
        for (int i = 0; i < n; i++, rec++) {
            const float* row = logits + (size_t)i * V;
            TopkRecord r = record_at(blob, K, rec);   // llama.cpp, Q4_K_M
            TopkRecord f = record_at(blob32, K, rec); // llama.cpp, float32
            double scale = fmax(1.0, fmax(fabs(f.stats[0]), fabs(f.stats[3]))), slack = F32_REL * scale;
            int a[5];
            topk(row, V, 5, a);

            // float32 llama.cpp: tight
            double d32 = 0.0;
            for (int j = 0; j < K; j++) d32 = fmax(d32, fabs((double)row[f.ids[j]] - f.val[j]));
            ck_assert_msg(d32 <= slack, "%s position %d: max |diff| from float32 llama.cpp %.3g > %.0e * %.3g", name,
                          i, d32, F32_REL, scale);
            t->f32_max_rel = fmax(t->f32_max_rel, d32 / scale);
            t->f32_max_abs = fmax(t->f32_max_abs, d32);
            // ... so etx's top-1 and top-5 are float32 llama.cpp's, but where its own gaps are
            // within twice the tolerance (a near-tie: either order is right)
            int tie1 = (double)f.val[0] - f.val[1] <= 2 * slack, tie5 = (double)f.val[4] - f.val[5] <= 2 * slack;
            t->near_ties += tie1 || tie5;
            ck_assert_msg(tie1 || a[0] == f.ids[0], "%s position %d: top-1 %d, float32 llama.cpp's %d (gap %.3g)", name,
                          i, a[0], f.ids[0], (double)f.val[0] - f.val[1]);
            int same5 = 0, f32_common = 0, common = 0;
            for (int x = 0; x < 5; x++)
                for (int y = 0; y < 5; y++) {
                    same5 += a[x] == f.ids[y];
                    f32_common += f.ids[x] == r.ids[y];
                    common += a[x] == r.ids[y];
                }
            ck_assert_msg(tie5 || same5 == 5, "%s position %d: top-5 shares %d tokens with float32 llama.cpp's", name, i,
                          same5);

            // llama.cpp on the Q4_K_M file: |etx - it| <= |float32 llama.cpp - it| + |etx - float32 llama.cpp|
            double mx = 0.0, sum = 0.0;
            for (int j = 0; j < K; j++) {
                double d = fabs((double)row[r.ids[j]] - r.val[j]);
                mx = fmax(mx, d);
                sum += d;
            }
            double e_max = cJSON_GetArrayItem(q8k_max, (int)rec)->valuedouble;
            double e_mean = cJSON_GetArrayItem(q8k_mean, (int)rec)->valuedouble;
            ck_assert_msg(mx <= e_max + slack + 1e-5,
                          "%s position %d: max |diff| over llama.cpp's top-%d %.4f > its own Q8_K/f16 error %.4f + %.3g",
                          name, i, K, mx, e_max, slack);
            ck_assert_msg(sum / K <= e_mean + slack + 1e-5,
                          "%s position %d: mean |diff| over llama.cpp's top-%d %.4f > its own Q8_K/f16 error %.4f + %.3g",
                          name, i, K, sum / K, e_mean, slack);
            int same = a[0] == r.ids[0];
            case_max = fmax(case_max, mx);
            case_mean = fmax(case_mean, sum / K);
            case_same += same;
            case_top5 = common < case_top5 ? common : case_top5;
            t->positions++;
            t->argmax_same += same;
            t->f32_argmax_same_q += f.ids[0] == r.ids[0];
            t->top5_sum += common;
            t->f32_top5_sum += f32_common;
            t->sum_mean += sum / K;
            t->q8k_max = fmax(t->q8k_max, e_max);
            if (i > 0) {
                t->later++;
                t->later_same += same;
                t->max_diff_later = fmax(t->max_diff_later, mx);
                t->worst_mean_later = fmax(t->worst_mean_later, sum / K);
            }
        }
        t->max_diff = fmax(t->max_diff, case_max);
        t->worst_mean = fmax(t->worst_mean, case_mean);
        t->top5_min = case_top5 < t->top5_min ? case_top5 : t->top5_min;
        fprintf(stderr, "llama.cpp %-12s %3d positions: max|diff| %.4f, worst mean|diff| %.4f, top-1 same %d/%d, "
                        "top-5 shared >= %d", name, n, case_max, case_mean, case_same, n, case_top5);

        // the greedy continuation: etx's argmax where llama.cpp chose gen[j]. A swap of the top
        // two needs llama.cpp's margin there to be under twice the largest |diff| allowed at
        // that position (a near-tie); anything else is an error.
        if (n_gen > 0) {
            int parted = -1;
            for (int j = 0; j < n_gen; j++) {
                const float* row = logits + (size_t)(n_prompt - 1 + j) * V;
                int b[2];
                topk(row, V, 2, b);
                if (b[0] != gen[j]) {
                    size_t at = rec - (size_t)n + (size_t)(n_prompt - 1 + j);
                    double lm = cJSON_GetArrayItem(margins, j)->valuedouble;
                    TopkRecord f = record_at(blob32, K, at);
                    double scale = fmax(1.0, fmax(fabs(f.stats[0]), fabs(f.stats[3])));
                    double allowed = 2 * (cJSON_GetArrayItem(q8k_max, (int)at)->valuedouble + F32_REL * scale);
                    fprintf(stderr, ", greedy parts at step %d: llama.cpp margin %.4f (near-tie below %.4f), etx margin "
                                    "%.4f\n", j, lm, allowed, (double)row[b[0]] - row[b[1]]);
                    ck_assert_msg(lm < allowed,
                                  "%s: greedy token %d is %d, llama.cpp chose %d with a top-2 margin of %.4f", name, j,
                                  b[0], gen[j], lm);
                    parted = j;
                    break;
                }
            }
            t->gen_compared++;
            if (parted < 0) {
                t->gen_same++;
                fprintf(stderr, ", greedy %d/%d same\n", n_gen, n_gen);
            }
        } else {
            fprintf(stderr, "\n");
        }
        free_cpu_run_state(&s);
        free_kv_cache(&kv);
        free(logits), free(ids), free(gen);
    }
    ck_assert_uint_eq(rec, (size_t)json_num(meta, "n_positions"));
    fprintf(stderr,
            "llama.cpp overall, %d positions: top-1 same %d (%.2f%%; llama.cpp float32 vs its Q4_K_M run: %d), top-5 "
            "shared %.3f on average (float32 llama.cpp: %.3f; min %d), max|diff| %.4f (llama.cpp's own Q8_K/f16 "
            "error: %.4f), mean|diff| %.4f on average (worst position %.4f); greedy continuations identical %d/%d\n",
            t->positions, t->argmax_same, 100.0 * t->argmax_same / t->positions, t->f32_argmax_same_q,
            t->top5_sum / t->positions, t->f32_top5_sum / t->positions, t->top5_min, t->max_diff, t->q8k_max,
            t->sum_mean / t->positions, t->worst_mean, t->gen_same, t->gen_compared);
    fprintf(stderr, "llama.cpp past position 0, %d positions: top-1 same %d (%.2f%%), max|diff| %.4f, worst mean|diff| %.4f\n",
            t->later, t->later_same, 100.0 * t->later_same / t->later, t->max_diff_later, t->worst_mean_later);
    fprintf(stderr, "llama.cpp float32 (dequantized model): max|diff| / row scale %.3g (absolute %.3g), near-ties %d\n",
            t->f32_max_rel, t->f32_max_abs, t->near_ties);
    free(blob32);
    free(blob);
    model_free_contents(&m);
    cJSON_Delete(meta);
    return 1;
}

// ----------------------------------------------------------------------------
// The bounds, and what was measured (2026-12-03, llama-cpp-python 0.3.36, 463 positions;
// docs/results.md):
//
// llama.cpp measures its own approximation: the same sequences through its float32 GGUF
// of the dequantized weights (float32 activations, f32 KV cache) move its logits, over the
// Q4_K_M run's top-20 ids, by at most 15.27 and 0.154 on average (q8k_* in the fixture).
// The 15.27 is position 0 alone: Qwen2.5's first token carries hidden-state outliers of
// thousands in a few channels, and a Q8_K block with one scale per 256 values rounds the
// other 255 values of such a block to a few levels; position 0's max |diff| is 10.9..15.3
// whatever its token, every later position's is <= 0.86. Its f16 KV cache alone (same
// model, KV f32) moves them by up to 0.52, mean 0.087 (kv_f32_* in the fixture).
//
// etx computes what float32 llama.cpp computes: held to F32_REL = 1e-4 of the row scale at
// every position (measured: see the test's output, ~6e-6). By the triangle inequality,
// |etx - llama.cpp| <= |float32 llama.cpp - llama.cpp| + |etx - float32 llama.cpp|, so at
// each position: max |diff| over llama.cpp's top-20 <= that position's q8k max + 1e-4 *
// scale, and the same for the mean (the 1e-4 term also covers the few Q4_K_M top-20 ids
// outside float32 llama.cpp's top-20, where etx is not checked directly but is the same
// float32 computation). These bounds are llama.cpp's own error, not a number picked
// above etx's measurement; an etx mistake anywhere (a layer, RoPE, a bias) breaks the
// float32 check first, by orders of magnitude (see docs/results.md for the perturbations
// tried).
// Top-1 and top-5: etx's must be float32 llama.cpp's except at near-ties (gaps within
// 2e-4 of the scale), so they agree with the Q4_K_M run exactly as often as float32
// llama.cpp does: 453 of 463 top-1, 4.875 of 5 of the top-5 on average.
// Greedy: the 4 continuations must be llama.cpp's token for token, or part only where
// llama.cpp's top-2 margin is under twice that position's largest allowed |diff|.
// The checks of both models, once etx's logits are compared (compare_with_llamacpp).
static void check_tally(const Tally* t) {
    // etx's top-1 and top-5 are float32 llama.cpp's (checked per position), so they agree with
    // llama.cpp's Q4_K_M run exactly where float32 llama.cpp does, but at near-ties
    ck_assert_msg(abs(t->argmax_same - t->f32_argmax_same_q) <= t->near_ties,
                  "top-1 same as llama.cpp at %d positions, float32 llama.cpp at %d (near-ties %d)", t->argmax_same,
                  t->f32_argmax_same_q, t->near_ties);
    ck_assert_msg(fabs(t->top5_sum - t->f32_top5_sum) <= 5.0 * t->near_ties,
                  "top-5 shared with llama.cpp %.0f in all, float32 llama.cpp %.0f (near-ties %d)", t->top5_sum,
                  t->f32_top5_sum, t->near_ties);
    ck_assert_int_eq(t->gen_compared, 4);
}

START_TEST(test_llamacpp_qwen15) {
    Tally t;
    if (compare_with_llamacpp(QWEN15_MODEL, QWEN15_FIX, &t)) check_tally(&t);
}
END_TEST

// The 0.5B sibling (a GGUF of the AWQ checkpoint, also Q4_K_M), the same prompts and checks;
// its bounds come from its own fixture's llama.cpp measurements.
START_TEST(test_llamacpp_qwen05) {
    Tally t;
    if (compare_with_llamacpp(QWEN05_MODEL, QWEN05_FIX, &t)) check_tally(&t);
}
END_TEST

static Suite* forward_qwen_suite(void) {
    Suite* s = suite_create("forward_qwen");
    TCase* tc = tcase_create("1.5B");
    tcase_add_test(tc, test_llamacpp_qwen15);
    suite_add_tcase(s, tc);
    tc = tcase_create("0.5B");
    tcase_add_test(tc, test_llamacpp_qwen05);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    cpu_set_threads(2);
    return check_run_suite(forward_qwen_suite());
}
