/*
 * test_metrics.c — checks the entropix metrics (host/policy/metrics.c) and the forward pass's
 * last-layer score capture (CpuRunState.last_scores, cpu_forward.c).
 *
 *   - logit_metrics (with the max and sigma top-nσ reads) and attn_metrics against
 *     fixtures/metrics/metrics.json, written by
 *     tests/scripts/gen_metrics_fixtures.py from a numpy float64 brute force (attention
 *     in compatibility mode there materialises the window's zero scores). Large inputs
 *     come from a generator reimplemented here bit for bit (gen_values).
 *     Tolerance: |got - want| <= 1e-5 |want| + floor, the outputs being float32; floors:
 *     entropy 1e-6 bits, varentropy 1e-6 bits^2 (logits) / 1e-9 (attention, a variance
 *     over heads that can be ~1e-9 itself), agreement 1e-12, interaction 1e-9, log_z 1e-6.
 *   - logits_nonfinite: NaN and +-inf at every position of short rows.
 *   - edge cases: no logits, all -inf, uniform at -FLT_MAX, shift and order invariance,
 *     finite logits between whole blocks of -inf; a window of 2^30 slots (never
 *     materialised); more heads than metrics.c keeps on its stack, against a direct
 *     double evaluation here.
 *   - the default model (ETX_DEFAULT_MODEL): for a chat prompt and a few greedy decode
 *     steps, softmax of every captured score row equals the captured probabilities, and
 *     the attention metrics are finite with attn_entropy <= log2(n_pos). Prints the
 *     metrics' magnitudes (corrected and window 4096) to stderr.
 */
#include <cJSON.h>
#include <check.h>
#include <float.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "cpu/cpu_forward.h"
#include "policy/metrics.h"
#include "check_etx.h"
#include "check_main.h"

#define REL_TOL 1e-5

// |got - want| <= REL_TOL |want| + floor (equal infinities pass)
static void check_close(const char* what, const char* name, double got, double want, double floor) {
    if (isinf(want) && got == want) return;
    ck_assert_msg(isfinite(got) && fabs(got - want) <= REL_TOL * fabs(want) + floor,
                  "%s %s: got %.9g, want %.9g (diff %.3g)", name, what, got, want, got - want);
}

// ----------------------------------------------------------------------------
// fixtures

static cJSON* load_json(const char* path) {
    char* text;
    size_t len;
    CK_OK(etx_read_file(path, &text, &len));
    cJSON* j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s: bad JSON", path);
    return j;
}

static double jnum(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(v != NULL, "missing %s", key);
    return v->valuedouble;
}

// A JSON number, or "inf" / "-inf".
static float jfloat(const cJSON* v) {
    if (cJSON_IsString(v)) return v->valuestring[0] == '-' ? -INFINITY : INFINITY;
    return (float)v->valuedouble;
}

// splitmix64, state advanced before each output: the stream gen_metrics_fixtures.py drew the
// fixtures' inputs from, replayed here (so not tests/support/test_rng.h's xorshift64)
static uint64_t splitmix64(uint64_t* state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// gen_values of gen_metrics_fixtures.py: x_i = float(((u0+u1+u2+u3) - 2) * (sqrt(3) scale)
// + offset), u = (r >> 40) / 2^24, four splitmix64 outputs per value
static void gen_values(float* x, uint64_t seed, int n, double scale, double offset) {
    uint64_t st = seed;
    double c = sqrt(3.0) * scale;
    for (int i = 0; i < n; i++) {
        double u[4];
        for (int j = 0; j < 4; j++) u[j] = (double)(splitmix64(&st) >> 40) / 16777216.0;
        double t = ((u[0] + u[1]) + u[2]) + u[3];
        x[i] = (float)((t - 2.0) * c + offset);
    }
}

// The input of a case: "values", or "gen" parameters plus optional "edits" [[i, v], ...].
static float* case_input(const cJSON* c, int* n_out) {
    const cJSON* vals = cJSON_GetObjectItemCaseSensitive(c, "values");
    float* x;
    int n;
    if (vals) {
        n = cJSON_GetArraySize(vals);
        x = malloc((size_t)n * sizeof(float));
        int i = 0;
        const cJSON* v;
        cJSON_ArrayForEach(v, vals) x[i++] = jfloat(v);
    } else {
        const cJSON* g = cJSON_GetObjectItemCaseSensitive(c, "gen");
        n = (int)jnum(g, "n");
        x = malloc((size_t)n * sizeof(float));
        gen_values(x, (uint64_t)jnum(g, "seed"), n, jnum(g, "scale"), jnum(g, "offset"));
        const cJSON* e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, "edits")) {
            int i = (int)cJSON_GetArrayItem(e, 0)->valuedouble;
            x[i] = jfloat(cJSON_GetArrayItem(e, 1));
        }
    }
    *n_out = n;
    return x;
}

