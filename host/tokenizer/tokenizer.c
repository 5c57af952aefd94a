/*
 * tokenizer.c — byte-level BPE encoding that matches Hugging Face `tokenizers` id for id:
 * the vocabulary and merge tables (hash maps), the added-token split, the four
 * pre-tokenizers etx knows (PCRE2 regexes), BPE merging by rank with a heap, the
 * tokenizer.json loader and the GGUF pre-tokenizer names.
 *
 * The pipeline for tokenizer_encode, as in tokenizers' Tokenizer::encode:
 *   1. the text must be valid UTF-8 (an error names the first bad byte offset);
 *   2. added tokens with normalized=false (all of them from GGUF) are cut out of the text,
 *      leftmost-longest match first; the spans between are normalized (NFC, when the
 *      tokenizer.json says so: Qwen2's), then the normalized=true added tokens are cut out
 *      of them (tokenizer.json only);
 *   3. each remaining span is pre-tokenized: Llama 3 regex, Qwen2 regex, GPT-2 regex, or
 *      (SmolLM) each \p{N} character alone and the GPT-2 regex on the text between;
 *   4. each piece's bytes become byte-level symbols (GPT-2's bytes_to_unicode) which are
 *      merged pair by pair, lowest merge rank first, leftmost first among equal ranks.
 *      With ignore_merges (Llama 3), a piece whose whole byte-level form is a vocabulary
 *      token is emitted as that token without merging, as HF's BPE model does.
 *
 * The regexes spell \s out as the Unicode White_Space set, which is what Oniguruma (the
 * engine behind HF tokenizers) matches; PCRE2 10.42's \s also matches U+180E, which
 * Unicode no longer counts as white space (HF keeps it with the punctuation).
 */
#include "tokenizer/tokenizer.h"

#include <string.h>

#include <cJSON.h>
#include <pcre2.h>

#include "common.h"
#include "tokenizer/unicode_nfc.h"

// ----------------------------------------------------------------------------
// the regexes

// Unicode White_Space, the set Oniguruma's \s matches
#define WS "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

// tokenizer.json spelling of the Llama 3 Split regex (what tokenizer_load_json recognises)
static const char LLAMA3_JSON_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// the same, with \s and \S spelled out for PCRE2
static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|"
    "[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

// Qwen2's Split regex (tokenizer.json of Qwen2 / Qwen2.5 / Qwen3, and llama.cpp's
// LLAMA_VOCAB_PRE_TYPE_QWEN2): Llama 3's, except that numbers split into single \p{N}
// characters instead of runs of up to three.
static const char QWEN2_JSON_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char QWEN2_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|"
    "[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static const char NUMERIC_REGEX[] = "\\p{N}";

// ----------------------------------------------------------------------------
// string -> id hash map (open addressing; keys are the token strings themselves)

typedef struct {
    int* slots;        // (cap) token id or -1
    uint32_t* hashes;  // (cap) hash of the slot's key
    uint32_t cap;      // power of two
} StrMap;

static uint32_t hash_bytes(const char* s, size_t n) {
    uint32_t h = 2166136261u; // FNV-1a
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

// ----------------------------------------------------------------------------
// (left id, right id) -> (rank, merged id) hash map

typedef struct {
    uint64_t key;  // left << 32 | right; UINT64_MAX = empty
    int32_t rank;
    int32_t merged;
} PairSlot;

typedef struct {
    PairSlot* slots; // (cap)
    uint32_t cap;    // power of two
} PairMap;

static uint32_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

// ----------------------------------------------------------------------------
// the tokenizer

// How a token is found in text. HF cuts added tokens out of the text in two passes: first
// those with normalized=false (on the raw text), then those with normalized=true (on the
// normalized text, which is the same here: etx supports no normalizer).
enum { TOK_NORMAL = 0, TOK_ADDED_RAW = 1, TOK_ADDED_NORM = 2 };
// Builders pass kind | TOK_SPECIAL_BIT for a special token.
#define TOK_SPECIAL_BIT 4

struct Tokenizer {
    int n_vocab;
    char** tokens;           // (n_vocab) token strings as stored (byte-level, or verbatim for added)
    size_t* token_lens;      // (n_vocab)
    char** bytes;            // (n_vocab) raw bytes each token stands for
    size_t* bytes_lens;      // (n_vocab)
    unsigned char* kind;     // (n_vocab) TOK_NORMAL, TOK_ADDED_RAW, TOK_ADDED_NORM
    unsigned char* special;  // (n_vocab) 1 = a special token (control: <|eot_id|>, ...)
    StrMap vocab;            // token string -> id
    PairMap merges;          // pair -> rank and merged id
    int byte_id[256];        // id of the one-byte symbol for each byte, -1 if the vocab lacks it
    char byte_sym[256][3];   // byte-level symbol (UTF-8) of each byte
    unsigned char byte_sym_len[256];
    int* added_by_byte[256]; // added token ids starting with each byte, longest first
    int n_added_by_byte[256];
    int ignore_merges;       // 1: a piece that is a whole vocab token is not merged
    int nfc;                 // 1: text between normalized=false added tokens is NFC-normalized
    PretokKind pretok;
    pcre2_code* re;          // the pre-tokenizer regex
    pcre2_code* numeric_re;  // \p{N}, for PRETOK_SMOLLM
};

static int strmap_get(const Tokenizer* t, const char* s, size_t n) {
    uint32_t h = hash_bytes(s, n);
    uint32_t mask = t->vocab.cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        int id = t->vocab.slots[i];
        if (id < 0) return -1;
        if (t->vocab.hashes[i] == h && t->token_lens[id] == n && memcmp(t->tokens[id], s, n) == 0) return id;
    }
}

