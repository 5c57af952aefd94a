/*
 * fuzz_serve_request.c — libFuzzer target: a request body of `etx serve`
 * (serve_parse_request in host/serve/serve_req.c: OpenAI completions and chat fields,
 * etx's policy fields, every refusal naming its field).
 *
 * Input: one byte choosing the endpoint (bit 0: chat) and whether the server has a
 * policy directory (bit 1), then the body, against tests/fixtures/loader/tiny.gguf with
 * a 64-token context, --max-tokens 32 and --max-n 8. Invariants: a refusal is 400 or
 * 404 with a message, and its error JSON parses; an accepted job has 1..8 choices, its
 * prompts 1..64 - max_tokens tokens inside the vocabulary, max_tokens 0..32 (0 only with
 * echo), logprobs -1..ETX_TRACE_TOP, at most SERVE_MAX_STOPS non-empty stop strings, and a policy that
 * validates. Seeds: the request examples of docs/serve.md (tests/scripts/gen_fuzz_corpus.py).
 */
#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "serve/serve.h"
#include "util.h"

#define CTX 64

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    fixture_tiny_model();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    Server s;
    memset(&s, 0, sizeof s);
    s.m = fixture_tiny_model();
    etx_model_get_info(s.m, &s.info);
    s.cfg = (ServeConfig){.host = "127.0.0.1", .model_name = "tiny", .max_batch = 4, .max_queue = 4,
                          .max_body = 1 << 20, .max_tokens = 32, .max_n = 8, .ctx = CTX,
                          .policy_dir = (data[0] & 2) ? "/nonexistent-etx-policy-dir" : NULL,
                          .policy = etx_policy_default(ETX_POLICY_SAMPLE), .drain_s = 1};
    const ServeKind kind = (data[0] & 1) ? SERVE_CHAT : SERVE_COMPLETION;
    char msg[600], param[160];
    ServeJob* j = NULL;
    const int rc = serve_parse_request(&s, kind, (const char*)data + 1, size - 1, &j, msg, sizeof msg, param, sizeof param);
    if (rc) {
        FUZZ_CHECK((rc == 400 || rc == 404) && j == NULL && msg[0]);
        char* e = serve_error_json(rc, msg, param);
        cJSON* root = cJSON_Parse(e);
        FUZZ_CHECK(root != NULL);
        cJSON_Delete(root);
        free(e);
        return 0;
    }
    FUZZ_CHECK(j && j->n_choices >= 1 && j->n_choices <= 8 && j->n_choices == j->n_prompts * j->n);
    FUZZ_CHECK(j->max_tokens >= 0 && j->max_tokens <= 32 && (j->max_tokens > 0 || j->echo));
    FUZZ_CHECK(j->logprobs >= -1 && j->logprobs <= ETX_TRACE_TOP && j->n_stops <= SERVE_MAX_STOPS);
    for (int k = 0; k < j->n_stops; k++) FUZZ_CHECK(j->stops[k][0] != '\0');
    for (int p = 0; p < j->n_prompts; p++) {
        FUZZ_CHECK(j->n_prompt[p] >= 1 && j->n_prompt[p] + j->max_tokens <= CTX);
        for (int i = 0; i < j->n_prompt[p]; i++) FUZZ_CHECK(j->prompts[p][i] >= 0 && j->prompts[p][i] < s.info.vocab_size);
    }
    FUZZ_CHECK(etx_policy_validate(&j->policy).code == ETX_OK);
    serve_job_free(j);
    return 0;
}
