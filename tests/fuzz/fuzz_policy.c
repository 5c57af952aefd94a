/*
 * fuzz_policy.c — libFuzzer target: JSON policy files (etx_policy_load_json in
 * host/policy/policy_file.c over the strict reader host/policy/json_strict.c and the
 * parameter table of host/policy/policy.c).
 *
 * The input is a whole policy file, loaded over a starting policy of the kind
 * size % 3 (greedy, sample, entropix: the kind a file without "policy" keeps).
 * Invariants: a file that loads gives a policy etx_policy_validate accepts; a file that
 * does not leaves the caller's policy untouched. Seeds: the files of tests/fixtures/policy and
 * the policy files of the docs (tests/scripts/gen_fuzz_corpus.py).
 */
#include <stdint.h>
#include <string.h>

#include "util.h"
#include "etx/etx.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const etx_policy_kind kinds[] = {ETX_POLICY_GREEDY, ETX_POLICY_SAMPLE, ETX_POLICY_ENTROPIX};
    etx_policy start = etx_policy_default(kinds[size % 3]);
    etx_policy pol = start;
    etx_status st = etx_policy_load_json(fuzz_file(data, size), &pol);
    if (st.code == ETX_OK)
        FUZZ_CHECK(etx_policy_validate(&pol).code == ETX_OK);
    else
        FUZZ_CHECK(memcmp(&pol, &start, sizeof pol) == 0 && st.message[0] != '\0');
    return 0;
}