// Inserts id under its string unless the string is already there (the first id wins).
static void strmap_put(Tokenizer* t, int id) {
    uint32_t h = hash_bytes(t->tokens[id], t->token_lens[id]);
    uint32_t mask = t->vocab.cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        int other = t->vocab.slots[i];
        if (other < 0) {
            t->vocab.slots[i] = id;
            t->vocab.hashes[i] = h;
            return;
        }
        if (t->vocab.hashes[i] == h && t->token_lens[other] == t->token_lens[id] &&
            memcmp(t->tokens[other], t->tokens[id], t->token_lens[id]) == 0)
            return;
    }
}

static const PairSlot* pairmap_get(const PairMap* m, int left, int right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = hash_pair(key) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == key) return &m->slots[i];
        if (m->slots[i].key == UINT64_MAX) return NULL;
    }
}

// A later merge of the same pair replaces an earlier one, as HF's merge map does.
static void pairmap_put(PairMap* m, int left, int right, int rank, int merged) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1;
    uint32_t i = hash_pair(key) & mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key) i = (i + 1) & mask;
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].merged = merged;
}

// ----------------------------------------------------------------------------
// byte-level symbols (GPT-2 bytes_to_unicode)

static int is_printable_byte(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

// Code point that stands for byte b: printable Latin-1 bytes stand for themselves, the
// others (0-32, 127-160, 173) for 256, 257, ... in byte order.
static uint32_t byte_to_codepoint(int b) {
    if (is_printable_byte(b)) return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++) n += !is_printable_byte(c);
    return 256u + (uint32_t)n;
}

// Inverse table: byte_of_cp[cp] for cp < BYTE_CP_END, -1 where cp stands for no byte.
#define BYTE_CP_END 324
static void byte_of_codepoint_table(int byte_of_cp[BYTE_CP_END]) {
    for (int i = 0; i < BYTE_CP_END; i++) byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) byte_of_cp[byte_to_codepoint(b)] = b;
}

// Decodes one UTF-8 code point at s[0..n); returns its length, or 0 when invalid.
static int utf8_decode(const unsigned char* s, size_t n, uint32_t* cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static int utf8_encode(uint32_t cp, char* out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Offset of the first byte that is not part of valid UTF-8, or n when all is valid.
static size_t utf8_first_invalid(const char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = utf8_decode((const unsigned char*)s + i, n - i, &cp);
        if (!k) return i;
        i += (size_t)k;
    }
    return n;
}

// Raw bytes of a byte-level token string, as HF's ByteLevel decoder computes them: each
// character maps back to its byte; if any character is not a byte-level symbol, the
// token's own UTF-8 bytes are used instead.
static char* byte_level_to_bytes(const char* s, size_t n, const int* byte_of_cp, size_t* out_len) {
    char* out = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_decode((const unsigned char*)s + i, n - i, &cp);
        int b = len && cp < BYTE_CP_END ? byte_of_cp[cp] : -1;
        if (b < 0) {
            memcpy(out, s, n);
            k = n;
            break;
        }
        out[k++] = (char)b;
        i += (size_t)len;
    }
    out[k] = '\0';
    *out_len = k;
    return out;
}

// ----------------------------------------------------------------------------
// building

typedef struct {
    const char* s;
    size_t n;
} Str;

void tokenizer_free(Tokenizer* t) {
    if (!t) return;
    for (int i = 0; i < t->n_vocab; i++) {
        free(t->tokens[i]);
        free(t->bytes[i]);
    }
    free(t->tokens);
    free(t->token_lens);
    free(t->bytes);
    free(t->bytes_lens);
    free(t->kind);
    free(t->special);
    free(t->vocab.slots);
    free(t->vocab.hashes);
    free(t->merges.slots);
    for (int b = 0; b < 256; b++) free(t->added_by_byte[b]);
    if (t->re) pcre2_code_free(t->re);
    if (t->numeric_re) pcre2_code_free(t->numeric_re);
    free(t);
}

static etx_status compile_regex(const char* pattern, pcre2_code** out) {
    int err;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return etx_error(ETX_ERR_UNSUPPORTED, "pre-tokenizer regex does not compile at offset %zu: %s",
                         (size_t)off, (const char*)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); // optional: falls back to the interpreter
    return etx_ok();
}

static etx_status setup_pretok(Tokenizer* t, PretokKind kind) {
    t->pretok = kind;
    switch (kind) {
    case PRETOK_LLAMA3: return compile_regex(LLAMA3_REGEX, &t->re);
    case PRETOK_QWEN2: return compile_regex(QWEN2_REGEX, &t->re);
    case PRETOK_GPT2: return compile_regex(GPT2_REGEX, &t->re);
    case PRETOK_SMOLLM:
        ETX_TRY(compile_regex(GPT2_REGEX, &t->re));
        return compile_regex(NUMERIC_REGEX, &t->numeric_re);
    }
    return etx_error(ETX_ERR_INVALID_ARG, "unknown pre-tokenizer kind %d", (int)kind);
}

