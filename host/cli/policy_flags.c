/*
 * policy_flags.c — the policy options shared by the commands that run requests
 * (generate, eval): --policy, --policy-file and one flag per row of the parameter table
 * of host/policy/policy.c (--top-k, --low-ent-thresh, ...), with help generated from the table,
 * and the resolution of all of them into one etx_policy (flags override the file).
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "policy/policy.h"

// "top_k" -> "--top-k"
static void flag_name(const char* name, char* out, size_t cap) {
    size_t j = 0;
    out[j++] = '-';
    out[j++] = '-';
    for (size_t i = 0; name[i] && j + 1 < cap; i++) out[j++] = name[i] == '_' ? '-' : name[i];
    out[j] = '\0';
}

static void param_help(const PolicyParam* p, char* out, size_t cap) {
    char range[64];
    if (p->off_sample >= 0 && p->off_entropix >= 0 && p->off_sample != p->off_entropix) {
        char r_s[64];
        policy_param_range(p, ETX_POLICY_SAMPLE, r_s, sizeof r_s);
        policy_param_range(p, ETX_POLICY_ENTROPIX, range, sizeof range);
        if (strcmp(r_s, range) == 0)
            snprintf(out, cap, "%s (default: sample %g, entropix %g; %s)", p->help, p->def_sample, p->def_entropix,
                     range);
        else
            snprintf(out, cap, "%s (default: sample %g, entropix %g; sample %s, entropix %s)", p->help, p->def_sample,
                     p->def_entropix, r_s, range);
    } else if (p->type == PARAM_U64) {
        snprintf(out, cap, "%s (default %g)", p->help, p->def_sample);
    } else {
        policy_param_range(p, ETX_POLICY_ENTROPIX, range, sizeof range);
        snprintf(out, cap, "%s (default %g; %s)", p->help, p->def_entropix, range);
    }
}

// "policy: top_p must be ..." -> "--top-p must be ..." (the name as the user typed it)
static void policy_flag_error(const char* command, const char* flag, const PolicyParam* p, etx_status st) {
    const char* msg = st.message;
    if (strncmp(msg, "policy: ", 8) == 0) msg += 8;
    size_t n = strlen(p->name);
    if (strncmp(msg, p->name, n) == 0 && msg[n] == ' ') fprintf(stderr, "etx %s: %s%s\n", command, flag, msg + n);
    else fprintf(stderr, "etx %s: %s: %s\n", command, flag, msg);
}

int cli_policy_opts_build(CliPolicyOpts* po, const CliOpt* fixed, int n_fixed) {
    memset(po, 0, sizeof *po);
    const int cap = n_fixed + 2 + policy_n_params;
    po->pf = calloc((size_t)policy_n_params, sizeof *po->pf);
    po->opts = calloc((size_t)cap, sizeof *po->opts);
    po->row_of = calloc((size_t)cap, sizeof *po->row_of);
    if (!po->pf || !po->opts || !po->row_of) {
        cli_policy_opts_free(po);
        fprintf(stderr, "etx: out of memory\n");
        return -1;
    }
    int no = 0;
    for (int i = 0; i < n_fixed; i++) po->row_of[no] = -1, po->opts[no++] = fixed[i];
    // the sampling parameters first, then entropix's own
    for (int pass = 0; pass < 2; pass++) {
        po->row_of[no] = -1;
        po->opts[no++] = (CliOpt){NULL, NULL, OPT_FLAG, NULL, NULL,
                                  pass == 0 ? "sampling (sample and entropix; entropix: the base values its branches scale):"
                                            : "entropix parameters (docs/entropix.md §3):",
                                  0};
        for (int r = 0; r < policy_n_params; r++) {
            const PolicyParam* p = &policy_params[r];
            const int sampling = p->off_sample >= 0;
            if (sampling != (pass == 0)) continue;
            CliParamFlag* f = &po->pf[r];
            flag_name(p->name, f->flag, sizeof f->flag);
            param_help(p, f->help, sizeof f->help);
            CliOpt o = {f->flag, NULL, OPT_FLOAT, &f->f, "X", f->help, 0};
            if (p->type == PARAM_INT) o.type = OPT_INT, o.dest = &f->i, o.metavar = "N";
            if (p->type == PARAM_U64) o.type = OPT_U64, o.dest = &f->u, o.metavar = "N";
            if (strcmp(p->name, "pause_token") == 0) o.metavar = "ID";
            po->row_of[no] = r;
            po->opts[no++] = o;
        }
    }
    po->n_opts = no;
    return 0;
}

void cli_policy_opts_free(CliPolicyOpts* po) {
    free(po->pf);
    free(po->opts);
    free(po->row_of);
    memset(po, 0, sizeof *po);
}

int cli_policy_resolve(const char* command, const CliPolicyOpts* po, const char* policy, const char* policy_file,
                       etx_policy* out) {
    // which kind: --policy, else the file's, else guessed from the flags given
    int sampling_opt = 0, entropix_opt = 0, dslider_opt = 0;
    for (int i = 0; i < po->n_opts; i++) {
        if (po->row_of[i] < 0 || !po->opts[i].seen) continue;
        const PolicyParam* p = &policy_params[po->row_of[i]];
        if (p->type == PARAM_U64) continue; // the seed goes with any kind
        if (p->flags & PARAM_DSLIDER) dslider_opt = 1;
        else if (p->off_sample >= 0) sampling_opt = 1;
        else entropix_opt = 1;
    }
    int kind = dslider_opt    ? ETX_POLICY_DSLIDER
               : entropix_opt ? ETX_POLICY_ENTROPIX
               : sampling_opt ? ETX_POLICY_SAMPLE
                              : ETX_POLICY_GREEDY;
    if (policy) {
        kind = policy_kind_parse(policy);
        if (kind < 0) {
            fprintf(stderr, "etx %s: unknown policy '%s' (expected greedy, sample, entropix, learned or dslider)\n", command,
                    policy);
            return -1;
        }
        if (kind == ETX_POLICY_LEARNED && !policy_file) {
            fprintf(stderr, "etx %s: --policy learned needs --policy-file FILE, the file holding its network "
                            "(scripts/train_policy.py writes one)\n", command);
            return -1;
        }
    }
    if (kind == ETX_POLICY_GREEDY && sampling_opt) {
        fprintf(stderr, "etx %s: --temperature/--top-k/--top-p/--min-p apply to --policy sample or entropix, "
                        "not greedy\n", command);
        return -1;
    }
    etx_policy pol = etx_policy_default((etx_policy_kind)kind);
    etx_status st;
    if (policy_file) {
        st = etx_policy_load_json(policy_file, &pol);
        if (st.code != ETX_OK) {
            cli_error(command, st);
            return -1;
        }
        if (policy && (int)pol.kind != kind) {
            fprintf(stderr, "etx %s: --policy %s, but %s says \"policy\": \"%s\"\n", command, policy, policy_file,
                    policy_kind_name(pol.kind));
            return -1;
        }
    }
    // the flags, over the defaults or the file
    for (int i = 0; i < po->n_opts; i++) {
        if (po->row_of[i] < 0 || !po->opts[i].seen) continue;
        const PolicyParam* p = &policy_params[po->row_of[i]];
        const CliParamFlag* f = &po->pf[po->row_of[i]];
        if (p->type == PARAM_U64) { // the seed: every 64-bit value (a double holds only 2^53)
            pol.seed = f->u;
            continue;
        }
        st = etx_policy_set(&pol, p->name, p->type == PARAM_INT ? (double)f->i : (double)f->f);
        if (st.code != ETX_OK) {
            policy_flag_error(command, f->flag, p, st);
            return -1;
        }
    }
    st = etx_policy_validate(&pol);
    if (st.code != ETX_OK) {
        cli_error(command, st);
        return -1;
    }
    *out = pol;
    return 0;
}
