/*
 * serve.c — `etx serve`: the command line of the OpenAI-compatible server
 * (host/serve/, docs/serve.md). Checks every option before the model is loaded (exit 2
 * on a bad one), loads the model, creates one engine (tracing on: log-probabilities and
 * the branch mix come from the trace records), and runs the server until SIGINT/SIGTERM.
 *
 * The policy options are `etx generate`'s (--policy, --policy-file, one flag per
 * parameter): they set the policy of a request that names none and gives no temperature,
 * OpenAI's default of sampling at temperature 1 when none is given.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "serve/serve.h"

// The model's name from its path: the file or directory name, without ".gguf".
static char* default_model_name(const char* path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    size_t len = n - b;
    if (len > 5 && strncmp(path + n - 5, ".gguf", 5) == 0) len -= 5;
    char* name = xmalloc(len + 1);
    memcpy(name, path + b, len);
    name[len] = '\0';
    return name;
}

// Until the server runs: a SIGINT or SIGTERM ends the process as its default action
// would (sigwait is a cancellation point, so cmd_serve can stop this thread).
static void* load_watch(void* arg) {
    const sigset_t* set = arg;
    int sig = 0;
    if (sigwait(set, &sig) != 0) return NULL;
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
    return NULL;
}

int cmd_serve(int argc, char** argv) {
    const char *model = NULL, *name = NULL, *host = "127.0.0.1", *api_key = NULL, *policy = NULL;
    const char *policy_file = NULL, *policy_dir = NULL;
    int port = 8000, max_queue = 256, max_body = 1 << 20, max_tokens = 0, max_n = 16, drain = 60;
    CliEngineArgs ea = {0};
    pthread_t watcher;
    int watching = 0; // load_watch runs
    CliOpt fixed[] = {
        {"--model", "-m", OPT_STRING, &model, "PATH", "model directory or .gguf (default: $ETX_MODEL, else SmolLM2-135M-Instruct)", 0},
        {"--model-name", NULL, OPT_STRING, &name, "NAME",
         "the model id clients name (default: the model's file name without .gguf)", 0},
        {"--host", NULL, OPT_STRING, &host, "ADDR", "address to listen on (default 127.0.0.1: this machine only)", 0},
        {"--port", NULL, OPT_INT, &port, "N", "port (default 8000; 0: any free port, printed when listening)", 0},
        {"--api-key", NULL, OPT_STRING, &api_key, "KEY",
         "require \"Authorization: Bearer KEY\" on /v1/ routes (default: $ETX_API_KEY, else none)", 0},
        {"--batch", "-b", OPT_INT, &ea.batch, "N", "requests (choices) advanced together per step (default 32)", 0},
        {"--max-queue", NULL, OPT_INT, &max_queue, "N",
         "choices waiting beyond the batch before requests get 429 (default 256)", 0},
        {"--max-body", NULL, OPT_INT, &max_body, "BYTES", "largest request body (default 1048576; larger: 413)", 0},
        {"--max-tokens", NULL, OPT_INT, &max_tokens, "N", "largest max_tokens a request may ask (default: the context)", 0},
        {"--max-n", NULL, OPT_INT, &max_n, "N", "most choices per request, n x prompts (default 16)", 0},
        {"--policy-dir", NULL, OPT_STRING, &policy_dir, "DIR",
         "directory of policy files a request may name with \"policy_file\": NAME -> DIR/NAME.json", 0},
        {"--drain-timeout", NULL, OPT_INT, &drain, "S",
         "seconds SIGINT/SIGTERM waits for requests in flight before cancelling them (default 60)", 0},
        {"--policy", NULL, OPT_STRING, &policy, "NAME",
         "greedy | sample | entropix: for requests that name no policy and give no temperature (default sample, "
         "temperature 1, as OpenAI's API)", 0},
        {"--policy-file", NULL, OPT_STRING, &policy_file, "FILE", "JSON policy file for those requests", 0},
        {"--threads", "-t", OPT_INT, &ea.threads, "N", "CPU threads, at most the CPUs (default: all cores)", 0},
        {"--ctx", NULL, OPT_INT, &ea.ctx, "N", "context length, prompt + generated (default min(model's, 4096))", 0},
        {"--device", NULL, OPT_STRING, &ea.device, "DEV", "auto | cpu | cuda (default auto)", 0},
        CLI_KV_OPTS(&ea.kv_blocks, &ea.kv_block_size, &ea.no_prefix_cache),
        CLI_GPU_OPTS(&ea.gpu, &ea.share_gpus, &ea.tp),
    };
    const int n_fixed = (int)(sizeof fixed / sizeof fixed[0]);
    CliPolicyOpts po;
    if (cli_policy_opts_build(&po, fixed, n_fixed) != 0) return 1;
    CliCommand cmd = {"serve", "[-m MODEL] [--host ADDR] [--port N] [options]",
                      "Serves the model over HTTP with OpenAI's API (/v1/completions, /v1/chat/completions, "
                      "/v1/models, /health) until SIGINT/SIGTERM.",
                      po.opts, po.n_opts};
    char* model_name = NULL;
    etx_model* m = NULL;
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_CONTINUE) goto done;
    rc = CLI_EXIT_REFUSED;
    if (port < 0 || port > 65535) {
        fprintf(stderr, "etx serve: --port must be 0..65535 (got %d)\n", port);
        goto done;
    }
    if (max_queue < 0 || max_body < 64 || max_tokens < 0 || max_n < 1 || max_n > ETX_MAX_SAMPLES || drain < 0) {
        fprintf(stderr, "etx serve: --max-queue >= 0, --max-body >= 64, --max-tokens >= 0, --max-n 1..%d and "
                        "--drain-timeout >= 0 (got %d, %d, %d, %d, %d)\n",
                ETX_MAX_SAMPLES, max_queue, max_body, max_tokens, max_n, drain);
        goto done;
    }
    if (!api_key) api_key = getenv("ETX_API_KEY");
    if (api_key && !api_key[0]) {
        fprintf(stderr, "etx serve: the API key is empty\n");
        goto done;
    }
    // no policy option at all: OpenAI's default, sampling at temperature 1
    int any_param = 0;
    for (int i = 0; i < po.n_opts; i++) any_param |= po.row_of[i] >= 0 && po.opts[i].seen;
    if (!policy && !policy_file && !any_param) policy = "sample";
    etx_policy pol;
    if (cli_policy_resolve("serve", &po, policy, policy_file, &pol) != 0) goto done;
    etx_engine_options eo;
    if (cli_engine_options("serve", &ea, &eo) != 0) goto done;
    eo.trace = 1;
    // SIGINT and SIGTERM are blocked from here on, so that every thread started from now
    // inherits the mask: OpenMP's workers start during the model load, and one of them
    // taking a SIGINT would kill the server instead of letting serve_run drain it (a CI
    // run saw exit status -2). Until the server runs, a watcher thread acts on them as the
    // default action would.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    watching = pthread_create(&watcher, NULL, load_watch, &sigs) == 0;
    const char* path = cli_model_path(model);
    rc = CLI_EXIT_REFUSED;
    if (cli_tp_check_model_path("serve", path, &eo) != 0) goto done;
    m = cli_load_model(path, &rc);
    if (!m) goto done;
    rc = CLI_EXIT_REFUSED;
    if (cli_engine_check_model("serve", m, &eo) != 0 || cli_policy_check_model("serve", m, &pol) != 0) goto done;
    Server s;
    memset(&s, 0, sizeof s);
    s.m = m;
    etx_model_get_info(m, &s.info);
    model_name = name ? xstrdup(name) : default_model_name(path);
    etx_status st = etx_engine_create(m, &eo, &s.e);
    if (st.code != ETX_OK) {
        cli_error("serve", st);
        rc = CLI_EXIT_FAILED;
        goto done;
    }
    etx_engine_stats es;
    etx_engine_get_stats(s.e, &es); // the batch the engine took (--batch, else its default)
    const int ctx = eo.max_seq_len ? eo.max_seq_len : etx_default_context(m);
    s.cfg = (ServeConfig){.host = host, .port = port, .api_key = api_key, .model_name = model_name,
                          .max_batch = es.max_batch, .max_queue = max_queue, .max_body = (size_t)max_body,
                          .max_tokens = max_tokens ? max_tokens : ctx, .max_n = max_n, .ctx = ctx,
                          .policy_dir = policy_dir, .policy = pol, .drain_s = drain};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.work, NULL);
    s.next_key = (uint64_t)(etx_now_s() * 1e6);
    if (watching) { // from here serve_run takes the signals (a pending one stays pending)
        pthread_cancel(watcher);
        pthread_join(watcher, NULL);
        watching = 0;
    }
    rc = serve_run(&s);
    pthread_cond_destroy(&s.work);
    pthread_mutex_destroy(&s.mu);
    etx_engine_free(s.e);
done:
    if (watching) {
        pthread_cancel(watcher);
        pthread_join(watcher, NULL);
    }
    etx_model_free(m);
    free(model_name);
    cli_policy_opts_free(&po);
    return rc;
}