// Byte-level symbol table and the id of each one-byte symbol.
static void setup_bytes(Tokenizer* t) {
    for (int b = 0; b < 256; b++) {
        t->byte_sym_len[b] = (unsigned char)utf8_encode(byte_to_codepoint(b), t->byte_sym[b]);
        t->byte_id[b] = strmap_get(t, t->byte_sym[b], t->byte_sym_len[b]);
        if (t->byte_id[b] >= 0 && t->kind[t->byte_id[b]] != TOK_NORMAL) t->byte_id[b] = -1;
    }
}

// Buckets the added tokens by first byte, longest first, for leftmost-longest matching.
static void setup_added(Tokenizer* t) {
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->kind[id] == TOK_NORMAL || t->token_lens[id] == 0) continue;
        int b = (unsigned char)t->tokens[id][0];
        int n = t->n_added_by_byte[b]++;
        t->added_by_byte[b] = xrealloc(t->added_by_byte[b], (size_t)(n + 1) * sizeof(int));
        int* list = t->added_by_byte[b];
        while (n > 0 && t->token_lens[list[n - 1]] < t->token_lens[id]) { // insertion sort, stable
            list[n] = list[n - 1];
            n--;
        }
        list[n] = id;
    }
}

// Splits "left right" at the first space after the first character.
static etx_status split_merge(const char* m, Str* l, Str* r) {
    const char* sp = m[0] ? strchr(m + 1, ' ') : NULL;
    if (!sp || !sp[1] || strchr(sp + 1, ' '))
        return etx_error(ETX_ERR_FORMAT, "merge '%s' is not two tokens separated by one space", m);
    l->s = m;
    l->n = (size_t)(sp - m);
    r->s = sp + 1;
    r->n = strlen(sp + 1);
    return etx_ok();
}

static etx_status add_merge(Tokenizer* t, int rank, Str l, Str r) {
    int a = strmap_get(t, l.s, l.n);
    int b = strmap_get(t, r.s, r.n);
    if (a < 0 || b < 0) {
        Str bad = a < 0 ? l : r;
        return etx_error(ETX_ERR_FORMAT, "merge %d ('%.*s' '%.*s') names unknown token '%.*s'", rank, (int)l.n, l.s,
                         (int)r.n, r.s, (int)bad.n, bad.s);
    }
    char* both = xmalloc(l.n + r.n + 1);
    memcpy(both, l.s, l.n);
    memcpy(both + l.n, r.s, r.n);
    int m = strmap_get(t, both, l.n + r.n);
    free(both);
    if (m < 0)
        return etx_error(ETX_ERR_FORMAT, "merge %d ('%.*s' '%.*s'): the merged token is not in the vocabulary", rank,
                         (int)l.n, l.s, (int)r.n, r.s);
    pairmap_put(&t->merges, a, b, rank, m);
    return etx_ok();
}

// Creates the tokenizer's vocabulary part: strings, kinds and special flags (kind[i] is
// TOK_* | TOK_SPECIAL_BIT), decoded bytes, the string map.
static etx_status build_vocab(Tokenizer* t, int n_vocab, const Str* toks, const unsigned char* kind) {
    if (n_vocab <= 0) return etx_error(ETX_ERR_FORMAT, "the vocabulary is empty");
    t->n_vocab = n_vocab;
    t->tokens = xcalloc((size_t)n_vocab, sizeof(char*));
    t->token_lens = xcalloc((size_t)n_vocab, sizeof(size_t));
    t->bytes = xcalloc((size_t)n_vocab, sizeof(char*));
    t->bytes_lens = xcalloc((size_t)n_vocab, sizeof(size_t));
    t->kind = xcalloc((size_t)n_vocab, 1);
    t->special = xcalloc((size_t)n_vocab, 1);
    int byte_of_cp[BYTE_CP_END];
    byte_of_codepoint_table(byte_of_cp);
    for (int i = 0; i < n_vocab; i++) {
        if (!toks[i].s) return etx_error(ETX_ERR_FORMAT, "token id %d has no string", i);
        t->tokens[i] = xmalloc(toks[i].n + 1);
        memcpy(t->tokens[i], toks[i].s, toks[i].n);
        t->tokens[i][toks[i].n] = '\0';
        t->token_lens[i] = toks[i].n;
        t->kind[i] = kind[i] & 3;
        t->special[i] = (kind[i] & TOK_SPECIAL_BIT) != 0;
        if (t->kind[i] == TOK_NORMAL) {
            t->bytes[i] = byte_level_to_bytes(toks[i].s, toks[i].n, byte_of_cp, &t->bytes_lens[i]);
        } else {
            t->bytes[i] = xmalloc(toks[i].n + 1); // as written (may hold a NUL byte)
            memcpy(t->bytes[i], t->tokens[i], toks[i].n + 1);
            t->bytes_lens[i] = toks[i].n;
        }
    }
    t->vocab.cap = pow2_at_least((size_t)n_vocab * 2);
    t->vocab.slots = xmalloc(t->vocab.cap * sizeof(int));
    t->vocab.hashes = xcalloc(t->vocab.cap, sizeof(uint32_t));
    for (uint32_t i = 0; i < t->vocab.cap; i++) t->vocab.slots[i] = -1;
    for (int i = 0; i < n_vocab; i++)
        if (t->kind[i] == TOK_NORMAL) strmap_put(t, i);
    for (int i = 0; i < n_vocab; i++)
        if (t->kind[i] != TOK_NORMAL) strmap_put(t, i);
    return etx_ok();
}

