/*
 * utf8_stream.c — streaming UTF-8 decode of token bytes (utf8_stream_push/flush).
 *
 * Token bytes arrive in pieces that may split a character; the stream emits only whole
 * characters and keeps the unfinished prefix of the last one in `pending`. Bytes that
 * cannot be part of a well-formed character come out as U+FFFD, one per maximal
 * subpart (Unicode 3.9, "substitution of maximal subparts"), which is what Rust's
 * String::from_utf8_lossy — and so Hugging Face's ByteLevel decoder — does to the whole
 * byte string. The concatenated stream output therefore equals HF's full decode.
 */
#include "tokenizer/tokenizer.h"

#include <string.h>

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; // U+FFFD

// Length of the character a lead byte starts (2..4), or 0 for a byte no character starts with.
static int lead_length(unsigned char c) {
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

// Whether byte c may follow the prefix lead..(k bytes so far) as byte number k (k >= 1).
// The second byte has the narrow ranges of Unicode Table 3-7; later ones are 80..BF.
static int continues(unsigned char lead, int k, unsigned char c) {
    if (k > 1) return c >= 0x80 && c <= 0xBF;
    switch (lead) {
    case 0xE0: return c >= 0xA0 && c <= 0xBF;
    case 0xED: return c >= 0x80 && c <= 0x9F;
    case 0xF0: return c >= 0x90 && c <= 0xBF;
    case 0xF4: return c >= 0x80 && c <= 0x8F;
    default: return c >= 0x80 && c <= 0xBF;
    }
}

static size_t put_replacement(char* out) {
    memcpy(out, REPLACEMENT, 3);
    return 3;
}

// Feeds one byte; returns bytes written to out (at most 3 + 3).
static size_t push_byte(Utf8Stream* s, unsigned char c, char* out) {
    size_t w = 0;
    if (s->n_pending > 0) {
        if (continues(s->pending[0], s->n_pending, c)) {
            s->pending[s->n_pending++] = c;
            if (s->n_pending == lead_length(s->pending[0])) {
                memcpy(out, s->pending, (size_t)s->n_pending);
                w = (size_t)s->n_pending;
                s->n_pending = 0;
            }
            return w;
        }
        // the pending prefix is a maximal subpart that cannot complete
        w += put_replacement(out);
        s->n_pending = 0;
    }
    if (c < 0x80) {
        out[w++] = (char)c;
    } else if (lead_length(c)) {
        s->pending[0] = c;
        s->n_pending = 1;
    } else {
        w += put_replacement(out + w);
    }
    return w;
}

size_t utf8_stream_push(Utf8Stream* s, const char* bytes, size_t n, char* out) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) w += push_byte(s, (unsigned char)bytes[i], out + w);
    return w;
}

size_t utf8_stream_flush(Utf8Stream* s, char* out) {
    if (s->n_pending == 0) return 0;
    s->n_pending = 0;
    return put_replacement(out);
}
