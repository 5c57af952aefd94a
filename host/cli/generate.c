/*
 * generate.c — `etx generate`: one prompt (plain text or a chat message rendered with
 * the model's template) through the engine, the continuation streamed to stdout as it
 * is produced, never half a UTF-8 character at a time.
 *
 * The policy (greedy, sample, entropix) comes from --policy, an optional --policy-file
 * (JSON, etx_policy_load_json) and one flag per policy parameter, generated from the
 * parameter table of host/policy/policy.c (--low-ent-thresh, --top-k, ...; policy_flags.c, shared
 * with eval), so --help lists every parameter with its default and range. Flags override
 * the file. --trace writes one JSON line per generated token (trace.c); --stats adds the
 * branch mix and metric means, speeds, and the host memory the weights take beside the
 * model file's size.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "common.h"
#include "policy/policy.h"
#include "tokenizer/tokenizer.h"

static etx_status etx_status_io_error(const char* path) {
    etx_status s = {ETX_ERR_IO, ""};
    snprintf(s.message, sizeof s.message, "writing the trace file %s failed", path);
    return s;
}

static int cmd_generate_run(const char* model, const char* prompt, const char* chat, const char* system,
                            const etx_policy* policy, const etx_engine_options* engine, const char* trace_path,
                            int n, int bos, int no_bos, int ignore_eos, int stats);

int cmd_generate(int argc, char** argv) {
    const char *model = NULL, *prompt = NULL, *chat = NULL, *system = NULL, *policy = NULL;
    const char *policy_file = NULL, *trace_path = NULL;
    int n = 256, bos = 0, no_bos = 0, ignore_eos = 0, stats = 0;
    CliEngineArgs ea = {0};
    CliOpt fixed[] = {
        {"--model", "-m", OPT_STRING, &model, "PATH", "model directory or .gguf (default: $ETX_MODEL, else SmolLM2-135M-Instruct)", 0},
        {"--prompt", "-p", OPT_STRING, &prompt, "TEXT", "plain-text prompt", 0},
        {"--chat", NULL, OPT_STRING, &chat, "TEXT", "a user message, rendered with the model's chat template", 0},
        {"--system", NULL, OPT_STRING, &system, "TEXT", "system message for --chat", 0},
        {"--max-tokens", "-n", OPT_INT, &n, "N", "tokens to generate (default 256)", 0},
        {"--policy", NULL, OPT_STRING, &policy, "NAME",
         "greedy | sample | entropix | learned (its --policy-file) | dslider (default greedy; sample when a sampling option is "
         "given, entropix when an entropix parameter is, dslider when a dslider parameter is)", 0},
        {"--policy-file", NULL, OPT_STRING, &policy_file, "FILE",
         "JSON policy {\"policy\": \"entropix\", \"<parameter>\": value, ...}; flags override it", 0},
        {"--bos", NULL, OPT_FLAG, &bos, NULL, "start a -p prompt with BOS (default: as the model's tokenizer does)", 0},
        {"--no-bos", NULL, OPT_FLAG, &no_bos, NULL, "never prepend BOS to a -p prompt", 0},
        {"--ignore-eos", NULL, OPT_FLAG, &ignore_eos, NULL, "keep generating past end-of-sequence tokens", 0},
        {"--threads", "-t", OPT_INT, &ea.threads, "N", "CPU threads, at most the CPUs (default: all cores)", 0},
        {"--ctx", NULL, OPT_INT, &ea.ctx, "N", "context length, prompt + generated (default min(model's, 4096))", 0},
        {"--device", NULL, OPT_STRING, &ea.device, "DEV", "auto | cpu | cuda (default auto)", 0},
        CLI_KV_OPTS(&ea.kv_blocks, &ea.kv_block_size, &ea.no_prefix_cache),
        CLI_GPU_OPTS(&ea.gpu, &ea.share_gpus, &ea.tp),
        {"--trace", NULL, OPT_STRING, &trace_path, "FILE",
         "write one JSON line per generated token (metrics, branch, parameters used) to FILE", 0},
        {"--stats", NULL, OPT_FLAG, &stats, NULL,
         "print token counts, speeds, tokens per branch and metric means to stderr at the end", 0},
    };
    const int n_fixed = (int)(sizeof fixed / sizeof fixed[0]);
    CliPolicyOpts po;
    if (cli_policy_opts_build(&po, fixed, n_fixed) != 0) return 1;
    CliCommand cmd = {"generate", "[-m MODEL] (-p TEXT | --chat TEXT) [options]",
                      "Generates a continuation and streams it to stdout.", po.opts, po.n_opts};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_CONTINUE) goto early;
    rc = 2;
    if ((prompt != NULL) == (chat != NULL)) {
        fprintf(stderr, "etx generate: give exactly one of -p TEXT or --chat TEXT\n");
        goto early;
    }
    if (system && !chat) {
        fprintf(stderr, "etx generate: --system only applies with --chat\n");
        goto early;
    }
    if (bos && no_bos) {
        fprintf(stderr, "etx generate: --bos and --no-bos contradict each other\n");
        goto early;
    }
    if (n < 1) {
        fprintf(stderr, "etx generate: --max-tokens must be >= 1 (got %d)\n", n);
        goto early;
    }
    etx_policy pol;
    if (cli_policy_resolve("generate", &po, policy, policy_file, &pol) != 0) goto early;
    etx_engine_options eo;
    if (cli_engine_options("generate", &ea, &eo) != 0) goto early;
    rc = cmd_generate_run(model, prompt, chat, system, &pol, &eo, trace_path, n, bos, no_bos, ignore_eos, stats);
early:
    cli_policy_opts_free(&po);
    return rc;
}

// The run: the model, the prompt and the checks against them (exit 2), then the engine.
static int cmd_generate_run(const char* model, const char* prompt, const char* chat, const char* system,
                            const etx_policy* policy, const etx_engine_options* engine, const char* trace_path,
                            int n, int bos, int no_bos, int ignore_eos, int stats) {
    etx_status st;
    const etx_policy pol = *policy;
    etx_engine_options eo = *engine;
    eo.trace = trace_path != NULL || stats;
    FILE* trace = NULL;
    if (trace_path) {
        trace = fopen(trace_path, "w");
        if (!trace) {
            fprintf(stderr, "etx generate: cannot open trace file %s: %s\n", trace_path, strerror(errno));
            return 1;
        }
    }

    int rc = 1;
    etx_model* m = NULL;
    if (cli_tp_check_model_path("generate", cli_model_path(model), &eo) != 0) rc = CLI_EXIT_REFUSED;
    else m = cli_load_model(cli_model_path(model), &rc);
    if (!m) {
        if (trace) fclose(trace);
        return rc;
    }
    etx_model_info info;
    etx_model_get_info(m, &info);
    rc = 1;
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
        rc = 2;
        goto done;
    }
    // refused before any work (exit 2): what only the model can tell
    if (cli_engine_check_model("generate", m, &eo) != 0 || cli_policy_check_model("generate", m, &pol) != 0 ||
        cli_prompt_check("generate", m, &eo, n_ids) != 0) {
        rc = 2;
        goto done;
    }
    st = etx_engine_create(m, &eo, &e);
    if (st.code != ETX_OK) goto done;
    etx_request req = {.prompt = ids, .n_prompt = n_ids, .policy = pol, .max_tokens = n, .ignore_eos = ignore_eos};
    int id;
    st = etx_engine_submit(e, &req, &id);
    if (st.code != ETX_OK) goto done;

    Utf8Stream us = {{0}, 0};
    int printed = 0, active = 1, traced = 0;
    CliTraceStats ts;
    memset(&ts, 0, sizeof ts);
    double t0 = etx_now_s(), t_first = 0.0, cpu_first = 0.0;
    etx_request_state rs;
    while (active) {
        st = etx_engine_step(e, &active);
        if (st.code != ETX_OK) goto done;
        etx_engine_request_state(e, id, &rs);
        if (printed == 0 && rs.n_tokens > 0) t_first = etx_now_s(), cpu_first = etx_cpu_s();
        int upto = rs.n_tokens;
        // a final stop token (EOS, end of turn) is not part of the text
        if (rs.phase == ETX_REQ_DONE_STOP) upto--;
        if (upto > printed) cli_write_tokens(m, rs.tokens + printed, upto - printed, &us, stdout);
        printed = upto > printed ? upto : printed;
        if (eo.trace) {
            const etx_trace_record* recs = NULL;
            int nrec = 0;
            st = etx_engine_trace(e, id, &recs, &nrec);
            if (st.code != ETX_OK) goto done;
            for (; traced < nrec; traced++) {
                if (trace) cli_trace_write(trace, m, &recs[traced]);
                cli_trace_stats_add(&ts, &recs[traced]);
            }
        }
    }
    if (trace) {
        int bad = ferror(trace);
        bad |= fclose(trace) != 0;
        trace = NULL;
        if (bad) {
            st = etx_status_io_error(trace_path);
            goto done;
        }
    }
    char tail[UTF8_STREAM_OUT_MAX(0)];
    size_t nt = utf8_stream_flush(&us, tail);
    fwrite(tail, 1, nt, stdout);
    fputc('\n', stdout);
    if (cli_finish_stdout("generate") != 0) goto done;
    if (rs.phase == ETX_REQ_FAILED) {
        st = (etx_status){ETX_ERR_STATE, ""};
        snprintf(st.message, sizeof st.message, "generation failed: %s", rs.error);
        goto done;
    }
    if (stats) {
        double t1 = etx_now_s(), cpu = etx_cpu_s() - cpu_first;
        double prefill = t_first - t0, decode = t1 - t_first;
        // the CPU time of the decode steps (all threads): on a shared machine a fairer
        // measure of the work per token than the wall clock
        fprintf(stderr, "etx: prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens, %d after the first in "
                        "%.3f s (%.2f tok/s, %.4f CPU s per token); stopped by %s\n",
                n_ids, prefill, n_ids / (prefill > 0 ? prefill : 1e-9), rs.n_tokens, rs.n_tokens - 1, decode,
                (rs.n_tokens - 1) / (decode > 0 ? decode : 1e-9), rs.n_tokens > 1 ? cpu / (rs.n_tokens - 1) : 0.0,
                rs.phase == ETX_REQ_DONE_STOP ? "a stop token" : "the length limit");
        cli_trace_stats_print(&ts, stderr);
        struct stat fst;
        const char* mpath = cli_model_path(model);
        long long file_bytes = stat(mpath, &fst) == 0 && S_ISREG(fst.st_mode) ? (long long)fst.st_size : -1;
        fprintf(stderr, "etx: model weights in host memory: %.1f MiB (%lld bytes, %.2f bytes per parameter)",
                info.weight_bytes / 1048576.0, info.weight_bytes,
                info.n_params ? (double)info.weight_bytes / (double)info.n_params : 0.0);
        if (file_bytes >= 0) fprintf(stderr, "; model file %.1f MiB", file_bytes / 1048576.0);
        fputc('\n', stderr);
        etx_engine_stats es;
        etx_engine_get_stats(e, &es);
        if (es.device == ETX_DEVICE_CUDA)
            fprintf(stderr, "etx: device %s: %lld bytes device->host in all, %.1f per generated token (the token id "
                            "and, as --stats traces, its %zu-byte trace record)\n",
                    es.device_name, es.d2h_bytes, rs.n_tokens ? (double)es.d2h_bytes / rs.n_tokens : 0.0,
                    sizeof(etx_trace_record));
        else
            fprintf(stderr, "etx: device cpu\n");
    }
    rc = 0;
done:
    if (st.code != ETX_OK) cli_error("generate", st);
    if (trace) fclose(trace);
    free(text);
    free(ids);
    etx_engine_free(e);
    etx_model_free(m);
    return rc;
}