static void alloc_merges(Tokenizer* t, int n_merges) {
    t->merges.cap = pow2_at_least((size_t)(n_merges > 0 ? n_merges : 1) * 2);
    t->merges.slots = xmalloc(t->merges.cap * sizeof(PairSlot));
    for (uint32_t i = 0; i < t->merges.cap; i++) t->merges.slots[i].key = UINT64_MAX;
}

// Common end of both builders: byte symbols, added-token buckets, regexes.
static etx_status finish_build(Tokenizer* t, PretokKind pretok, int ignore_merges) {
    t->ignore_merges = ignore_merges;
    setup_bytes(t);
    setup_added(t);
    return setup_pretok(t, pretok);
}

etx_status tokenizer_build(const TokenizerSpec* spec, Tokenizer** out) {
    *out = NULL;
    if (!spec || spec->n_vocab <= 0 || !spec->tokens || spec->n_merges < 0 || (spec->n_merges > 0 && !spec->merges))
        return etx_error(ETX_ERR_INVALID_ARG, "tokenizer spec: empty vocabulary or missing arrays");
    Tokenizer* t = xcalloc(1, sizeof(Tokenizer));
    Str* toks = xmalloc((size_t)spec->n_vocab * sizeof(Str));
    unsigned char* kind = xcalloc((size_t)spec->n_vocab, 1);
    for (int i = 0; i < spec->n_vocab; i++) {
        toks[i].s = spec->tokens[i];
        toks[i].n = spec->tokens[i] ? (spec->token_lens ? spec->token_lens[i] : strlen(spec->tokens[i])) : 0;
        kind[i] = spec->special && spec->special[i] ? TOK_ADDED_RAW | TOK_SPECIAL_BIT : TOK_NORMAL;
    }
    etx_status st = build_vocab(t, spec->n_vocab, toks, kind);
    free(toks);
    free(kind);
    if (st.code == ETX_OK) alloc_merges(t, spec->n_merges);
    for (int i = 0; st.code == ETX_OK && i < spec->n_merges; i++) {
        Str l, r;
        st = spec->merges[i] ? split_merge(spec->merges[i], &l, &r)
                             : etx_error(ETX_ERR_INVALID_ARG, "merge %d is NULL", i);
        if (st.code == ETX_OK) st = add_merge(t, i, l, r);
    }
    // llama.cpp ignores merges for the Llama 3 pre-tokenizer, as HF's Llama 3 tokenizer.json says
    if (st.code == ETX_OK) st = finish_build(t, spec->pretok, spec->pretok == PRETOK_LLAMA3);
    if (st.code != ETX_OK) {
        tokenizer_free(t);
        return etx_error_wrap(st, "building tokenizer");
    }
    *out = t;
    return etx_ok();
}

etx_status tokenizer_pretok_from_gguf(const char* pre, PretokKind* out) {
    static const struct {
        const char* name;
        PretokKind kind;
    } names[] = {
        {"llama-bpe", PRETOK_LLAMA3}, {"llama3", PRETOK_LLAMA3},     {"llama-v3", PRETOK_LLAMA3},
        {"gpt2", PRETOK_GPT2},        {"smollm", PRETOK_SMOLLM},     {"starcoder", PRETOK_SMOLLM},
        {"qwen2", PRETOK_QWEN2},
    };
    for (size_t i = 0; pre && i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(pre, names[i].name) == 0) {
            *out = names[i].kind;
            return etx_ok();
        }
    }
    return etx_error(ETX_ERR_UNSUPPORTED,
                     "tokenizer.ggml.pre '%s' is not a pre-tokenizer etx knows (llama-bpe, gpt2, smollm, qwen2)",
                     pre ? pre : "(missing)");
}

// ----------------------------------------------------------------------------
// tokenizer.json

