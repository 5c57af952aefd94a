/*
 * tokenize.c — `etx tokenize`: text on stdin -> token ids on stdout (space-separated),
 * or with --decode ids on stdin -> text. Reads only the tokenizer when it can (a
 * tokenizer.json or a model directory); a GGUF file is loaded whole. stdin is read whole,
 * at most 4 GiB (ETX_READ_FILE_MAX); with --decode every id is checked, to the last byte
 * of the input, before any text is written, and the text goes out with its lengths (a
 * token may decode to a NUL byte).
 */
#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "common.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

// Reads all of stdin into a NUL-terminated buffer (*len bytes, NULs included), at most
// ETX_READ_FILE_MAX bytes like etx_read_file: a regular file is measured first, a pipe or
// a device is cut off once it passes the bound. NULL after printing when stdin cannot be
// read or holds more.
static char* read_stdin(size_t* len) {
    struct stat st;
    if (fstat(0, &st) == 0 && S_ISREG(st.st_mode) && (unsigned long long)st.st_size > ETX_READ_FILE_MAX) {
        fprintf(stderr, "etx tokenize: stdin holds %llu bytes, more than the %zu etx reads\n",
                (unsigned long long)st.st_size, ETX_READ_FILE_MAX);
        return NULL;
    }
    // the buffer never grows past the bound plus one byte (the sign that there is more)
    // and its terminator
    const size_t limit = ETX_READ_FILE_MAX + 2;
    size_t cap = 1 << 16, n = 0;
    char* buf = xmalloc(cap);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) break;
        if (n > ETX_READ_FILE_MAX) {
            fprintf(stderr, "etx tokenize: stdin holds more than the %zu bytes etx reads\n", ETX_READ_FILE_MAX);
            free(buf);
            return NULL;
        }
        if (n + 1 >= cap) {
            cap = cap * 2 < limit ? cap * 2 : limit;
            buf = xrealloc(buf, cap);
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "etx tokenize: cannot read stdin: %s\n", strerror(errno));
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

// The BOS token named by a tokenizer_config.json ("bos_token": "<s>" or {"content": ...}), or -1.
static int bos_from_tokenizer_config(const char* path, const Tokenizer* t) {
    char* data = NULL;
    if (etx_read_file(path, &data, NULL).code != ETX_OK) return -1;
    int id = -1;
    cJSON* root = cJSON_Parse(data);
    const cJSON* b = root ? cJSON_GetObjectItemCaseSensitive(root, "bos_token") : NULL;
    if (cJSON_IsObject(b)) b = cJSON_GetObjectItemCaseSensitive(b, "content");
    if (cJSON_IsString(b)) id = tokenizer_find(t, b->valuestring);
    cJSON_Delete(root);
    free(data);
    return id;
}

// config.json's bos_token_id, or -1.
static int bos_from_config(const char* path) {
    char* data = NULL;
    if (etx_read_file(path, &data, NULL).code != ETX_OK) return -1;
    int id = -1;
    cJSON* root = cJSON_Parse(data);
    const cJSON* b = root ? cJSON_GetObjectItemCaseSensitive(root, "bos_token_id") : NULL;
    if (cJSON_IsNumber(b)) id = b->valueint;
    cJSON_Delete(root);
    free(data);
    return id;
}