START_TEST(test_logit_fixtures) {
    cJSON* doc = load_json(ETX_FIXTURES "/metrics/metrics.json");
    int count = 0;
    const cJSON* c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "logits")) {
        const char* name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        int n;
        float* x = case_input(c, &n);
        LogitMetrics r = logit_metrics(x, n);
        check_close("entropy", name, r.entropy, jnum(c, "entropy"), 1e-6);
        check_close("varentropy", name, r.varentropy, jnum(c, "varentropy"), 1e-6);
        check_close("log_z", name, r.log_z, jnum(c, "log_z"), 1e-6);
        // top-nσ's inputs: the max exactly, sigma as the other float32 outputs
        ck_assert_msg((double)r.max == jnum(c, "max"), "%s: max %.9g, want %.9g", name, r.max, jnum(c, "max"));
        check_close("sigma", name, r.sigma, jnum(c, "sigma"), 1e-6);
        ck_assert_msg(r.entropy >= 0.0f && r.varentropy >= 0.0f, "%s: negative", name);
        free(x);
        count++;
    }
    ck_assert_int_ge(count, 20);
    cJSON_Delete(doc);
}
END_TEST

static const char* ATTN_FIELDS[4] = {"attn_entropy", "attn_varentropy", "agreement", "interaction"};
static const double ATTN_FLOORS[4] = {1e-6, 1e-9, 1e-12, 1e-9};

static void check_attn(const char* name, int window, AttnMetrics r, const double want[4]) {
    double got[4] = {r.attn_entropy, r.attn_varentropy, r.agreement, r.interaction};
    char label[160];
    snprintf(label, sizeof label, "%s window %d", name, window);
    for (int i = 0; i < 4; i++) check_close(ATTN_FIELDS[i], label, got[i], want[i], ATTN_FLOORS[i]);
}

START_TEST(test_attn_fixtures) {
    cJSON* doc = load_json(ETX_FIXTURES "/metrics/metrics.json");
    int count = 0;
    const cJSON* c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "attention")) {
        const char* name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        int H = (int)jnum(c, "n_heads"), T = (int)jnum(c, "n_pos"), n;
        float* s = case_input(c, &n);
        ck_assert_int_eq(n, H * T);
        float* scratch = malloc((size_t)(H + 1) * T * sizeof(float));
        const cJSON* e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, "expect")) {
            int window = (int)jnum(e, "window");
            double want[4];
            for (int i = 0; i < 4; i++) want[i] = jnum(e, ATTN_FIELDS[i]);
            check_attn(name, window, attn_metrics(s, H, T, window, scratch), want);
            count++;
        }
        free(s), free(scratch);
    }
    ck_assert_int_ge(count, 100);
    cJSON_Delete(doc);
}
END_TEST

// ----------------------------------------------------------------------------
// edge cases

// logits_nonfinite: NaN, +inf and -inf (and the largest finite values, which are not) at
// every position of rows of 1..40 logits (the 8-wide part and the tail).
START_TEST(test_logits_nonfinite) {
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    float x[40];
    for (int n = 1; n <= 40; n++) {
        for (int i = 0; i < n; i++) x[i] = i % 2 ? 3.4028235e38f : -3.4028235e38f;
        ck_assert_int_eq(logits_nonfinite(x, n), 0);
        for (int at = 0; at < n; at++)
            for (int b = 0; b < 3; b++) {
                const float keep = x[at];
                x[at] = bad[b];
                ck_assert_msg(logits_nonfinite(x, n) == 1, "n %d position %d value %g", n, at, bad[b]);
                x[at] = keep;
            }
    }
    ck_assert_int_eq(logits_nonfinite(NULL, 0), 0);
}
END_TEST