static const cJSON* get_obj(const cJSON* o, const char* key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static const char* get_str(const cJSON* o, const char* key) {
    const cJSON* v = get_obj(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// 1 if key is true, 0 if false or absent (dflt when absent).
static int get_bool(const cJSON* o, const char* key, int dflt) {
    const cJSON* v = get_obj(o, key);
    if (!v || cJSON_IsNull(v)) return dflt;
    return cJSON_IsTrue(v);
}

static etx_status check_byte_level(const cJSON* p, int want_regex) {
    if (get_bool(p, "add_prefix_space", 1))
        return etx_error(ETX_ERR_UNSUPPORTED, "pre_tokenizer ByteLevel with add_prefix_space=true is not supported");
    if (get_bool(p, "use_regex", 1) != want_regex)
        return etx_error(ETX_ERR_UNSUPPORTED, "pre_tokenizer ByteLevel with use_regex=%s is not supported here",
                         want_regex ? "false" : "true");
    return etx_ok();
}

static int is_type(const cJSON* o, const char* type) {
    const char* s = get_str(o, "type");
    return s && strcmp(s, type) == 0;
}

// Recognises the pre-tokenizer shapes etx implements: ByteLevel (GPT-2), Split + ByteLevel
// with the Llama 3 or the Qwen2 regex, Digits + ByteLevel (SmolLM).
static etx_status detect_pretok(const cJSON* p, PretokKind* out) {
    if (is_type(p, "ByteLevel")) {
        *out = PRETOK_GPT2;
        return check_byte_level(p, 1);
    }
    const cJSON* seq = get_obj(p, "pretokenizers");
    if (is_type(p, "Sequence") && cJSON_IsArray(seq) && cJSON_GetArraySize(seq) == 2) {
        const cJSON* a = cJSON_GetArrayItem(seq, 0);
        const cJSON* b = cJSON_GetArrayItem(seq, 1);
        if (is_type(a, "Split") && is_type(b, "ByteLevel")) {
            const char* re = get_str(get_obj(a, "pattern"), "Regex");
            const char* beh = get_str(a, "behavior");
            int isolated = beh && strcmp(beh, "Isolated") == 0 && !get_bool(a, "invert", 0);
            if (re && isolated && (strcmp(re, LLAMA3_JSON_REGEX) == 0 || strcmp(re, QWEN2_JSON_REGEX) == 0)) {
                *out = strcmp(re, LLAMA3_JSON_REGEX) == 0 ? PRETOK_LLAMA3 : PRETOK_QWEN2;
                return check_byte_level(b, 0);
            }
            if (!isolated)
                return etx_error(ETX_ERR_UNSUPPORTED,
                                 "pre_tokenizer Split with behavior '%s'%s is not supported (only Isolated)",
                                 beh ? beh : "(none)", get_bool(a, "invert", 0) ? " and invert" : "");
            return etx_error(ETX_ERR_UNSUPPORTED, "pre_tokenizer Split regex '%s' is not the Llama 3 or Qwen2 one",
                             re ? re : "(none)");
        }
        if (is_type(a, "Digits") && get_bool(a, "individual_digits", 0) && is_type(b, "ByteLevel")) {
            *out = PRETOK_SMOLLM;
            return check_byte_level(b, 1);
        }
    }
    const char* type = get_str(p, "type");
    return etx_error(ETX_ERR_UNSUPPORTED,
                     "pre_tokenizer of type '%s' is not one etx knows (Llama 3 or Qwen2 Split+ByteLevel, GPT-2 "
                     "ByteLevel, SmolLM Digits+ByteLevel)",
                     type ? type : "(none)");
}

static etx_status check_model(const cJSON* model) {
    if (!cJSON_IsObject(model)) return etx_error(ETX_ERR_FORMAT, "no \"model\" object");
    const char* type = get_str(model, "type");
    if (type && strcmp(type, "BPE") != 0)
        return etx_error(ETX_ERR_UNSUPPORTED, "model type '%s' is not supported (only byte-level BPE)", type);
    if (get_bool(model, "byte_fallback", 0))
        return etx_error(ETX_ERR_UNSUPPORTED, "BPE with byte_fallback is not supported");
    const char* pre = get_str(model, "continuing_subword_prefix");
    const char* suf = get_str(model, "end_of_word_suffix");
    if ((pre && pre[0]) || (suf && suf[0]))
        return etx_error(ETX_ERR_UNSUPPORTED, "BPE with a subword prefix or word suffix is not supported");
    const cJSON* drop = get_obj(model, "dropout");
    if (cJSON_IsNumber(drop) && drop->valuedouble != 0.0)
        return etx_error(ETX_ERR_UNSUPPORTED, "BPE dropout is not supported");
    if (!cJSON_IsObject(get_obj(model, "vocab"))) return etx_error(ETX_ERR_FORMAT, "model.vocab is missing");
    if (!cJSON_IsArray(get_obj(model, "merges"))) return etx_error(ETX_ERR_FORMAT, "model.merges is missing");
    return etx_ok();
}

// The normalizer: none, or NFC (Qwen2's); *nfc says which.
static etx_status check_normalizer(const cJSON* root, int* nfc) {
    const cJSON* norm = get_obj(root, "normalizer");
    *nfc = 0;
    if (!norm || cJSON_IsNull(norm)) return etx_ok();
    if (is_type(norm, "NFC")) {
        *nfc = 1;
        return etx_ok();
    }
    const char* type = get_str(norm, "type");
    return etx_error(ETX_ERR_UNSUPPORTED, "normalizer '%s' is not supported (only none or NFC)", type ? type : "?");
}

static etx_status check_rest(const cJSON* root) {
    const cJSON* dec = get_obj(root, "decoder");
    if (dec && !cJSON_IsNull(dec) && !is_type(dec, "ByteLevel")) {
        const char* type = get_str(dec, "type");
        return etx_error(ETX_ERR_UNSUPPORTED, "decoder '%s' is not supported (only ByteLevel)", type ? type : "?");
    }
    const cJSON* pre = get_obj(root, "pre_tokenizer");
    if (!pre || cJSON_IsNull(pre)) return etx_error(ETX_ERR_UNSUPPORTED, "no pre_tokenizer");
    return etx_ok();
}

// Largest id named by model.vocab and added_tokens, or an error for a bad entry.
static etx_status max_id(const cJSON* vocab, const cJSON* added, int* out) {
    int m = -1;
    const cJSON* e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 16777216.0 || e->valueint != e->valuedouble)
            return etx_error(ETX_ERR_FORMAT, "model.vocab entry '%s' has no valid id", e->string ? e->string : "?");
        if (e->valueint > m) m = e->valueint;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON* id = get_obj(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 16777216.0 || !get_str(e, "content"))
            return etx_error(ETX_ERR_FORMAT, "an added_tokens entry has no valid id or content");
        if (id->valueint > m) m = id->valueint;
    }
    *out = m;
    return etx_ok();
}

// Fills toks/kind (n entries) from model.vocab and added_tokens.
static etx_status collect_tokens(const cJSON* vocab, const cJSON* added, int n, Str* toks, unsigned char* kind) {
    const cJSON* e;
    cJSON_ArrayForEach(e, vocab) {
        int id = e->valueint;
        if (toks[id].s)
            return etx_error(ETX_ERR_FORMAT, "model.vocab gives id %d to both '%s' and '%s'", id, toks[id].s, e->string);
        toks[id].s = e->string;
        toks[id].n = strlen(e->string);
    }
    cJSON_ArrayForEach(e, added) {
        int id = get_obj(e, "id")->valueint;
        if (get_bool(e, "lstrip", 0) || get_bool(e, "rstrip", 0) || get_bool(e, "single_word", 0))
            return etx_error(ETX_ERR_UNSUPPORTED, "added token '%s' uses lstrip/rstrip/single_word, not supported",
                             get_str(e, "content"));
        toks[id].s = get_str(e, "content");
        toks[id].n = strlen(toks[id].s);
        int special = get_bool(e, "special", 0);
        kind[id] = (unsigned char)((get_bool(e, "normalized", !special) ? TOK_ADDED_NORM : TOK_ADDED_RAW) |
                                   (special ? TOK_SPECIAL_BIT : 0));
    }
    for (int i = 0; i < n; i++)
        if (!toks[i].s) return etx_error(ETX_ERR_FORMAT, "token id %d has no string (ids must be 0..%d)", i, n - 1);
    return etx_ok();
}

static etx_status load_merges(Tokenizer* t, const cJSON* merges) {
    alloc_merges(t, cJSON_GetArraySize(merges));
    int rank = 0;
    const cJSON* e;
    cJSON_ArrayForEach(e, merges) {
        Str l, r;
        if (cJSON_IsString(e)) {
            ETX_TRY(split_merge(e->valuestring, &l, &r));
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            l.s = cJSON_GetArrayItem(e, 0)->valuestring;
            l.n = strlen(l.s);
            r.s = cJSON_GetArrayItem(e, 1)->valuestring;
            r.n = strlen(r.s);
        } else {
            return etx_error(ETX_ERR_FORMAT, "model.merges entry %d is neither \"a b\" nor [\"a\", \"b\"]", rank);
        }
        ETX_TRY(add_merge(t, rank, l, r));
        rank++;
    }
    return etx_ok();
}

static etx_status build_from_json(const cJSON* root, Tokenizer* t) {
    if (!cJSON_IsObject(root)) return etx_error(ETX_ERR_FORMAT, "the top level is not a JSON object");
    const cJSON* model = get_obj(root, "model");
    ETX_TRY(check_model(model));
    ETX_TRY(check_rest(root));
    int nfc = 0;
    ETX_TRY(check_normalizer(root, &nfc));
    PretokKind pretok = PRETOK_GPT2;
    ETX_TRY(detect_pretok(get_obj(root, "pre_tokenizer"), &pretok));
    const cJSON* vocab = get_obj(model, "vocab");
    const cJSON* added = get_obj(root, "added_tokens");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return etx_error(ETX_ERR_FORMAT, "added_tokens is not an array");
    if (!cJSON_IsArray(added)) added = NULL;
    int m = -1;
    ETX_TRY(max_id(vocab, added, &m));
    Str* toks = xcalloc((size_t)m + 1, sizeof(Str));
    unsigned char* kind = xcalloc((size_t)m + 1, 1);
    etx_status st = collect_tokens(vocab, added, m + 1, toks, kind);
    if (st.code == ETX_OK) st = build_vocab(t, m + 1, toks, kind);
    free(toks);
    free(kind);
    ETX_TRY(st);
    ETX_TRY(load_merges(t, get_obj(model, "merges")));
    t->nfc = nfc;
    return finish_build(t, pretok, get_bool(model, "ignore_merges", 0));
}

etx_status tokenizer_load_json(const char* path, Tokenizer** out) {
    *out = NULL;
    char* data = NULL;
    size_t len = 0;
    etx_status st = etx_read_file(path, &data, &len);
    if (st.code != ETX_OK) return etx_error_wrap(st, "loading tokenizer %s", path);
    cJSON* root = cJSON_ParseWithLength(data, len);
    if (!root) {
        const char* where = cJSON_GetErrorPtr();
        size_t off = where && where >= data && where <= data + len ? (size_t)(where - data) : 0;
        free(data);
        return etx_error(ETX_ERR_FORMAT, "loading tokenizer %s: malformed JSON near byte %zu", path, off);
    }
    free(data);
    Tokenizer* t = xcalloc(1, sizeof(Tokenizer));
    st = build_from_json(root, t);
    cJSON_Delete(root);
    if (st.code != ETX_OK) {
        tokenizer_free(t);
        return etx_error_wrap(st, "loading tokenizer %s", path);
    }
    *out = t;
    return etx_ok();
}

// ----------------------------------------------------------------------------
// queries

int tokenizer_n_vocab(const Tokenizer* t) { return t->n_vocab; }

int tokenizer_find(const Tokenizer* t, const char* s) { return strmap_get(t, s, strlen(s)); }

int tokenizer_is_special(const Tokenizer* t, int id) {
    return id >= 0 && id < t->n_vocab && t->special[id];
}

const char* tokenizer_token_bytes(const Tokenizer* t, int id, size_t* len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    *len = t->bytes_lens[id];
    return t->bytes[id];
}

// ----------------------------------------------------------------------------
// encoding

typedef struct {
    int id;    // current token id of the symbol
    int prev;  // index of the previous live symbol, -1 at the start
    int next;  // index of the next live symbol, -1 at the end
    int alive;
} Symbol;

typedef struct {
    int rank;
    int pos;      // left symbol
    int left_id;  // ids the pair had when queued (a stale entry no longer matches)
    int right_id;
    int merged;
} Candidate;

// Scratch space reused across the pieces of one encode call, and the output ids.
typedef struct {
    int32_t* ids;
    int n_ids, cap_ids;
    Symbol* syms;
    int cap_syms;
    Candidate* heap;
    int n_heap, cap_heap;
    char* scratch; // byte-level form of a piece
    size_t cap_scratch;
    pcre2_match_data* md;
    pcre2_match_context* mctx;
    pcre2_jit_stack* jit_stack;
    etx_status err; // first failure inside a piece callback (SmolLM's nested split)
} Encoder;

static void emit(Encoder* e, int id) {
    if (e->n_ids == e->cap_ids) {
        e->cap_ids = e->cap_ids ? e->cap_ids * 2 : 64;
        e->ids = xrealloc(e->ids, (size_t)e->cap_ids * sizeof(int32_t));
    }
    e->ids[e->n_ids++] = id;
}

static int cand_less(const Candidate* a, const Candidate* b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Encoder* e, Candidate c) {
    if (e->n_heap == e->cap_heap) {
        e->cap_heap = e->cap_heap ? e->cap_heap * 2 : 64;
        e->heap = xrealloc(e->heap, (size_t)e->cap_heap * sizeof(Candidate));
    }
    int i = e->n_heap++;
    while (i > 0 && cand_less(&c, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = c;
}

static Candidate heap_pop(Encoder* e) {
    Candidate top = e->heap[0];
    Candidate last = e->heap[--e->n_heap];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= e->n_heap) break;
        if (c + 1 < e->n_heap && cand_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!cand_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    e->heap[i] = last;
    return top;
}

// Queues the merge of symbol pos with its right neighbour, if the pair has a merge.
static void queue_pair(const Tokenizer* t, Encoder* e, int pos) {
    if (pos < 0 || e->syms[pos].next < 0) return;
    int l = e->syms[pos].id, r = e->syms[e->syms[pos].next].id;
    const PairSlot* m = pairmap_get(&t->merges, l, r);
    if (!m) return;
    Candidate c = {m->rank, pos, l, r, m->merged};
    heap_push(e, c);
}

// 1 when the whole piece, in byte-level form, is a vocabulary token (emitted).
static int emit_whole_piece(const Tokenizer* t, Encoder* e, const unsigned char* p, size_t n) {
    if (e->cap_scratch < 2 * n) {
        e->cap_scratch = 2 * n;
        e->scratch = xrealloc(e->scratch, e->cap_scratch);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(e->scratch + k, t->byte_sym[p[i]], t->byte_sym_len[p[i]]);
        k += t->byte_sym_len[p[i]];
    }
    int id = strmap_get(t, e->scratch, k);
    if (id < 0 || t->kind[id] != TOK_NORMAL) return 0;
    emit(e, id);
    return 1;
}

// BPE over one pre-tokenized piece (raw bytes).
static void bpe_piece(const Tokenizer* t, Encoder* e, const unsigned char* p, size_t n) {
    if (n == 0) return;
    if (t->ignore_merges && emit_whole_piece(t, e, p, n)) return;
    if ((size_t)e->cap_syms < n) {
        e->cap_syms = (int)n;
        e->syms = xrealloc(e->syms, n * sizeof(Symbol));
    }
    int ns = 0;
    for (size_t i = 0; i < n; i++) {
        int id = t->byte_id[p[i]];
        if (id < 0) continue; // HF drops a symbol the vocab lacks when there is no unk token
        Symbol s = {id, ns - 1, -1, 1};
        if (ns > 0) e->syms[ns - 1].next = ns;
        e->syms[ns++] = s;
    }
    e->n_heap = 0;
    for (int i = 0; i + 1 < ns; i++) queue_pair(t, e, i);
    while (e->n_heap > 0) {
        Candidate c = heap_pop(e);
        Symbol* a = &e->syms[c.pos];
        if (!a->alive || a->id != c.left_id || a->next < 0 || e->syms[a->next].id != c.right_id) continue;
        Symbol* b = &e->syms[a->next];
        a->id = c.merged;
        b->alive = 0;
        a->next = b->next;
        if (a->next >= 0) e->syms[a->next].prev = c.pos;
        queue_pair(t, e, a->prev);
        queue_pair(t, e, c.pos);
    }
    for (int i = ns > 0 ? 0 : -1; i >= 0; i = e->syms[i].next) emit(e, e->syms[i].id);
}

// Runs re over s[0..n) (its own subject, as HF splits each span separately) and calls
// on_piece for every match and every gap between matches (HF's Isolated behaviour).
typedef void (*PieceFn)(const Tokenizer* t, Encoder* e, const unsigned char* p, size_t n);

static etx_status regex_split(const Tokenizer* t, Encoder* e, const pcre2_code* re, const char* s, size_t n,
                              PieceFn on_match, PieceFn on_gap) {
    size_t pos = 0, last = 0;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return etx_error(ETX_ERR_INVALID_ARG, "pre-tokenizer regex failed at byte %zu: %s", pos, (const char*)msg);
        }
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { // an empty match: step over one character
            pos = ms + 1;
            while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ms > last) on_gap(t, e, (const unsigned char*)s + last, ms - last);
        on_match(t, e, (const unsigned char*)s + ms, me - ms);
        pos = last = me;
    }
    if (n > last) on_gap(t, e, (const unsigned char*)s + last, n - last);
    return etx_ok();
}

// SmolLM: the GPT-2 regex over a span between two \p{N} characters.
static void gpt2_gap(const Tokenizer* t, Encoder* e, const unsigned char* p, size_t n) {
    etx_status st = regex_split(t, e, t->re, (const char*)p, n, bpe_piece, bpe_piece);
    if (st.code != ETX_OK && e->err.code == ETX_OK) e->err = st;
}

static etx_status pretokenize_span(const Tokenizer* t, Encoder* e, const char* s, size_t n) {
    if (n == 0) return etx_ok();
    if (t->pretok != PRETOK_SMOLLM) return regex_split(t, e, t->re, s, n, bpe_piece, bpe_piece);
    ETX_TRY(regex_split(t, e, t->numeric_re, s, n, bpe_piece, gpt2_gap));
    return e->err;
}

// Longest added token of the given kind starting at s[0..n), or -1; *len its length.
static int match_added(const Tokenizer* t, const char* s, size_t n, int want_kind, size_t* len) {
    int b = (unsigned char)s[0];
    for (int i = 0; i < t->n_added_by_byte[b]; i++) {
        int id = t->added_by_byte[b][i];
        size_t k = t->token_lens[id];
        if (t->kind[id] == want_kind && k <= n && memcmp(s, t->tokens[id], k) == 0) {
            *len = k;
            return id;
        }
    }
    return -1;
}

static etx_status split_added(const Tokenizer* t, Encoder* e, const char* s, size_t n, int want_kind);

// A span between normalized=false added tokens: normalized (NFC, if the tokenizer has it),
// then split at the normalized=true added tokens. HF matches those against their own
// normalized text, etx against their text as written: the same for every token already in
// NFC, as the added tokens of the vocabularies etx loads are.
static etx_status normalized_span(const Tokenizer* t, Encoder* e, const char* s, size_t n) {
    size_t nn = 0;
    char* norm = t->nfc && n ? utf8_nfc(s, n, &nn) : NULL;
    if (!norm) return split_added(t, e, s, n, TOK_ADDED_NORM);
    etx_status st = split_added(t, e, norm, nn, TOK_ADDED_NORM);
    free(norm);
    return st;
}

// Cuts added tokens of want_kind out of s[0..n); spans between go to the next stage
// (normalization and the normalized=true added tokens, then the pre-tokenizer).
static etx_status split_added(const Tokenizer* t, Encoder* e, const char* s, size_t n, int want_kind) {
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        int id = match_added(t, s + i, n - i, want_kind, &len);
        if (id < 0) {
            i++;
            continue;
        }
        if (want_kind == TOK_ADDED_RAW) ETX_TRY(normalized_span(t, e, s + start, i - start));
        else ETX_TRY(pretokenize_span(t, e, s + start, i - start));
        emit(e, id);
        i += len;
        start = i;
    }
    if (want_kind == TOK_ADDED_RAW) return normalized_span(t, e, s + start, n - start);
    return pretokenize_span(t, e, s + start, n - start);
}

