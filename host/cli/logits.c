/*
 * logits.c — `etx logits`: runs the forward pass over a prompt and writes the logits of
 * the last position (or of every position with --all) as little-endian float32, then
 * prints the argmax and the top 5 of the last position with their log-probabilities.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "cli.h"
#include "common.h"

// Prints "  id  logprob  'piece'" with the piece's bytes escaped for a terminal.
static void print_token(const etx_model* m, int32_t id, float lp, const char* label) {
    const char* b;
    size_t len;
    printf("%s%6d  %9.5f  '", label, id, (double)lp);
    if (etx_token_bytes(m, id, &b, &len).code == ETX_OK)
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)b[i];
            if (c == '\n') printf("\\n");
            else if (c == '\t') printf("\\t");
            else if (c == '\'') printf("\\'");
            else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
            else putchar(c);
        }
    printf("'\n");
}

int cmd_logits(int argc, char** argv) {
    const char *model = NULL, *prompt = NULL, *ids_text = NULL, *out_path = NULL, *device = NULL, *gpu = NULL;
    int share_gpus = 0, tp = 0;
    int all = 0, bos = 0, no_bos = 0, threads = 0;
    CliOpt opts[] = {
        {"--model", "-m", OPT_STRING, &model, "PATH", "model directory or .gguf (default: the default model)", 0},
        {"--prompt", "-p", OPT_STRING, &prompt, "TEXT", "text to run", 0},
        {"--ids", NULL, OPT_STRING, &ids_text, "\"1 2 3\"", "token ids to run", 0},
        {"--out", NULL, OPT_STRING, &out_path, "FILE", "where to write the logits (float32, little-endian)", 0},
        {"--all", NULL, OPT_FLAG, &all, NULL, "write every position's logits (positions x vocab), not just the last", 0},
        {"--bos", NULL, OPT_FLAG, &bos, NULL, "start a -p prompt with BOS (default: as the model's tokenizer does)", 0},
        {"--no-bos", NULL, OPT_FLAG, &no_bos, NULL, "never prepend BOS to a -p prompt", 0},
        {"--threads", "-t", OPT_INT, &threads, "N", "CPU threads (default: all cores)", 0},
        {"--device", NULL, OPT_STRING, &device, "DEV", "auto | cpu | cuda (default auto)", 0},
        CLI_GPU_OPTS(&gpu, &share_gpus, &tp),
    };
    CliCommand cmd = {"logits", "-m MODEL (-p TEXT | --ids \"1 2 3\") --out FILE [--all]",
                      "Writes the logits of the last position (every position with --all) as little-endian float32 "
                      "and prints the argmax and top 5 with their log-probabilities.",
                      opts, (int)(sizeof opts / sizeof opts[0])};
    const int pr = cli_parse(&cmd, argc, argv);
    if (pr != CLI_CONTINUE) return pr;
    if ((prompt != NULL) == (ids_text != NULL)) {
        fprintf(stderr, "etx logits: give exactly one of -p TEXT or --ids \"1 2 3\"\n");
        return 2;
    }
    if (!out_path) {
        fprintf(stderr, "etx logits: --out FILE is required\n");
        return 2;
    }
    if (bos && no_bos) {
        fprintf(stderr, "etx logits: --bos and --no-bos contradict each other\n");
        return 2;
    }
    if (ids_text && (bos || no_bos)) {
        fprintf(stderr, "etx logits: --bos/--no-bos apply to -p, not --ids\n");
        return 2;
    }
    etx_engine_options eo;
    const CliEngineArgs ea = {.device = device, .threads = threads, .gpu = gpu, .share_gpus = share_gpus, .tp = tp};
    if (cli_engine_options("logits", &ea, &eo) != 0) return 2;
    int32_t* ids = NULL;
    int n = 0;
    if (ids_text) {
        etx_status ps = cli_parse_ids(ids_text, strlen(ids_text), 0, &ids, &n);
        if (ps.code != ETX_OK) {
            fprintf(stderr, "etx logits: --ids: %s\n", ps.message);
            return 2;
        }
    }
    if (ids_text && n == 0) {
        fprintf(stderr, "etx logits: --ids is empty\n");
        free(ids);
        return 2;
    }
    int rc = 1;
    if (cli_tp_check_model_path("logits", cli_model_path(model), &eo) != 0) return free(ids), CLI_EXIT_REFUSED;
    etx_model* m = cli_load_model(cli_model_path(model), &rc);
    if (!m) return free(ids), rc;
    etx_model_info info;
    etx_model_get_info(m, &info);
    etx_engine* e = NULL;
    float* logits = NULL;
    FILE* f = NULL;
    rc = 1;
    etx_status st = etx_ok();
    if (prompt) {
        st = etx_tokenize(m, prompt, strlen(prompt), bos || (info.add_bos && !no_bos), &ids, &n);
        if (st.code == ETX_OK && n == 0) st = etx_error(ETX_ERR_INVALID_ARG, "the prompt is empty after tokenization");
        if (st.code != ETX_OK) {
            if (st.code == ETX_ERR_INVALID_ARG) rc = 2;
            goto done;
        }
    }
    // refused before any work (exit 2): ids outside the vocabulary, more tokens than the
    // model's context
    for (int i = 0; i < n && ids_text; i++)
        if (ids[i] >= info.vocab_size) {
            st = etx_error(ETX_ERR_INVALID_ARG, "--ids: token id #%d: %d is outside the vocabulary (0..%d)", i + 1,
                           ids[i], info.vocab_size - 1);
            rc = 2;
            goto done;
        }
    if (n > info.max_seq_len) {
        st = etx_error(ETX_ERR_INVALID_ARG, "%d tokens exceed the model's context of %d", n, info.max_seq_len);
        rc = 2;
        goto done;
    }
    eo.max_seq_len = n > 1 ? n : 2;
    st = etx_engine_create(m, &eo, &e);
    if (st.code != ETX_OK) goto done;
    const size_t V = (size_t)info.vocab_size;
    const size_t rows = all ? (size_t)n : 1;
    logits = malloc(rows * V * sizeof(float));
    if (!logits) {
        st = etx_error(ETX_ERR_NOMEM, "cannot allocate %zu x %zu logits", rows, V);
        goto done;
    }
    st = etx_engine_logits(e, ids, n, all, logits);
    if (st.code != ETX_OK) goto done;
    f = fopen(out_path, "wb");
    if (!f) {
        st = etx_error(ETX_ERR_IO, "cannot write %s: %s", out_path, strerror(errno));
        goto done;
    }
    // x86 and arm64 hosts are little-endian: the floats go out as they are in memory
    if (fwrite(logits, sizeof(float), rows * V, f) != rows * V || fclose(f) != 0) {
        f = NULL;
        st = etx_error(ETX_ERR_IO, "error writing %s", out_path);
        goto done;
    }
    f = NULL;
    const float* last = logits + (rows - 1) * V;
    // log-softmax normaliser of the last row
    float mx = -INFINITY;
    for (size_t i = 0; i < V; i++)
        if (last[i] > mx) mx = last[i];
    double sum = 0.0;
    for (size_t i = 0; i < V; i++) sum += exp((double)last[i] - mx);
    const float lse = mx + (float)log(sum);
    int32_t top[5] = {0, 0, 0, 0, 0};
    int ntop = V < 5 ? (int)V : 5;
    for (int k = 0; k < ntop; k++) {
        int32_t best = -1;
        for (size_t i = 0; i < V; i++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= top[j] == (int32_t)i;
            if (!taken && (best < 0 || last[i] > last[best])) best = (int32_t)i;
        }
        top[k] = best;
    }
    printf("wrote %zu x %zu float32 logits to %s (%d prompt tokens)\n", rows, V, out_path, n);
    print_token(m, top[0], last[top[0]] - lse, "argmax ");
    printf("top %d (id, log-prob, token):\n", ntop);
    for (int k = 0; k < ntop; k++) print_token(m, top[k], last[top[k]] - lse, "  ");
    rc = cli_finish_stdout("logits");
done:
    if (st.code != ETX_OK) cli_error("logits", st);
    if (f) fclose(f);
    free(logits);
    free(ids);
    etx_engine_free(e);
    etx_model_free(m);
    return rc;
}