START_TEST(test_logit_edges) {
    LogitMetrics r = logit_metrics(NULL, 0);
    ck_assert(r.entropy == 0.0f && r.varentropy == 0.0f && r.log_z == -INFINITY);
    ck_assert(r.max == -INFINITY && r.sigma == 0.0f);
    float ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
    r = logit_metrics(ninf, 3);
    ck_assert(r.entropy == 0.0f && r.varentropy == 0.0f && r.log_z == -INFINITY);
    ck_assert(r.max == -INFINITY && r.sigma == 0.0f);
    // uniform: exactly log2 n and 0, whatever the value
    float* x = malloc(49152 * sizeof(float));
    for (int i = 0; i < 49152; i++) x[i] = -FLT_MAX;
    r = logit_metrics(x, 49152);
    check_close("entropy", "uniform -FLT_MAX", r.entropy, log2(49152.0), 1e-6);
    ck_assert(r.varentropy == 0.0f);
    // shift invariance of H and V (the values stay exact in float32 after the shift)
    gen_values(x, 42, 49152, 4.0, 0.0);
    for (int i = 0; i < 49152; i++) x[i] = roundf(x[i] * 64.0f) / 64.0f;
    LogitMetrics a = logit_metrics(x, 49152);
    for (int i = 0; i < 49152; i++) x[i] += 1024.0f;
    LogitMetrics b = logit_metrics(x, 49152);
    check_close("entropy", "shifted", b.entropy, a.entropy, 1e-6);
    check_close("varentropy", "shifted", b.varentropy, a.varentropy, 1e-6);
    check_close("log_z", "shifted", b.log_z, a.log_z + 1024.0, 1e-6);
    check_close("sigma", "shifted", b.sigma, a.sigma, 1e-6);
    // order does not matter: maximum first or last
    float up[4] = {-3.0f, 0.0f, 1.0f, 9.0f}, down[4] = {9.0f, 1.0f, 0.0f, -3.0f};
    a = logit_metrics(up, 4), b = logit_metrics(down, 4);
    check_close("entropy", "order", b.entropy, a.entropy, 1e-7);
    check_close("varentropy", "order", b.varentropy, a.varentropy, 1e-7);
    gen_values(x, 43, 49152, 6.0, 0.0);
    a = logit_metrics(x, 49152);
    for (int i = 0; i < 49152 / 2; i++) {
        float t = x[i];
        x[i] = x[49151 - i], x[49151 - i] = t;
    }
    b = logit_metrics(x, 49152);
    check_close("entropy", "reversed", b.entropy, a.entropy, 1e-6);
    check_close("varentropy", "reversed", b.varentropy, a.varentropy, 1e-6);
    // two finite logits far apart in a sea of -inf (whole blocks of nothing before,
    // between and after): p = (sigmoid(1), sigmoid(-1))
    for (int i = 0; i < 2000; i++) x[i] = -INFINITY;
    x[700] = 4.0f, x[1500] = 5.0f;
    double p1 = 1.0 / (1.0 + exp(-1.0)), p0 = 1.0 - p1;
    double h = -(p0 * log2(p0) + p1 * log2(p1));
    double v = p0 * (log2(p0) + h) * (log2(p0) + h) + p1 * (log2(p1) + h) * (log2(p1) + h);
    a = logit_metrics(x, 2000);
    check_close("entropy", "two in -inf", a.entropy, h, 1e-7);
    check_close("varentropy", "two in -inf", a.varentropy, v, 1e-7);
    check_close("log_z", "two in -inf", a.log_z, 5.0 + log(1.0 + exp(-1.0)), 1e-7);
    free(x);
}
END_TEST