static void encoder_free(Encoder* e) {
    free(e->syms);
    free(e->heap);
    free(e->scratch);
    if (e->md) pcre2_match_data_free(e->md);
    if (e->mctx) pcre2_match_context_free(e->mctx);
    if (e->jit_stack) pcre2_jit_stack_free(e->jit_stack);
}

etx_status tokenizer_encode(const Tokenizer* t, const char* text, size_t len, int32_t** ids, int* n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len > 0) return etx_error(ETX_ERR_INVALID_ARG, "tokenizer_encode: text is NULL");
    size_t bad = utf8_first_invalid(text, len);
    if (bad < len)
        return etx_error(ETX_ERR_INVALID_ARG, "text is not valid UTF-8: bad byte 0x%02X at offset %zu",
                         (unsigned char)text[bad], bad);
    Encoder e = {0};
    e.err = etx_ok();
    e.md = pcre2_match_data_create(4, NULL);
    e.mctx = pcre2_match_context_create(NULL);
    e.jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!e.md || !e.mctx) {
        encoder_free(&e);
        return etx_error(ETX_ERR_NOMEM, "tokenizer_encode: cannot allocate regex match data");
    }
    if (e.jit_stack) pcre2_jit_stack_assign(e.mctx, NULL, e.jit_stack);
    etx_status st = len ? split_added(t, &e, text, len, TOK_ADDED_RAW) : etx_ok();
    encoder_free(&e);
    if (st.code != ETX_OK) {
        free(e.ids);
        return st;
    }
    *ids = e.ids ? e.ids : xmalloc(sizeof(int32_t));
    *n_ids = e.n_ids;
    return etx_ok();
}