static int has_suffix(const char* s, const char* suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

// Loads just the tokenizer from a tokenizer.json or a model directory; *bos = -1 if unknown.
static etx_status load_tokenizer_only(const char* path, Tokenizer** tok, int* bos) {
    char buf[PATH_MAX];
    struct stat st;
    *bos = -1;
    if (stat(path, &st) != 0) return etx_error(ETX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s/tokenizer.json", path);
        ETX_TRY(tokenizer_load_json(buf, tok));
        snprintf(buf, sizeof buf, "%s/config.json", path);
        *bos = bos_from_config(buf);
        if (*bos < 0) {
            snprintf(buf, sizeof buf, "%s/tokenizer_config.json", path);
            *bos = bos_from_tokenizer_config(buf, *tok);
        }
        return etx_ok();
    }
    ETX_TRY(tokenizer_load_json(path, tok));
    // a tokenizer_config.json beside the file names the BOS token
    snprintf(buf, sizeof buf, "%s", path);
    char* slash = strrchr(buf, '/');
    size_t dir_len = slash ? (size_t)(slash - buf + 1) : 0;
    snprintf(buf + dir_len, sizeof buf - dir_len, "tokenizer_config.json");
    *bos = bos_from_tokenizer_config(buf, *tok);
    return etx_ok();
}

int cmd_tokenize(int argc, char** argv) {
    const char* model = NULL;
    int bos = 0, decode = 0;
    CliOpt opts[] = {
        {"--model", "-m", OPT_STRING, &model, "PATH", "tokenizer.json, model directory or .gguf (default: the default model)", 0},
        {"--bos", NULL, OPT_FLAG, &bos, NULL, "prepend the BOS token", 0},
        {"--decode", NULL, OPT_FLAG, &decode, NULL, "read token ids, write text", 0},
    };
    CliCommand cmd = {"tokenize", "-m MODEL_OR_TOKENIZER_JSON [--bos] [--decode] < input",
                      "Reads text on stdin and prints its token ids separated by spaces (special tokens written in "
                      "the text count as such).\nWith --decode, reads ids and prints the text.",
                      opts, (int)(sizeof opts / sizeof opts[0])};
    const int pr = cli_parse(&cmd, argc, argv);
    if (pr != CLI_CONTINUE) return pr;
    if (bos && decode) {
        fprintf(stderr, "etx tokenize: --bos applies to encoding, not --decode\n");
        return 2;
    }
    const char* path = cli_model_path(model);
    Tokenizer* tok = NULL;
    etx_model* m = NULL;
    int bos_id = -1;
    etx_status st;
    int rc = 0;
    if (has_suffix(path, ".gguf")) {
        m = cli_load_model(path, &rc);
        if (!m) return rc;
        tok = m->tok;
        bos_id = m->bos_id;
    } else {
        // a tokenizer that is missing or malformed is a refused input; memory running out is not
        st = load_tokenizer_only(path, &tok, &bos_id);
        if (st.code != ETX_OK)
            return cli_error("tokenize", st), st.code == ETX_ERR_NOMEM ? CLI_EXIT_FAILED : CLI_EXIT_REFUSED;
    }
    size_t len = 0;
    char* input = read_stdin(&len);
    int32_t* ids = NULL;
    int n = 0;
    if (!input) {
        rc = CLI_EXIT_REFUSED;
        st = etx_ok();
    } else if (decode) {
        // every id is checked before any text is written
        st = cli_parse_ids(input, len, tokenizer_n_vocab(tok), &ids, &n);
        if (st.code == ETX_OK) {
            Utf8Stream us = {{0}, 0};
            char buf[UTF8_STREAM_OUT_MAX(256)];
            for (int i = 0; i < n; i++) {
                size_t bl;
                const char* b = tokenizer_token_bytes(tok, ids[i], &bl);
                for (size_t off = 0; off < bl; off += 256) {
                    size_t chunk = bl - off < 256 ? bl - off : 256;
                    fwrite(buf, 1, utf8_stream_push(&us, b + off, chunk, buf), stdout);
                }
            }
            fwrite(buf, 1, utf8_stream_flush(&us, buf), stdout);
        }
    } else {
        st = tokenizer_encode(tok, input, len, &ids, &n);
        if (st.code == ETX_OK && bos) {
            if (bos_id < 0) {
                st = etx_error(ETX_ERR_INVALID_ARG, "--bos: no BOS token is known for %s (give the model directory, "
                                                    "or put its tokenizer_config.json beside the file)", path);
            } else {
                printf("%d", bos_id);
                if (n) printf(" ");
            }
        }
        if (st.code == ETX_OK) {
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        }
    }
    if (st.code != ETX_OK) {
        cli_error("tokenize", st);
        // bad ids and an unknown BOS are refused requests; an encoder failure is not
        rc = st.code == ETX_ERR_INVALID_ARG ? CLI_EXIT_REFUSED : CLI_EXIT_FAILED;
    }
    if (rc == 0) rc = cli_finish_stdout("tokenize");
    free(ids);
    free(input);
    if (m) etx_model_free(m);
    else tokenizer_free(tok);
    return rc;
}