// Direct double evaluation of attn_metrics with the window's zeros materialised.
static void attn_brute(const float* s, int H, int T, int window, double out[4]) {
    int W = window > T ? window : T, compat = window > 0;
    double* P = malloc((size_t)H * W * sizeof(double));
    double* ent = malloc((size_t)H * sizeof(double));
    double inter = 0.0;
    for (int h = 0; h < H; h++) {
        double mx = -INFINITY, z = 0.0;
        for (int k = 0; k < W; k++) mx = fmax(mx, k < T ? s[h * T + k] : 0.0);
        for (int k = 0; k < W; k++) z += (P[(size_t)h * W + k] = exp((k < T ? s[h * T + k] : 0.0) - mx));
        ent[h] = 0.0;
        for (int k = 0; k < W; k++) {
            double p = P[(size_t)h * W + k] /= z;
            double c = compat ? fmax(p, 1e-10) : p;
            if (p > 0.0) ent[h] -= p * log2(c);
            inter += k < T ? fabs(s[h * T + k]) : 0.0;
        }
    }
    double em = 0.0, ev = 0.0, agree = 0.0;
    for (int h = 0; h < H; h++) em += ent[h] / H;
    for (int h = 0; h < H; h++) ev += (ent[h] - em) * (ent[h] - em) / H;
    for (int k = 0; k < W; k++) {
        double mean = 0.0;
        for (int h = 0; h < H; h++) mean += P[(size_t)h * W + k] / H;
        for (int h = 0; h < H; h++) agree += fabs(P[(size_t)h * W + k] - mean);
    }
    out[0] = em, out[1] = ev, out[2] = agree / ((double)H * W), out[3] = inter / ((double)H * W);
    free(P), free(ent);
}

START_TEST(test_attn_many_heads) {
    int H = 300, T = 5; // more heads than metrics.c keeps on its stack (256)
    float* s = malloc((size_t)H * T * sizeof(float));
    float* scratch = malloc((size_t)(H + 1) * T * sizeof(float));
    gen_values(s, 77, H * T, 3.0, -1.0);
    int windows[3] = {0, 5, 64};
    for (int i = 0; i < 3; i++) {
        double want[4];
        attn_brute(s, H, T, windows[i], want);
        check_attn("300 heads", windows[i], attn_metrics(s, H, T, windows[i], scratch), want);
    }
    free(s), free(scratch);
}
END_TEST

START_TEST(test_attn_huge_window) {
    // 2^30 slots, 2 heads, 3 positions: closed form only (materialising would be 8 GiB)
    float s[6] = {1.0f, -2.0f, 3.0f, 0.5f, 0.5f, -0.5f}, scratch[9];
    int W = 1 << 30;
    AttnMetrics r = attn_metrics(s, 2, 3, W, scratch);
    ck_assert(isfinite(r.attn_entropy) && isfinite(r.agreement));
    ck_assert_float_le(r.attn_entropy, 30.0f);
    ck_assert_float_ge(r.attn_entropy, 29.99f);
    check_close("interaction", "2^30 window", r.interaction, 7.5 / (2.0 * W), 0.0);
    // the window below n_pos is taken as n_pos: compat clip, no zeros
    double want[4];
    attn_brute(s, 2, 3, 2, want);
    check_attn("window < n_pos", 2, attn_metrics(s, 2, 3, 2, scratch), want);
    // nothing to measure
    r = attn_metrics(s, 0, 3, 0, scratch);
    ck_assert(r.attn_entropy == 0.0f && r.interaction == 0.0f);
}
END_TEST

// ----------------------------------------------------------------------------
// the default model

typedef struct {
    double min, max, sum;
    int n;
} Range;

static void range_add(Range* r, double v) {
    if (r->n == 0 || v < r->min) r->min = v;
    if (r->n == 0 || v > r->max) r->max = v;
    r->sum += v;
    r->n++;
}

static void range_print(const char* what, const Range* r) {
    fprintf(stderr, "  %-26s min %-11.4g mean %-11.4g max %-11.4g\n", what, r->min, r->sum / r->n, r->max);
}

