/*
 * policy.h — the table of named policy parameters (internal).
 *
 * Every parameter a policy has is one row here: its name, its type, where it lives in
 * etx_policy for each kind, its allowed range, its defaults and a line of help. That one
 * table drives etx_policy_default, etx_policy_validate, etx_policy_set, the JSON policy
 * file reader (policy_file.c), the `etx generate` flags and their --help, so a parameter
 * is never listed twice.
 */
#ifndef ETX_POLICY_H
#define ETX_POLICY_H

#include <stddef.h>

#include "etx/etx.h"

typedef enum { PARAM_INT, PARAM_FLOAT, PARAM_U64 } ParamType;

// flags of a row
#define PARAM_LO_OPEN 1     // value > lo (else >= lo)
#define PARAM_HI_OPEN 2     // value < hi (else <= hi)
#define PARAM_ZERO_OFF 4    // the sample kind also accepts 0 (= filter off)
#define PARAM_DSLIDER 16    // a dslider parameter: off_entropix / def_entropix are dslider's
                            // (etx_dslider_params), and it applies to no other kind

typedef struct {
    const char* name;    // "low_ent_thresh"; CLI flag: "--low-ent-thresh"
    ParamType type;      // int, float or u64 field
    int off_sample;      // byte offset in etx_policy for greedy/sample, -1: not theirs
    int off_entropix;    // byte offset in etx_policy for entropix (dslider with PARAM_DSLIDER),
                         // -1: not entropix's
    double lo, hi;       // range (floats: hi = FLT_MAX means "any finite value")
    int flags;           // PARAM_*
    double def_sample;   // default for sample (and greedy, where it applies)
    double def_entropix; // default for entropix (the reference's value)
    const char* help;    // one line: what it means
} PolicyParam;

extern const PolicyParam policy_params[];
extern const int policy_n_params;

// The row of a name, or NULL.
const PolicyParam* policy_param_find(const char* name);
// The known name closest to an unknown one (edit distance), or NULL when nothing is close.
const char* policy_param_suggest(const char* name);
// 1 when the row applies to that kind (seed applies to all).
int policy_param_applies(const PolicyParam* p, etx_policy_kind kind);
// "[0, 1)", "> 0", "1..64", "any finite number": the allowed range, for messages and help.
void policy_param_range(const PolicyParam* p, etx_policy_kind kind, char* buf, size_t cap);
// The current value of a row in a policy (as a double).
double policy_param_get(const etx_policy* pol, const PolicyParam* p);
// "greedy" | "sample" | "entropix" | "learned" | "dslider" -> kind; -1 for anything else.
int policy_kind_parse(const char* s);
const char* policy_kind_name(etx_policy_kind kind);

#endif // ETX_POLICY_H
