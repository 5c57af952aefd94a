/*
 * unicode_nfc.c — NFC over UTF-8 (UAX #15), as Hugging Face `tokenizers`' NFC normalizer
 * applies it before pre-tokenization: every code point is decomposed canonically (table
 * lookups, recursively; Hangul syllables by arithmetic), each run of non-starters is put
 * in canonical order (a stable sort by combining class), then starters are recomposed
 * with the characters that follow them unless a character of the same or a higher class
 * stands between (the canonical composition algorithm).
 */
#include "tokenizer/unicode_nfc.h"

#include <string.h>

#include "common.h"
#include "tokenizer/unicode_nfc_tables.h"

// Hangul syllable arithmetic (Unicode §3.12)
enum {
    H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7,
    H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28, H_NCOUNT = H_VCOUNT * H_TCOUNT, H_SCOUNT = H_LCOUNT * H_NCOUNT,
};

// A growable array of code points.
typedef struct {
    uint32_t* v;
    size_t n, cap;
} Cps;

static void cps_push(Cps* c, uint32_t cp) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xrealloc(c->v, c->cap * sizeof(uint32_t));
    }
    c->v[c->n++] = cp;
}

static int ccc_of(uint32_t cp) {
    size_t lo = 0, hi = sizeof NFC_CCC / sizeof NFC_CCC[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < NFC_CCC[mid].first) hi = mid;
        else if (cp > NFC_CCC[mid].last) lo = mid + 1;
        else return NFC_CCC[mid].ccc;
    }
    return 0;
}

static const NfcDecomp* decomp_of(uint32_t cp) {
    size_t lo = 0, hi = sizeof NFC_DECOMP / sizeof NFC_DECOMP[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < NFC_DECOMP[mid].cp) hi = mid;
        else if (cp > NFC_DECOMP[mid].cp) lo = mid + 1;
        else return &NFC_DECOMP[mid];
    }
    return NULL;
}

// The primary composite of a + b, or 0.
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b > H_TBASE &&
        b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    size_t lo = 0, hi = sizeof NFC_COMPOSE / sizeof NFC_COMPOSE[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const NfcPair* p = &NFC_COMPOSE[mid];
        if (a < p->first || (a == p->first && b < p->second)) hi = mid;
        else if (a > p->first || b > p->second) lo = mid + 1;
        else return p->composite;
    }
    return 0;
}

static void decompose(Cps* out, uint32_t cp) {
    if (cp >= H_SBASE && cp < H_SBASE + H_SCOUNT) {
        uint32_t s = cp - H_SBASE;
        cps_push(out, H_LBASE + s / H_NCOUNT);
        cps_push(out, H_VBASE + (s % H_NCOUNT) / H_TCOUNT);
        if (s % H_TCOUNT) cps_push(out, H_TBASE + s % H_TCOUNT);
        return;
    }
    const NfcDecomp* d = decomp_of(cp);
    if (!d) {
        cps_push(out, cp);
        return;
    }
    decompose(out, d->d0); // canonical decompositions nest a few levels at most
    if (d->d1) decompose(out, d->d1);
}

// Stable sort of each run of non-starters by combining class (insertion sort: runs are short).
static void canonical_order(Cps* c) {
    for (size_t i = 1; i < c->n; i++) {
        uint32_t cp = c->v[i];
        int cc = ccc_of(cp);
        if (cc == 0) continue;
        size_t j = i;
        while (j > 0) {
            int prev = ccc_of(c->v[j - 1]);
            if (prev == 0 || prev <= cc) break;
            c->v[j] = c->v[j - 1];
            j--;
        }
        c->v[j] = cp;
    }
}

// Canonical composition in place (UAX #15, "Canonical Composition Algorithm").
static void compose(Cps* c) {
    if (c->n == 0) return;
    size_t starter = 0, w = 1;
    int last = ccc_of(c->v[0]) ? 256 : 0; // no starter yet: nothing can compose
    for (size_t i = 1; i < c->n; i++) {
        uint32_t cp = c->v[i];
        int cc = ccc_of(cp);
        uint32_t comp = last == 256 ? 0 : compose_pair(c->v[starter], cp);
        if (comp && (last < cc || last == 0)) {
            c->v[starter] = comp;
            continue;
        }
        if (cc == 0) starter = w;
        last = cc;
        c->v[w++] = cp;
    }
    c->n = w;
}

// Code point at s[0..n) (valid UTF-8 assumed); its length in *len.
static uint32_t next_cp(const unsigned char* s, size_t* len) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    uint32_t v = c & (k == 2 ? 0x1Fu : k == 3 ? 0x0Fu : 0x07u);
    for (size_t i = 1; i < k; i++) v = v << 6 | (s[i] & 0x3Fu);
    *len = k;
    return v;
}

static size_t put_utf8(uint32_t cp, char* out) {
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

char* utf8_nfc(const char* s, size_t n, size_t* out_len) {
    const unsigned char* p = (const unsigned char*)s;
    size_t i = 0;
    while (i < n && p[i] < 0xCC) i++; // U+0300 is 0xCC 0x80: below it NFC changes nothing
    if (i == n) return NULL;
    Cps c = {0};
    for (i = 0; i < n;) {
        size_t len;
        uint32_t cp = next_cp(p + i, &len);
        decompose(&c, cp);
        i += len;
    }
    canonical_order(&c);
    compose(&c);
    char* out = xmalloc(4 * c.n + 1);
    size_t k = 0;
    for (size_t j = 0; j < c.n; j++) k += put_utf8(c.v[j], out + k);
    out[k] = '\0';
    free(c.v);
    *out_len = k;
    return out;
}