START_TEST(test_default_model_capture) {
    if (access(ETX_DEFAULT_MODEL, R_OK) != 0)
        ck_abort_msg("default model missing: %s (fetch it with the models/ script)", ETX_DEFAULT_MODEL);
    etx_model m;
    CK_OK(gguf_model_load(ETX_DEFAULT_MODEL, &m));
    const ModelConfig* c = &m.cfg;
    etx_chat_message msgs[2] = {
        {"system", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
        {"user", "What is the capital of France, and why is it famous? Answer in two sentences."},
    };
    char* text;
    CK_OK(chat_template_apply(m.chat, msgs, 2, 1, &text));
    int32_t* ids;
    int n;
    CK_OK(tokenizer_encode(m.tok, text, strlen(text), &ids, &n));
    free(text);

    int H = c->n_heads, max_seq = 512, steps = 24;
    KVCache kv;
    CpuRunState s;
    CK_OK(build_kv_cache(&kv, c, max_seq));
    CK_OK(build_cpu_run_state(&s, c));
    float* scores = malloc((size_t)H * max_seq * sizeof(float));
    float* attn = malloc((size_t)H * max_seq * sizeof(float));
    float* row = malloc((size_t)max_seq * sizeof(float));
    float* scratch = malloc((size_t)(H + 1) * max_seq * sizeof(float));
    float* logits = malloc((size_t)c->vocab_size * sizeof(float));
    s.last_scores = scores;
    s.last_attn = attn;

    // Range[mode][field]: mode 0 corrected, 1 window 4096; field: the four attention
    // metrics; plus H, V of the logits
    Range ar[2][4], lh = {0}, lv = {0};
    memset(ar, 0, sizeof ar);
    int32_t tok = 0;
    for (int step = 0; step <= steps; step++) {
        if (step == 0) CK_OK(cpu_forward(&m, &s, &kv, ids, n, logits, 0));
        else CK_OK(cpu_forward(&m, &s, &kv, &tok, 1, logits, 0));
        int T = kv.pos;
        ck_assert_int_eq(s.last_scores_len, T);
        ck_assert_int_eq(s.last_attn_len, T);
        // softmax of each score row is the captured probability row
        double worst = 0.0;
        for (int h = 0; h < H; h++) {
            memcpy(row, scores + (size_t)h * T, (size_t)T * sizeof(float));
            softmax(row, T);
            for (int t = 0; t < T; t++) worst = fmax(worst, fabs(row[t] - attn[(size_t)h * T + t]));
        }
        ck_assert_msg(worst <= 1e-5, "step %d: softmax(last_scores) vs last_attn max diff %g", step, worst);
        for (int mode = 0; mode < 2; mode++) {
            AttnMetrics r = attn_metrics(scores, H, T, mode ? 4096 : 0, scratch);
            double v[4] = {r.attn_entropy, r.attn_varentropy, r.agreement, r.interaction};
            for (int i = 0; i < 4; i++) {
                ck_assert_msg(isfinite(v[i]) && v[i] >= 0.0, "step %d mode %d %s = %g", step, mode, ATTN_FIELDS[i], v[i]);
                range_add(&ar[mode][i], v[i]);
            }
            double cap = log2(mode ? 4096.0 : (double)T) * (1.0 + 1e-6);
            ck_assert_msg(r.attn_entropy <= cap, "step %d mode %d: attn_entropy %g > log2(slots)", step, mode,
                          r.attn_entropy);
        }
        LogitMetrics lm = logit_metrics(logits, c->vocab_size);
        ck_assert(isfinite(lm.entropy) && isfinite(lm.varentropy) && isfinite(lm.log_z));
        range_add(&lh, lm.entropy);
        range_add(&lv, lm.varentropy);
        int best = 0; // greedy
        for (int i = 1; i < c->vocab_size; i++) best = logits[i] > logits[best] ? i : best;
        tok = best;
    }
    fprintf(stderr, "SmolLM2 chat prompt (%d tokens) + %d greedy steps, %d heads:\n", n, steps, H);
    range_print("H (bits)", &lh);
    range_print("V (bits^2)", &lv);
    const char* mode_name[2] = {"corrected", "window 4096"};
    for (int mode = 0; mode < 2; mode++)
        for (int i = 0; i < 4; i++) {
            char label[64];
            snprintf(label, sizeof label, "%s [%s]", ATTN_FIELDS[i], mode_name[mode]);
            range_print(label, &ar[mode][i]);
        }
    free(scores), free(attn), free(row), free(scratch), free(logits), free(ids);
    free_cpu_run_state(&s);
    free_kv_cache(&kv);
    model_free_contents(&m);
}
END_TEST

// ----------------------------------------------------------------------------

static Suite* metrics_suite(void) {
    Suite* s = suite_create("metrics");
    TCase* tc = tcase_create("fixtures");
    tcase_add_test(tc, test_logit_fixtures);
    tcase_add_test(tc, test_attn_fixtures);
    tcase_add_test(tc, test_logit_edges);
    tcase_add_test(tc, test_logits_nonfinite);
    tcase_add_test(tc, test_attn_many_heads);
    tcase_add_test(tc, test_attn_huge_window);
    suite_add_tcase(s, tc);

    tc = tcase_create("default model");
    tcase_add_test(tc, test_default_model_capture);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    cpu_set_threads(2);
    return check_run_suite(metrics_suite());
}
