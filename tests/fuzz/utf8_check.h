/*
 * utf8_check.h — a strict UTF-8 validity test for the tokenizer fuzz targets' invariants
 * (what the tokenizer and the streaming decoder promise about their text). Written from
 * the Unicode definition (Table 3-7, well-formed byte sequences): no overlong forms, no
 * surrogates, nothing above U+10FFFF.
 */
#ifndef ETX_FUZZ_UTF8_CHECK_H
#define ETX_FUZZ_UTF8_CHECK_H

#include <stddef.h>

// 1 when s[0..n) is well-formed UTF-8.
static inline int utf8_valid(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        unsigned char lo = 0x80, hi = 0xBF; // range of the second byte
        if (c < 0x80) k = 1;
        else if (c >= 0xC2 && c <= 0xDF) k = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return 0;
        if (i + k > n) return 0;
        for (size_t j = 1; j < k; j++) {
            unsigned char b = s[i + j];
            if (j == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        }
        i += k;
    }
    return 1;
}

#endif // ETX_FUZZ_UTF8_CHECK_H
