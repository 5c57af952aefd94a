/*
 * policy.c — the per-request sampling policy (etx_policy): the one table of named
 * parameters (policy.h), and from it the defaults, validation, setting by name, range
 * texts for messages and help; names of kinds and branches.
 *
 * Kinds and where their parameters live:
 *   greedy    seed only (argmax needs nothing; the top-level sampling fields keep the
 *             sample defaults and are validated but unused);
 *   sample    temperature, top_k, top_p, min_p, top_n_sigma, edt_theta, edt_base, seed:
 *             the top-level fields;
 *   entropix  temperature, top_k, top_p, min_p name the base values of
 *             etx_entropix_params (T0, ...), plus every other field of it, and seed.
 *             The top-level temperature/top_k/top_p/min_p are not used by entropix and
 *             keep the sample defaults (they are not mirrored).
 *   learned   the entropix rows (its adaptive action and pause token read them) and seed;
 *             the network itself is etx_policy.learned, an id of host/policy/learned.c.
 *   dslider   its own rows (PARAM_DSLIDER: etx_dslider_params, the reference's
 *             DEFAULT_DS_CONFIG) and seed.
 * Defaults are the reference entropix v1 values (docs/entropix.md §3, which
 * tests/policy/test_param_docs.c keeps equal to this table).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "policy/policy.h"

#define PARAM_ALL_KINDS 8 // seed: greedy, sample and entropix

#define TOP(f) ((int)offsetof(etx_policy, f))
#define ENT(f) ((int)offsetof(etx_policy, entropix.f))
#define DS(f) ((int)offsetof(etx_policy, dslider.f))
#define ANY (-FLT_MAX)
#define INF FLT_MAX
#define NONE (-1)

// name, type, offset for sample, offset for entropix, lo, hi, flags, sample default,
// entropix default, help
const PolicyParam policy_params[] = {
    {"seed", PARAM_U64, TOP(seed), TOP(seed), 0, 9007199254740992.0, PARAM_ALL_KINDS, 0, 0,
     "random seed; draws depend on (seed, request, step, draw) only"},
    {"temperature", PARAM_FLOAT, TOP(temperature), ENT(temperature), 0, INF, PARAM_LO_OPEN, 1, 0.666,
     "temperature (entropix: T0, the base every branch scales)"},
    {"top_k", PARAM_INT, TOP(top_k), ENT(top_k), 1, 1000000, PARAM_ZERO_OFF, 0, 27,
     "keep the K most likely tokens (sample: 0 = off; entropix: base top-k)"},
    {"top_p", PARAM_FLOAT, TOP(top_p), ENT(top_p), 0, 1, PARAM_LO_OPEN, 1, 0.90,
     "keep the smallest set of most likely tokens whose mass reaches P (1 = off)"},
    {"min_p", PARAM_FLOAT, TOP(min_p), ENT(min_p), 0, 1, PARAM_HI_OPEN, 0, 0.03,
     "drop tokens below M times the top probability (0 = off)"},
    // sample only (the entropix default column repeats the sample one: docs/entropix.md §3
    // lists one default per row)
    {"top_n_sigma", PARAM_FLOAT, TOP(top_n_sigma), NONE, 0, INF, 0, 0, 0,
     "sample: keep tokens with logit >= max - N sigma of the row's logits (0 = off)"},
    {"edt_theta", PARAM_FLOAT, TOP(edt_theta), NONE, 0, INF, 0, 0, 0,
     "sample: entropy-based temperature T = temperature edt_base^(this / H), H in nats (0 = off)"},
    {"edt_base", PARAM_FLOAT, TOP(edt_base), NONE, 0, 1, PARAM_LO_OPEN | PARAM_HI_OPEN, 0.8, 0.8,
     "sample: N of the entropy-based temperature"},
    {"low_ent_thresh", PARAM_FLOAT, NONE, ENT(low_ent_thresh), 0, INF, 0, 0, 0.1,
     "LELV (argmax) when H < this and V < low_vent_thresh (bits)"},
    {"low_vent_thresh", PARAM_FLOAT, NONE, ENT(low_vent_thresh), 0, INF, 0, 0, 0.1,
     "'low varentropy' for LELV and HELV: V < this (bits^2)"},
    {"med_ent_thresh", PARAM_FLOAT, NONE, ENT(med_ent_thresh), 0, INF, 0, 0, 3.0,
     "HEHV when H > this and V > high_vent_thresh (bits)"},
    {"high_ent_thresh", PARAM_FLOAT, NONE, ENT(high_ent_thresh), 0, INF, 0, 0, 5.0,
     "HELV when H > this and V < low_vent_thresh; LEHV when H < this (bits)"},
    {"high_vent_thresh", PARAM_FLOAT, NONE, ENT(high_vent_thresh), 0, INF, 0, 0, 5.0,
     "'high varentropy' for LEHV and HEHV: V > this (bits^2)"},
    {"helv_attn_ent_offset", PARAM_FLOAT, NONE, ENT(helv_attn_ent_offset), ANY, INF, 0, 0, 1.3,
     "HELV resample: T = min(1.5, T0 (offset + coef A_H))"},
    {"helv_attn_ent_coef", PARAM_FLOAT, NONE, ENT(helv_attn_ent_coef), ANY, INF, 0, 0, 0.2,
     "HELV resample: coefficient of the attention entropy"},
    {"lehv_interaction_strength_offset", PARAM_FLOAT, NONE, ENT(lehv_interaction_strength_offset), ANY, INF, 0, 0,
     1.2, "LEHV: T = min(1.5, T0 (offset + coef IS))"},
    {"lehv_interaction_strength_coef", PARAM_FLOAT, NONE, ENT(lehv_interaction_strength_coef), ANY, INF, 0, 0, 0.3,
     "LEHV: coefficient of the interaction strength"},
    {"hehv_attn_ent_coef", PARAM_FLOAT, NONE, ENT(hehv_attn_ent_coef), ANY, INF, 0, 0, 0.2,
     "HEHV: top_p = max(0.5, top_p - coef A_H)"},
    {"hehv_attn_vent_offset", PARAM_FLOAT, NONE, ENT(hehv_attn_vent_offset), ANY, INF, 0, 0, 2.0,
     "HEHV: T = max(2.0, T0 (offset + coef A_V))"},
    {"hehv_attn_vent_coef", PARAM_FLOAT, NONE, ENT(hehv_attn_vent_coef), ANY, INF, 0, 0, 0.5,
     "HEHV: coefficient of the attention varentropy"},
    {"n_adaptive_samples", PARAM_INT, NONE, ENT(n_adaptive_samples), 1, 64, 0, 0, 5,
     "adaptive branch: draws, of which the most likely is kept"},
    {"ada_temp_logits", PARAM_FLOAT, NONE, ENT(ada_temp_logits), ANY, INF, 0, 0, 0.3,
     "adaptive: T = T0 (1 + this (H+V) + ada_temp_attn (A_H+A_V) - ada_temp_agree AG)"},
    {"ada_temp_attn", PARAM_FLOAT, NONE, ENT(ada_temp_attn), ANY, INF, 0, 0, 0.2,
     "adaptive: temperature coefficient of A_H + A_V"},
    {"ada_temp_agree", PARAM_FLOAT, NONE, ENT(ada_temp_agree), ANY, INF, 0, 0, 0.2,
     "adaptive: temperature coefficient of the agreement"},
    {"ada_top_p", PARAM_FLOAT, NONE, ENT(ada_top_p), ANY, INF, 0, 0, 0.1,
     "adaptive: top_p = clip(top_p (1 + this A_V), 0.1, 1)"},
    {"ada_top_k_int", PARAM_FLOAT, NONE, ENT(ada_top_k_int), ANY, INF, 0, 0, 0.3,
     "adaptive: top_k = clip(round(top_k (1 + this IS - ada_top_k_agree AG)), 1, 100)"},
    {"ada_top_k_agree", PARAM_FLOAT, NONE, ENT(ada_top_k_agree), ANY, INF, 0, 0, 0.2,
     "adaptive: top-k coefficient of the agreement"},
    {"ada_min_p", PARAM_FLOAT, NONE, ENT(ada_min_p), ANY, INF, 0, 0, 0.5,
     "adaptive: min_p = clip(min_p (1 - this (H+V)), 0.01, 0.5)"},
    {"ada_score_logits_ent", PARAM_FLOAT, NONE, ENT(ada_score_logits_ent), ANY, INF, 0, 0, 0.1,
     "reference's score term (1-H) this; token-independent, does not change the winner"},
    {"ada_score_attn_ent", PARAM_FLOAT, NONE, ENT(ada_score_attn_ent), ANY, INF, 0, 0, 0.2,
     "reference's score term (1-A_H) this; token-independent"},
    {"ada_score_logits_vent", PARAM_FLOAT, NONE, ENT(ada_score_logits_vent), ANY, INF, 0, 0, 0.3,
     "reference's score term (1-V) this; token-independent"},
    {"ada_score_attn_vent", PARAM_FLOAT, NONE, ENT(ada_score_attn_vent), ANY, INF, 0, 0, 0.4,
     "reference's score term (1-A_V) this; token-independent"},
    {"ada_score_agree", PARAM_FLOAT, NONE, ENT(ada_score_agree), ANY, INF, 0, 0, 0.5,
     "reference's score term AG this; token-independent"},
    {"ada_score_int", PARAM_FLOAT, NONE, ENT(ada_score_int), ANY, INF, 0, 0, 0.6,
     "reference's score term IS this; token-independent"},
    {"pause_token", PARAM_INT, NONE, ENT(pause_token), -1, 2147483647.0, 0, 0, -1,
     "token HELV inserts; -1 = the model's \" ...\" token (Llama 3: 2564)"},
    {"attn_window", PARAM_INT, NONE, ENT(attn_window), 0, 16777216, 0, 0, 0,
     "attention metrics over: 0 = the valid positions; N = the reference's N slots (4096)"},
    // dslider (PARAM_DSLIDER: the second offset and default are dslider's, etx_dslider_params)
    {"support", PARAM_INT, NONE, DS(support), 1, ETX_DSLIDER_MAX_SUPPORT, PARAM_DSLIDER, 0, 32,
     "dslider: ranks the Dirichlet lives on (the most likely tokens of the step, >= outlier_topk)"},
    {"outlier_topk", PARAM_INT, NONE, DS(outlier_topk), 1, ETX_DSLIDER_MAX_SUPPORT, PARAM_DSLIDER, 0, 6,
     "dslider: tokens of the inlier path (argmax or entropy-matched draw)"},
    {"dirichlet_wild", PARAM_INT, NONE, DS(dirichlet_wild), 0, 1, PARAM_DSLIDER, 0, 1,
     "dslider: 1 = draw from the Dirichlet, 0 = use its mean"},
    {"noise_floor", PARAM_FLOAT, NONE, DS(noise_floor), ANY, 0, PARAM_DSLIDER, 0, -12,
     "dslider: log-probabilities (nats) below this count as ln(1e-8)"},
    {"emwa_logp_base", PARAM_FLOAT, NONE, DS(emwa_logp_base), 0, INF, PARAM_DSLIDER | PARAM_LO_OPEN, 0, 4,
     "dslider: support EMA weight c = base^(-exp_factor / KL)"},
    {"emwa_logp_exp_factor", PARAM_FLOAT, NONE, DS(emwa_logp_exp_factor), ANY, INF, PARAM_DSLIDER, 0, 3,
     "dslider: exponent of the support EMA weight"},
    {"emwa_temp_coeff", PARAM_FLOAT, NONE, DS(emwa_temp_coeff), 0, 1, PARAM_DSLIDER, 0, 0.7,
     "dslider: EMA weight of the new value of the outlier temperature"},
    {"emwa_dir_ent_coeff", PARAM_FLOAT, NONE, DS(emwa_dir_ent_coeff), 0, 1, PARAM_DSLIDER, 0, 0.7,
     "dslider: EMA weight of the new value of the Dirichlet's negative log-likelihood"},
    {"emwa_ent_scaffold_coeff", PARAM_FLOAT, NONE, DS(emwa_ent_scaffold_coeff), 0, 1, PARAM_DSLIDER, 0, 0.7,
     "dslider: EMA weight of the new value of the mix's entropy"},
    {"emwa_varent_scaffold_coeff", PARAM_FLOAT, NONE, DS(emwa_varent_scaffold_coeff), 0, 1, PARAM_DSLIDER, 0, 0.7,
     "dslider: EMA weight of the new value of the mix's varentropy"},
    {"emwa_ent_naked_coeff", PARAM_FLOAT, NONE, DS(emwa_ent_naked_coeff), 0, 1, PARAM_DSLIDER, 0, 0.7,
     "dslider: EMA weight of the new value of the model's entropy"},
    {"emwa_varent_naked_coeff", PARAM_FLOAT, NONE, DS(emwa_varent_naked_coeff), 0, 1, PARAM_DSLIDER, 0, 0.7,
     "dslider: EMA weight of the new value of the model's varentropy"},
    {"emwa_topk_ent_naked_coeff", PARAM_FLOAT, NONE, DS(emwa_topk_ent_naked_coeff), 0, 1, PARAM_DSLIDER, 0, 0.7,
     "dslider: EMA weight of the new value of the top-k entropy"},
    {"token_cross_ent_scaffold_coeff", PARAM_FLOAT, NONE, DS(token_cross_ent_scaffold_coeff), 0, 1, PARAM_DSLIDER, 0, 0.65,
     "dslider: EMA weight of the new value of the token's surprisal under the mix"},
    {"token_cross_ent_naked_coeff", PARAM_FLOAT, NONE, DS(token_cross_ent_naked_coeff), 0, 1, PARAM_DSLIDER, 0, 0.65,
     "dslider: EMA weight of the new value of the token's surprisal under the model"},
    {"token_cross_var_scaffold_coeff", PARAM_FLOAT, NONE, DS(token_cross_var_scaffold_coeff), 0, 1, PARAM_DSLIDER, 0, 0.75,
     "dslider: EMA weight of the new value of the mix surprisal's squared deviation"},
    {"token_cross_var_naked_coeff", PARAM_FLOAT, NONE, DS(token_cross_var_naked_coeff), 0, 1, PARAM_DSLIDER, 0, 0.65,
     "dslider: EMA weight of the new value of the model surprisal's squared deviation"},
    {"perturb_base_coeff", PARAM_FLOAT, NONE, DS(perturb_base_coeff), 0, INF, PARAM_DSLIDER | PARAM_LO_OPEN, 0, 10,
     "dslider: Dirichlet weight in the mix 1 - base^(-exp / KL)"},
    {"perturb_exp_coeff", PARAM_FLOAT, NONE, DS(perturb_exp_coeff), ANY, INF, PARAM_DSLIDER, 0, 1,
     "dslider: exponent of the Dirichlet's weight in the mix"},
    {"outlier_bilinear_00", PARAM_FLOAT, NONE, DS(outlier_bilinear[0]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[0][0], E_0 (tc_scaffold) times sigma_0"},
    {"outlier_bilinear_01", PARAM_FLOAT, NONE, DS(outlier_bilinear[1]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[0][1], E_0 (tc_scaffold) times sigma_1"},
    {"outlier_bilinear_02", PARAM_FLOAT, NONE, DS(outlier_bilinear[2]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[0][2], E_0 (tc_scaffold) times sigma_2"},
    {"outlier_bilinear_03", PARAM_FLOAT, NONE, DS(outlier_bilinear[3]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[0][3], E_0 (tc_scaffold) times sigma_3"},
    {"outlier_bilinear_10", PARAM_FLOAT, NONE, DS(outlier_bilinear[4]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[1][0], E_1 (tc_naked) times sigma_0"},
    {"outlier_bilinear_11", PARAM_FLOAT, NONE, DS(outlier_bilinear[5]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[1][1], E_1 (tc_naked) times sigma_1"},
    {"outlier_bilinear_12", PARAM_FLOAT, NONE, DS(outlier_bilinear[6]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[1][2], E_1 (tc_naked) times sigma_2"},
    {"outlier_bilinear_13", PARAM_FLOAT, NONE, DS(outlier_bilinear[7]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[1][3], E_1 (tc_naked) times sigma_3"},
    {"outlier_bilinear_20", PARAM_FLOAT, NONE, DS(outlier_bilinear[8]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[2][0], E_2 (ent_scaffold) times sigma_0"},
    {"outlier_bilinear_21", PARAM_FLOAT, NONE, DS(outlier_bilinear[9]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[2][1], E_2 (ent_scaffold) times sigma_1"},
    {"outlier_bilinear_22", PARAM_FLOAT, NONE, DS(outlier_bilinear[10]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[2][2], E_2 (ent_scaffold) times sigma_2"},
    {"outlier_bilinear_23", PARAM_FLOAT, NONE, DS(outlier_bilinear[11]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[2][3], E_2 (ent_scaffold) times sigma_3"},
    {"outlier_bilinear_30", PARAM_FLOAT, NONE, DS(outlier_bilinear[12]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[3][0], E_3 (ent_naked) times sigma_0"},
    {"outlier_bilinear_31", PARAM_FLOAT, NONE, DS(outlier_bilinear[13]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[3][1], E_3 (ent_naked) times sigma_1"},
    {"outlier_bilinear_32", PARAM_FLOAT, NONE, DS(outlier_bilinear[14]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[3][2], E_3 (ent_naked) times sigma_2"},
    {"outlier_bilinear_33", PARAM_FLOAT, NONE, DS(outlier_bilinear[15]), ANY, INF, PARAM_DSLIDER, 0, 1.3,
     "dslider outlier score: B[3][3], E_3 (ent_naked) times sigma_3"},
    {"outlier_linear_state_ent_0", PARAM_FLOAT, NONE, DS(outlier_linear_state_ent[0]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of E_0 (tc_scaffold)"},
    {"outlier_linear_state_ent_1", PARAM_FLOAT, NONE, DS(outlier_linear_state_ent[1]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of E_1 (tc_naked)"},
    {"outlier_linear_state_ent_2", PARAM_FLOAT, NONE, DS(outlier_linear_state_ent[2]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of E_2 (ent_scaffold)"},
    {"outlier_linear_state_ent_3", PARAM_FLOAT, NONE, DS(outlier_linear_state_ent[3]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of E_3 (ent_naked)"},
    {"outlier_linear_state_std_0", PARAM_FLOAT, NONE, DS(outlier_linear_state_std[0]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of sigma_0 (tc_scaffold)"},
    {"outlier_linear_state_std_1", PARAM_FLOAT, NONE, DS(outlier_linear_state_std[1]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of sigma_1 (tc_naked)"},
    {"outlier_linear_state_std_2", PARAM_FLOAT, NONE, DS(outlier_linear_state_std[2]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of sigma_2 (ent_scaffold)"},
    {"outlier_linear_state_std_3", PARAM_FLOAT, NONE, DS(outlier_linear_state_std[3]), ANY, INF, PARAM_DSLIDER, 0, 0.8,
     "dslider outlier score: coefficient of sigma_3 (ent_naked)"},
    {"outlier_linear_naked_ent", PARAM_FLOAT, NONE, DS(outlier_linear_naked_ent), ANY, INF, PARAM_DSLIDER, 0, 1.2,
     "dslider outlier score: coefficient of the step's entropy (nats)"},
    {"outlier_linear_naked_varent", PARAM_FLOAT, NONE, DS(outlier_linear_naked_varent), ANY, INF, PARAM_DSLIDER, 0, 1.2,
     "dslider outlier score: coefficient of the step's varentropy"},
    {"outlier_bias", PARAM_FLOAT, NONE, DS(outlier_bias), ANY, INF, PARAM_DSLIDER, 0, 0,
     "dslider outlier score: bias; the step is an outlier when the score > 0"},
    {"argmax_weight", PARAM_FLOAT, NONE, DS(argmax_weight), ANY, INF, PARAM_DSLIDER, 0, 0.1,
     "dslider inlier: argmax when the top-k entropy < weight EMA + bias"},
    {"argmax_bias", PARAM_FLOAT, NONE, DS(argmax_bias), ANY, INF, PARAM_DSLIDER, 0, 1.2,
     "dslider inlier: bias of the argmax test"},
    {"dirichlet_weight", PARAM_FLOAT, NONE, DS(dirichlet_weight), ANY, INF, PARAM_DSLIDER, 0, 0.1,
     "dslider outlier: the mix's argmax when -loglik < weight EMA + bias"},
    {"dirichlet_bias", PARAM_FLOAT, NONE, DS(dirichlet_bias), ANY, INF, PARAM_DSLIDER, 0, 1.2,
     "dslider outlier: bias of the Dirichlet test"},
    {"target_entropy_linear_0", PARAM_FLOAT, NONE, DS(target_entropy_linear[0]), ANY, INF, PARAM_DSLIDER, 0, 1,
     "dslider outlier target entropy: coefficient of E_0 (tc_scaffold)"},
    {"target_entropy_linear_1", PARAM_FLOAT, NONE, DS(target_entropy_linear[1]), ANY, INF, PARAM_DSLIDER, 0, 1,
     "dslider outlier target entropy: coefficient of E_1 (tc_naked)"},
    {"target_entropy_linear_2", PARAM_FLOAT, NONE, DS(target_entropy_linear[2]), ANY, INF, PARAM_DSLIDER, 0, 1,
     "dslider outlier target entropy: coefficient of E_2 (ent_scaffold)"},
    {"target_entropy_linear_3", PARAM_FLOAT, NONE, DS(target_entropy_linear[3]), ANY, INF, PARAM_DSLIDER, 0, 1,
     "dslider outlier target entropy: coefficient of E_3 (ent_naked)"},
    {"target_entropy_inv_temp", PARAM_FLOAT, NONE, DS(target_entropy_inv_temp), ANY, INF, PARAM_DSLIDER, 0, 8,
     "dslider outlier target entropy: coefficient of 1 / EMA(T)"},
    {"target_entropy_bias", PARAM_FLOAT, NONE, DS(target_entropy_bias), ANY, INF, PARAM_DSLIDER, 0, 0,
     "dslider outlier target entropy: bias"},
};
const int policy_n_params = (int)(sizeof policy_params / sizeof policy_params[0]);

const PolicyParam* policy_param_find(const char* name) {
    for (int i = 0; i < policy_n_params; i++)
        if (strcmp(policy_params[i].name, name) == 0) return &policy_params[i];
    return NULL;
}

// Levenshtein distance, names cut at 63 characters.
static int edit_distance(const char* a, const char* b) {
    int na = (int)strlen(a), nb = (int)strlen(b);
    if (na > 63) na = 63;
    if (nb > 63) nb = 63;
    int prev[64], cur[64];
    for (int j = 0; j <= nb; j++) prev[j] = j;
    for (int i = 1; i <= na; i++) {
        cur[0] = i;
        for (int j = 1; j <= nb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(nb + 1));
    }
    return prev[nb];
}

const char* policy_param_suggest(const char* name) {
    // '-' and '_' are the same to a human ("low-ent-thresh" means low_ent_thresh)
    char norm[64];
    size_t n = strlen(name);
    if (n > 63) n = 63;
    for (size_t i = 0; i < n; i++) norm[i] = name[i] == '-' ? '_' : name[i];
    norm[n] = '\0';
    const char* best = NULL;
    int best_d = 1 << 30;
    for (int i = 0; i < policy_n_params; i++) {
        int d = edit_distance(norm, policy_params[i].name);
        if (d < best_d) best_d = d, best = policy_params[i].name;
    }
    const char* kinds = "policy";
    int dk = edit_distance(norm, kinds);
    if (dk < best_d) best_d = dk, best = kinds;
    int limit = (int)n / 3 > 2 ? (int)n / 3 : 2;
    return best_d <= limit ? best : NULL;
}

// The learned policy reads the entropix parameters (its adaptive action, pause token).
static etx_policy_kind table_kind(etx_policy_kind kind) {
    return kind == ETX_POLICY_LEARNED ? ETX_POLICY_ENTROPIX : kind;
}

int policy_param_applies(const PolicyParam* p, etx_policy_kind kind) {
    if (p->flags & PARAM_ALL_KINDS) return 1;
    if (p->flags & PARAM_DSLIDER) return kind == ETX_POLICY_DSLIDER;
    kind = table_kind(kind);
    if (kind == ETX_POLICY_SAMPLE) return p->off_sample >= 0;
    if (kind == ETX_POLICY_ENTROPIX) return p->off_entropix >= 0;
    return 0;
}

// Where the parameter lives for this kind; a parameter of the other kind only (an
// entropix field under sample, a sample field under entropix) is read where it is, so
// that reading any parameter of any policy stays inside the struct.
static int offset_of(const PolicyParam* p, etx_policy_kind kind) {
    kind = table_kind(kind);
    const int off = kind == ETX_POLICY_ENTROPIX ? p->off_entropix : p->off_sample;
    return off >= 0 ? off : (p->off_sample >= 0 ? p->off_sample : p->off_entropix);
}

static double lo_of(const PolicyParam* p, etx_policy_kind kind) {
    return (p->flags & PARAM_ZERO_OFF) && table_kind(kind) != ETX_POLICY_ENTROPIX ? 0.0 : p->lo;
}

void policy_param_range(const PolicyParam* p, etx_policy_kind kind, char* buf, size_t cap) {
    const double lo = lo_of(p, kind);
    if (p->type != PARAM_FLOAT) {
        snprintf(buf, cap, "%.0f..%.0f", lo, p->hi);
        return;
    }
    if (p->lo == ANY && p->hi == INF) snprintf(buf, cap, "any finite number");
    else if (p->hi == INF) snprintf(buf, cap, "%s %g", (p->flags & PARAM_LO_OPEN) ? ">" : ">=", lo);
    else
        snprintf(buf, cap, "%c%g, %g%c", (p->flags & PARAM_LO_OPEN) ? '(' : '[', lo, p->hi,
                 (p->flags & PARAM_HI_OPEN) ? ')' : ']');
}

double policy_param_get(const etx_policy* pol, const PolicyParam* p) {
    const char* base = (const char*)pol + offset_of(p, pol->kind);
    switch (p->type) {
    case PARAM_INT: return (double)*(const int*)base;
    case PARAM_FLOAT: return (double)*(const float*)base;
    case PARAM_U64: return (double)*(const uint64_t*)base;
    }
    return 0.0;
}

static int in_range(const PolicyParam* p, etx_policy_kind kind, double v) {
    if (!isfinite(v)) return 0;
    const double lo = lo_of(p, kind);
    if ((p->flags & PARAM_LO_OPEN) ? !(v > lo) : !(v >= lo)) return 0;
    if ((p->flags & PARAM_HI_OPEN) ? !(v < p->hi) : !(v <= p->hi)) return 0;
    return 1;
}

static etx_status range_error(const PolicyParam* p, etx_policy_kind kind, double v) {
    char r[64];
    policy_param_range(p, kind, r, sizeof r);
    return etx_error(ETX_ERR_INVALID_ARG, "policy: %s must be %s%s (got %.9g)", p->name,
                     (p->type != PARAM_FLOAT || (p->hi != INF && p->lo != ANY)) ? "in " : "", r, v);
}

int policy_kind_parse(const char* s) {
    if (strcmp(s, "greedy") == 0) return ETX_POLICY_GREEDY;
    if (strcmp(s, "sample") == 0) return ETX_POLICY_SAMPLE;
    if (strcmp(s, "entropix") == 0) return ETX_POLICY_ENTROPIX;
    if (strcmp(s, "learned") == 0) return ETX_POLICY_LEARNED;
    if (strcmp(s, "dslider") == 0) return ETX_POLICY_DSLIDER;
    return -1;
}

const char* policy_kind_name(etx_policy_kind kind) {
    switch (kind) {
    case ETX_POLICY_GREEDY: return "greedy";
    case ETX_POLICY_SAMPLE: return "sample";
    case ETX_POLICY_ENTROPIX: return "entropix";
    case ETX_POLICY_LEARNED: return "learned";
    case ETX_POLICY_DSLIDER: return "dslider";
    }
    return "unknown";
}

static void store(etx_policy* pol, const PolicyParam* p, int off, double v) {
    char* base = (char*)pol + off;
    switch (p->type) {
    case PARAM_INT: *(int*)base = (int)v; break;
    case PARAM_FLOAT: *(float*)base = (float)v; break;
    case PARAM_U64: *(uint64_t*)base = (uint64_t)v; break;
    }
}

etx_policy etx_policy_default(etx_policy_kind kind) {
    etx_policy pol;
    memset(&pol, 0, sizeof pol);
    pol.kind = kind;
    // every field gets a value whatever the kind, so a policy can switch kind safely:
    // the top-level fields the sample defaults, etx_entropix_params the reference's
    for (int i = 0; i < policy_n_params; i++) {
        const PolicyParam* p = &policy_params[i];
        if (p->off_sample >= 0) store(&pol, p, p->off_sample, p->def_sample);
        if (p->off_entropix >= 0 && p->off_entropix != p->off_sample) store(&pol, p, p->off_entropix, p->def_entropix);
    }
    return pol;
}

etx_status etx_policy_validate(const etx_policy* pol) {
    const etx_policy_kind kind = pol->kind;
    if (kind != ETX_POLICY_GREEDY && kind != ETX_POLICY_SAMPLE && kind != ETX_POLICY_ENTROPIX &&
        kind != ETX_POLICY_LEARNED && kind != ETX_POLICY_DSLIDER)
        return etx_error(ETX_ERR_INVALID_ARG, "policy: unknown kind %d", (int)kind);
    if (kind == ETX_POLICY_LEARNED && !etx_learned_get(pol->learned))
        return etx_error(ETX_ERR_INVALID_ARG, "policy: a learned policy needs a network (a policy file's \"learned\" "
                                              "object, or etx_learned_register); id %u is not registered",
                         (unsigned)pol->learned);
    if (kind != ETX_POLICY_LEARNED && pol->learned != 0)
        return etx_error(ETX_ERR_INVALID_ARG, "policy: a %s policy has no network (learned id %u)",
                         policy_kind_name(kind), (unsigned)pol->learned);
    for (int i = 0; i < policy_n_params; i++) {
        const PolicyParam* p = &policy_params[i];
        // greedy: the top-level sampling fields are checked as for sample (unused, but a
        // policy switched to sample later must be valid)
        etx_policy_kind k = kind == ETX_POLICY_GREEDY ? ETX_POLICY_SAMPLE : kind;
        if (!policy_param_applies(p, k) || p->type == PARAM_U64) continue;
        const char* base = (const char*)pol + offset_of(p, k);
        const double v = p->type == PARAM_INT ? (double)*(const int*)base : (double)*(const float*)base;
        if (!in_range(p, k, v)) return range_error(p, k, v);
    }
    if (kind == ETX_POLICY_DSLIDER && pol->dslider.outlier_topk > pol->dslider.support)
        return etx_error(ETX_ERR_INVALID_ARG,
                         "policy: dslider's outlier_topk (%d) must not exceed its support (%d): the inlier path's "
                         "tokens are part of the support",
                         pol->dslider.outlier_topk, pol->dslider.support);
    return etx_ok();
}

etx_status etx_policy_set(etx_policy* pol, const char* name, double value) {
    const PolicyParam* p = policy_param_find(name);
    if (!p) {
        const char* s = policy_param_suggest(name);
        if (s) return etx_error(ETX_ERR_INVALID_ARG, "policy: unknown parameter '%s' (did you mean '%s'?)", name, s);
        return etx_error(ETX_ERR_INVALID_ARG, "policy: unknown parameter '%s'", name);
    }
    const etx_policy_kind kind = pol->kind;
    if (!policy_param_applies(p, kind)) {
        if (p->flags & PARAM_DSLIDER)
            return etx_error(ETX_ERR_INVALID_ARG, "policy: %s is a dslider parameter; the policy is %s", name,
                             policy_kind_name(kind));
        if (kind == ETX_POLICY_DSLIDER)
            return etx_error(ETX_ERR_INVALID_ARG, "policy: %s does not apply to the dslider policy (its parameters "
                                                  "and seed do)", name);
        if (p->off_sample < 0)
            return etx_error(ETX_ERR_INVALID_ARG, "policy: %s is an entropix parameter (a learned policy reads it too); the policy is %s", name,
                             policy_kind_name(kind));
        if (p->off_entropix < 0)
            return etx_error(ETX_ERR_INVALID_ARG, "policy: %s is a sample parameter; the policy is %s", name,
                             policy_kind_name(kind));
        return etx_error(ETX_ERR_INVALID_ARG, "policy: %s does not apply to the %s policy (only seed does)", name,
                         policy_kind_name(kind));
    }
    if (!isfinite(value)) return range_error(p, kind, value);
    if (p->type != PARAM_FLOAT && value != floor(value))
        return etx_error(ETX_ERR_INVALID_ARG, "policy: %s must be an integer (got %.9g)", name, value);
    if (!in_range(p, kind, value)) return range_error(p, kind, value);
    // a value in range as a double can leave it as a float (1e-50 -> 0)
    if (p->type == PARAM_FLOAT && !in_range(p, kind, (double)(float)value)) return range_error(p, kind, value);
    store(pol, p, offset_of(p, kind), value);
    return etx_ok();
}

const char* etx_branch_name(etx_branch b) {
    switch (b) {
    case ETX_BRANCH_GREEDY: return "greedy";
    case ETX_BRANCH_SAMPLE: return "sample";
    case ETX_BRANCH_ARGMAX: return "argmax";
    case ETX_BRANCH_PAUSE: return "pause";
    case ETX_BRANCH_HELV: return "helv";
    case ETX_BRANCH_LEHV: return "lehv";
    case ETX_BRANCH_HEHV: return "hehv";
    case ETX_BRANCH_ADAPTIVE: return "adaptive";
    case ETX_BRANCH_INLIER: return "inlier";
    case ETX_BRANCH_DIRICHLET: return "dirichlet";
    case ETX_BRANCH_OUTLIER: return "outlier";
    case ETX_BRANCH_COUNT: break;
    }
    return "unknown";
}
