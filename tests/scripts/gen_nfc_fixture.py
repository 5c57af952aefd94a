#!/usr/bin/env python3
"""gen_nfc_fixture.py — writes tests/fixtures/tokenizer/nfc.json: strings and their NFC as
Python's unicodedata computes it, for host/tokenizer/unicode_nfc.c (test_tokenizer.c).

    python3 tests/scripts/gen_nfc_fixture.py

The strings: every code point that has a canonical decomposition, alone, decomposed (NFD),
and decomposed with combining marks around it in shuffled order; Hangul syllables and
jamo sequences; random runs of starters and combining marks. The Python used must have
the Unicode version of host/tokenizer/unicode_nfc_tables.h (scripts/gen_unicode_nfc.py);
the file records it.
"""
import json
import os
import random
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "nfc.json")


def main():
    rng = random.Random(15)
    marks = [cp for cp in range(0x300, 0x370)] + [0x5B0, 0x5C4, 0x93C, 0x94D, 0x9BC, 0xE38, 0xF71, 0xF72, 0xF74,
                                                   0xF80, 0x1DC0, 0x20D0, 0x302A, 0x3099, 0x309A, 0x1D165, 0x1D16E]
    starters = [ord(c) for c in "aeiouAEIOUnNcCsSzZyYwWgGkKrRlLhH"] + [0x391, 0x3B1, 0x415, 0x435, 0x928, 0x9C7,
                                                                      0xB47, 0xBC6, 0x1100, 0x1161, 0x11A8, 0x3046]
    decomposable = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF
                    and unicodedata.decomposition(chr(cp)) and not unicodedata.decomposition(chr(cp)).startswith("<")]
    cases = []
    for cp in decomposable:
        c = chr(cp)
        d = unicodedata.normalize("NFD", c)
        m = [chr(rng.choice(marks)) for _ in range(rng.randint(1, 3))]
        cases += [c, d, "x" + d + "".join(m), d + "".join(reversed(m)) + c]
    for s in range(0xAC00, 0xD7A4, 97):
        cases += [chr(s), unicodedata.normalize("NFD", chr(s)) + chr(0x11A8)]
    cases += ["\u1100\u1161\u11a8", "\u1100\u1161", "\u1100\u11a8", "\uac00\u11a8", "\uac01\u11a8", "\u0344",
              "\u0958", "a\u0328\u0301", "a\u0301\u0328", "\u212b\u2126\u0340", "\u0301a", "\u0301\u0301a\u0301"]
    for _ in range(3000):
        s = []
        for _ in range(rng.randint(1, 8)):
            s.append(chr(rng.choice(starters + marks) if rng.random() < 0.8 else rng.choice(decomposable)))
        cases.append("".join(s))
    out = {"unicode": unicodedata.unidata_version,
           "cases": [[s, unicodedata.normalize("NFC", s)] for s in dict.fromkeys(cases)]}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT}: {len(out['cases'])} cases, Unicode {out['unicode']}, "
          f"{sum(a != b for a, b in out['cases'])} change under NFC")


if __name__ == "__main__":
    main()
