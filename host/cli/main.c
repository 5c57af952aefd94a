/*
 * main.c — the etx command line: dispatches to a subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE* f) {
    fprintf(f,
            "etx — LLM inference with entropix-style adaptive sampling\n\n"
            "usage: etx COMMAND [options]   (etx COMMAND --help for each)\n\n"
            "commands:\n"
            "  generate   generate text from a prompt or a chat message, streaming it\n"
            "  tokenize   text on stdin -> token ids (or ids -> text with --decode)\n"
            "  logits     write the logits of a prompt to a float32 file, print the top 5\n"
            "  eval       run a JSONL file of requests (GSM8K scoring, resume, mpirun data-parallel)\n"
            "  sweep      a grid of policy parameters x a JSONL file of requests -> results per combination\n"
            "  calibrate  the signals' quantiles on a JSONL file -> an entropix policy file with thresholds placed there\n"
            "  bench      prefill/decode speed per batch size and policy, against the hardware's floor\n"
            "  serve      an OpenAI-compatible HTTP server (completions, chat, streaming) over one batched engine\n");
}

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char* c = argv[1];
    if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0 || strcmp(c, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(c, "--version") == 0) {
        printf("etx 0.1.0\n");
        return 0;
    }
    if (strcmp(c, "generate") == 0) return cmd_generate(argc - 1, argv + 1);
    if (strcmp(c, "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(c, "logits") == 0) return cmd_logits(argc - 1, argv + 1);
    if (strcmp(c, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(c, "sweep") == 0) return cmd_sweep(argc - 1, argv + 1);
    if (strcmp(c, "calibrate") == 0) return cmd_calibrate(argc - 1, argv + 1);
    if (strcmp(c, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(c, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "etx: unknown command '%s'\n\n", c);
    usage(stderr);
    return 2;
}
