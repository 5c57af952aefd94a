/*
 * generate.c — `etx generate`: one prompt (plain text or a chat message rendered with
 * the model's template) through the engine, the continuation streamed to stdout as it
 * is produced, never half a UTF-8 character at a time.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tokenizer.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cmd_generate(int argc, char** argv) {
    const char *model = NULL, *prompt = NULL, *chat = NULL, *system = NULL, *policy = NULL, *device = NULL;
    int n = 256, top_k = 0, threads = 0, ctx = 0, bos = 0, no_bos = 0, ignore_eos = 0, stats = 0;
    float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
    uint64_t seed = 0;
    CliOpt opts[] = {
        {"--model", "-m", OPT_STRING, &model, "PATH", "model directory or .gguf (default: $ETX_MODEL, else SmolLM2-135M-Instruct)", 0},
        {"--prompt", "-p", OPT_STRING, &prompt, "TEXT", "plain-text prompt", 0},
        {"--chat", NULL, OPT_STRING, &chat, "TEXT", "a user message, rendered with the model's chat template", 0},
        {"--system", NULL, OPT_STRING, &system, "TEXT", "system message for --chat", 0},
        {"--max-tokens", "-n", OPT_INT, &n, "N", "tokens to generate (default 256)", 0},
        {"--policy", NULL, OPT_STRING, &policy, "NAME", "greedy | sample (default greedy; sample when a sampling option is given)", 0},
        {"--temperature", NULL, OPT_FLOAT, &temperature, "T", "sampling temperature (default 1)", 0},
        {"--top-k", NULL, OPT_INT, &top_k, "K", "keep the K most likely tokens (0 = off)", 0},
        {"--top-p", NULL, OPT_FLOAT, &top_p, "P", "keep the smallest set of most likely tokens with mass >= P (1 = off)", 0},
        {"--min-p", NULL, OPT_FLOAT, &min_p, "M", "drop tokens below M times the top probability (0 = off)", 0},
        {"--seed", NULL, OPT_U64, &seed, "S", "random seed (default 0)", 0},
        {"--bos", NULL, OPT_FLAG, &bos, NULL, "start a -p prompt with BOS (default: as the model's tokenizer does)", 0},
        {"--no-bos", NULL, OPT_FLAG, &no_bos, NULL, "never prepend BOS to a -p prompt", 0},
        {"--ignore-eos", NULL, OPT_FLAG, &ignore_eos, NULL, "keep generating past end-of-sequence tokens", 0},
        {"--threads", "-t", OPT_INT, &threads, "N", "CPU threads (default: all cores)", 0},
        {"--ctx", NULL, OPT_INT, &ctx, "N", "context length, prompt + generated (default min(model's, 4096))", 0},
        {"--device", NULL, OPT_STRING, &device, "DEV", "auto | cpu | cuda (default auto)", 0},
        {"--stats", NULL, OPT_FLAG, &stats, NULL, "print token counts and speeds to stderr at the end", 0},
    };
    CliCommand cmd = {"generate", "[-m MODEL] (-p TEXT | --chat TEXT) [options]",
                      "Generates a continuation and streams it to stdout.", opts, (int)(sizeof opts / sizeof opts[0])};
    int pr = cli_parse(&cmd, argc, argv);
    if (pr) return pr > 0 ? 0 : 2;
    if ((prompt != NULL) == (chat != NULL)) {
        fprintf(stderr, "etx generate: give exactly one of -p TEXT or --chat TEXT\n");
        return 2;
    }
    if (system && !chat) {
        fprintf(stderr, "etx generate: --system only applies with --chat\n");
        return 2;
    }
    if (bos && no_bos) {
        fprintf(stderr, "etx generate: --bos and --no-bos contradict each other\n");
        return 2;
    }
    etx_policy pol;
    const int sampling_opt = cli_find(&cmd, "--temperature")->seen || cli_find(&cmd, "--top-k")->seen ||
                             cli_find(&cmd, "--top-p")->seen || cli_find(&cmd, "--min-p")->seen;
    if (!policy) policy = sampling_opt ? "sample" : "greedy";
    if (strcmp(policy, "greedy") == 0) {
        if (sampling_opt) {
            fprintf(stderr, "etx generate: --temperature/--top-k/--top-p/--min-p apply to --policy sample, not greedy\n");
            return 2;
        }
        pol = etx_policy_default(ETX_POLICY_GREEDY);
    } else if (strcmp(policy, "sample") == 0) {
        pol = etx_policy_default(ETX_POLICY_SAMPLE);
        pol.temperature = temperature;
        pol.top_k = top_k;
        pol.top_p = top_p;
        pol.min_p = min_p;
    } else {
        fprintf(stderr, "etx generate: unknown policy '%s' (expected greedy or sample)\n", policy);
        return 2;
    }
    pol.seed = seed;
    etx_status st = etx_policy_validate(&pol);
    if (st.code != ETX_OK) return cli_error("generate", st), 2;
    if (n < 1) {
        fprintf(stderr, "etx generate: --max-tokens must be >= 1 (got %d)\n", n);
        return 2;
    }
    etx_engine_options eo = etx_engine_options_default();
    if (cli_parse_device(device, &eo.device) != 0) return 2;
    eo.n_threads = threads;
    eo.max_seq_len = ctx;

    etx_model* m = cli_load_model(cli_model_path(model));
    if (!m) return 1;
    etx_model_info info;
    etx_model_get_info(m, &info);
    int rc = 1;
    etx_engine* e = NULL;
    int32_t* ids = NULL;
    int n_ids = 0;
    char* text = NULL;
    if (chat) {
        etx_chat_message msgs[2];
        int nm = 0;
        if (system) msgs[nm++] = (etx_chat_message){"system", system};
        msgs[nm++] = (etx_chat_message){"user", chat};
        st = etx_chat_format(m, msgs, nm, 1, &text);
        if (st.code == ETX_OK) st = etx_tokenize(m, text, strlen(text), 0, &ids, &n_ids);
    } else {
        int add_bos = bos || (info.add_bos && !no_bos);
        st = etx_tokenize(m, prompt, strlen(prompt), add_bos, &ids, &n_ids);
    }
    if (st.code != ETX_OK) goto done;
    if (n_ids == 0) {
        st = (etx_status){ETX_ERR_INVALID_ARG, "the prompt is empty after tokenization"};
        goto done;
    }
    st = etx_engine_create(m, &eo, &e);
    if (st.code != ETX_OK) goto done;
    etx_request req = {.prompt = ids, .n_prompt = n_ids, .policy = pol, .max_tokens = n, .ignore_eos = ignore_eos};
    int id;
    st = etx_engine_submit(e, &req, &id);
    if (st.code != ETX_OK) goto done;

    Utf8Stream us = {{0}, 0};
    int printed = 0, active = 1;
    double t0 = now_s(), t_first = 0.0;
    etx_request_state rs;
    while (active) {
        st = etx_engine_step(e, &active);
        if (st.code != ETX_OK) goto done;
        etx_engine_request_state(e, id, &rs);
        if (printed == 0 && rs.n_tokens > 0) t_first = now_s();
        int upto = rs.n_tokens;
        // a final stop token (EOS, end of turn) is not part of the text
        if (rs.phase == ETX_REQ_DONE_STOP) upto--;
        if (upto > printed) cli_write_tokens(m, rs.tokens + printed, upto - printed, &us, stdout);
        printed = upto > printed ? upto : printed;
    }
    char tail[UTF8_STREAM_OUT_MAX(0)];
    size_t nt = utf8_stream_flush(&us, tail);
    fwrite(tail, 1, nt, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (rs.phase == ETX_REQ_FAILED) {
        st = (etx_status){ETX_ERR_STATE, ""};
        snprintf(st.message, sizeof st.message, "generation failed: %s", rs.error);
        goto done;
    }
    if (stats) {
        double t1 = now_s();
        double prefill = t_first - t0, decode = t1 - t_first;
        fprintf(stderr, "etx: prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens, %d after the first in "
                        "%.3f s (%.2f tok/s); stopped by %s\n",
                n_ids, prefill, n_ids / (prefill > 0 ? prefill : 1e-9), rs.n_tokens, rs.n_tokens - 1, decode,
                (rs.n_tokens - 1) / (decode > 0 ? decode : 1e-9),
                rs.phase == ETX_REQ_DONE_STOP ? "a stop token" : "the length limit");
    }
    rc = 0;
done:
    if (st.code != ETX_OK) cli_error("generate", st);
    free(text);
    free(ids);
    etx_engine_free(e);
    etx_model_free(m);
    return rc;
}
