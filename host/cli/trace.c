/*
 * trace.c — `etx generate --trace FILE.jsonl` and `--stats`: one JSON object per line
 * per generated token (what the engine recorded in etx_trace_record, plus the token's
 * text), and the end-of-run summary (tokens per branch, mean of every metric).
 *
 * A record (keys in this order; floats that are not finite are written as null):
 *   {"request":0,"step":3,"token":2564,"text":" ...","branch":"adaptive",
 *    "entropy":1.23,"varentropy":2.5,"attn_entropy":3.1,"attn_varentropy":0.2,
 *    "agreement":0.4,"interaction":0.9,"temperature":0.9,"top_k":29,"top_p":0.9,
 *    "min_p":0.03,"logprob":-0.7,"confidence":3.9}
 * and, under a learned policy, "action" (its index in the policy's action set) and
 * "action_logprob" (its log-probability under the network).
 * "text" is the token's own bytes as a JSON string; bytes that are not valid UTF-8 on
 * their own (a token holding part of a character) become U+FFFD, and then "bytes" gives
 * the raw bytes in hex as well.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tokenizer/tokenizer.h"

static void write_json_string(FILE* f, const char* s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static void write_float(FILE* f, const char* key, float v) {
    if (isfinite(v)) fprintf(f, ",\"%s\":%.7g", key, (double)v);
    else fprintf(f, ",\"%s\":null", key);
}

void cli_trace_write(FILE* f, const etx_model* m, const etx_trace_record* r) {
    fprintf(f, "{\"request\":%d,\"step\":%d,\"token\":%d,\"text\":", r->request_id, r->step, (int)r->token);
    const char* bytes = NULL;
    size_t len = 0;
    if (etx_token_bytes(m, r->token, &bytes, &len).code != ETX_OK) bytes = "", len = 0;
    // lossy UTF-8 of this token alone: push in slices so the output buffer always fits
    Utf8Stream us = {{0}, 0};
    char buf[UTF8_STREAM_OUT_MAX(64)];
    int lossy = 0;
    size_t total = 0;
    char* text = malloc(UTF8_STREAM_OUT_MAX(len) + 1);
    if (!text) {
        fputs("null", f);
    } else {
        for (size_t off = 0; off < len; off += 64) {
            size_t chunk = len - off < 64 ? len - off : 64;
            size_t w = utf8_stream_push(&us, bytes + off, chunk, buf);
            memcpy(text + total, buf, w);
            total += w;
        }
        size_t w = utf8_stream_flush(&us, buf);
        memcpy(text + total, buf, w);
        total += w;
        lossy = total != len || memcmp(text, bytes, len) != 0;
        write_json_string(f, text, total);
        free(text);
    }
    if (lossy) {
        fputs(",\"bytes\":\"", f);
        for (size_t i = 0; i < len; i++) fprintf(f, "%02x", (unsigned char)bytes[i]);
        fputc('"', f);
    }
    fprintf(f, ",\"branch\":\"%s\"", etx_branch_name(r->branch));
    write_float(f, "entropy", r->entropy);
    write_float(f, "varentropy", r->varentropy);
    write_float(f, "attn_entropy", r->attn_entropy);
    write_float(f, "attn_varentropy", r->attn_varentropy);
    write_float(f, "agreement", r->agreement);
    write_float(f, "interaction", r->interaction);
    write_float(f, "temperature", r->temperature);
    fprintf(f, ",\"top_k\":%d", r->top_k);
    write_float(f, "top_p", r->top_p);
    write_float(f, "min_p", r->min_p);
    write_float(f, "logprob", r->logprob);
    write_float(f, "confidence", r->confidence);
    if (r->action >= 0) { // a learned policy's action, by index in its set
        fprintf(f, ",\"action\":%d", r->action);
        write_float(f, "action_logprob", r->action_logprob);
    }
    fputs("}\n", f);
}

void cli_trace_stats_add(CliTraceStats* s, const etx_trace_record* r) {
    if ((int)r->branch >= 0 && r->branch < ETX_BRANCH_COUNT) s->per_branch[r->branch]++;
    s->n++;
    const float v[CLI_TRACE_N_METRICS] = {r->entropy,     r->varentropy,  r->attn_entropy, r->attn_varentropy,
                                          r->agreement,   r->interaction, r->logprob};
    for (int i = 0; i < CLI_TRACE_N_METRICS; i++)
        if (isfinite(v[i])) s->sum[i] += v[i], s->count[i]++;
}

void cli_trace_stats_print(const CliTraceStats* s, FILE* f) {
    fprintf(f, "etx: branches over %d tokens:", s->n);
    for (int b = 0; b < ETX_BRANCH_COUNT; b++)
        if (s->per_branch[b])
            fprintf(f, " %s %d (%.1f%%)", etx_branch_name((etx_branch)b), s->per_branch[b],
                    100.0 * s->per_branch[b] / (s->n > 0 ? s->n : 1));
    fputc('\n', f);
    static const char* names[CLI_TRACE_N_METRICS] = {"entropy",   "varentropy",  "attn_entropy", "attn_varentropy",
                                                     "agreement", "interaction", "logprob"};
    fprintf(f, "etx: means:");
    for (int i = 0; i < CLI_TRACE_N_METRICS; i++) {
        if (s->count[i]) fprintf(f, " %s %.4g", names[i], s->sum[i] / s->count[i]);
        else fprintf(f, " %s n/a", names[i]);
    }
    fputc('\n', f);
}
