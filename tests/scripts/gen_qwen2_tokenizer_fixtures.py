#!/usr/bin/env python3
"""gen_qwen2_tokenizer_fixtures.py — regenerates the Qwen2 tokenizer fixtures in
tests/fixtures/tokenizer/qwen2/ for tests/tokenizer/test_tokenizer.c.

The reference is Hugging Face: transformers' AutoTokenizer loading the GGUF of the
evaluation model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, models/fetch_eval_model.sh), which
converts the GGUF's tokenizer into a `tokenizers` fast tokenizer (Qwen2Tokenizer: the
Qwen2 Split regex, ByteLevel, the 22 added tokens), and `tokenizers` itself for the small
tokenizer.json; jinja2 renders the GGUF's own chat template, the way transformers'
apply_chat_template does. The corpus is tests/fixtures/tokenizer/corpus.json, the string
set the Llama 3 and SmolLM2 ids are checked on, plus a few strings with Qwen's own added
tokens. The C test reads only the files written here, so CI needs none of these packages
and no model.

Usage (from the repository root):

    ./models/fetch_eval_model.sh
    python -m venv /tmp/tokvenv
    /tmp/tokvenv/bin/pip install tokenizers transformers gguf jinja2 numpy
    /tmp/tokvenv/bin/python tests/scripts/gen_qwen2_tokenizer_fixtures.py \
        --gguf models/cache/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf

    # optional: compare with llama.cpp (any python that has llama_cpp installed)
    python3 tests/scripts/gen_qwen2_tokenizer_fixtures.py --llamacpp-check \
        --gguf models/cache/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf

transformers loads a GGUF only with torch installed; the tokenizer needs none of it, so
this script stands a stub module in for torch (as gen_tokenizer_fixtures.py does).

Writes, under tests/fixtures/tokenizer/qwen2/:
    tokenizer.gguf.tar.xz  tokenizer.gguf, the GGUF's tokenizer alone: every tokenizer.*
                         key and general.architecture/name, no tensors (5.9 MB; 1.3 MB
                         xz-compressed; CMake unpacks it into the build tree) (+ LICENSE-NOTE)
    extra.json           the Qwen-specific strings added to corpus.json
    expected.json        {"ids": [...], "decoded": {...}} for corpus.json + extra.json, as
                         gen_tokenizer_fixtures.encode_all writes them
    expected_llama3_vocab.json  HF ids of the Llama 3 tokenizer.json with its Split regex
                         replaced by Qwen2's (and ignore_merges off, as Qwen2's): Qwen's own
                         vocabulary almost never merges adjacent digits, so this is where
                         the regex's single digits show
    small/tokenizer.json a Qwen2 tokenizer.json cut to the first 4096 ids (bytes and the
                         first merges) plus the added tokens, renumbered after them, with
                         the NFC normalizer that Qwen2.5's published tokenizer.json has (the
                         GGUF does not say it, and neither transformers' GGUF loading nor
                         llama.cpp applies it): the tokenizer.json path on a small file
    expected_small.json  HF `tokenizers` ids of small/tokenizer.json, same strings
    chat.json            conversations rendered with the GGUF's chat template (Qwen2.5)
    llamacpp_crosscheck.txt  (with --llamacpp-check) llama.cpp's ids for the same strings
                         from the model's GGUF and from tokenizer.gguf, against expected.json
                         (needs llama_cpp; not read by the C test)
"""
import argparse
import io
import json
import lzma
import os
import sys
import tarfile
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKFIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
OUT = os.path.join(TOKFIX, "qwen2")
sys.path.insert(0, HERE)
import gen_tokenizer_fixtures as base  # noqa: E402  (encode_all, CONVERSATIONS)

NOTE = """Qwen2.5 tokenizer, as stored in the GGUF of the evaluation model
(Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf, sha256 cc324af0...3bb046, fetched by
models/fetch_eval_model.sh): its tokenizer.* metadata copied into a GGUF without tensors,
by tests/scripts/gen_qwen2_tokenizer_fixtures.py. small/tokenizer.json is cut from it.

Qwen2.5-Coder (Qwen/Qwen2.5-Coder-1.5B-Instruct) is released under the Apache License 2.0,
Copyright Alibaba Cloud (Qwen team).
"""

# Strings with Qwen's own added tokens (special and not) and digit runs, beside corpus.json.
EXTRA = [
    "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n    return c<|fim_middle|>",
    "<|repo_name|>etx\n<|file_sep|>src/main.c\nint main(void) { return 0; }",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 12345}}\n</tool_call>",
    "<tool_call><tool_call></tool_call>", "<tool_call", "<|vision_start|><|image_pad|><|vision_end|>",
    "<|object_ref_start|>a cat<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|>",
    "<|quad_start|><|quad_end|><|video_pad|><|vision_pad|><|fim_pad|>", "[PAD151665]", "x[PAD151700]y",
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nJanet has 16 eggs and eats 3. How many are left?<|im_end|>\n<|im_start|>assistant\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?\n#### 72",
    "3.14159 + 2.71828 = 5.85987; 1,234,567 × 89 = 109,876,463", "１２３ ０x7F ²³",
    # fullwidth "１０" and "２０" are vocabulary tokens that only Llama 3's \p{N}{1,3} reaches:
    # Qwen2's single-digit split must keep them apart
    "２０２４年１０月２０日", "１０ ２０ １０２０ x１０",
    # text NFC changes (the tokenizer.json path normalizes it; the GGUF path does not)
    "Vie\u0302\u0323t Nam, Mu\u0308nchen, \u212b \u2126", "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
    "a\u0301\u0328 a\u0328\u0301 <|im_end|>e\u0301<|im_start|>\u0301",
]


def stub_torch():
    """transformers reads GGUF metadata through modules that import torch; a stand-in lets
    it load the tokenizer without installing torch."""
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

    import transformers  # noqa: F401  (before the stub)
    if "torch" not in sys.modules:
        fake = types.ModuleType("torch")
        fake.__getattr__ = lambda n: _Any
        sys.modules["torch"] = fake
    import transformers.modeling_gguf_pytorch_utils as mg
    mg.is_torch_available = lambda: True


def hf_tokenizer_from_gguf(path):
    stub_torch()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))


def field_value(f):
    import gguf

    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if t == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    return f.parts[f.data[0]].tolist()[0]


def write_tokenizer_gguf(src, dst):
    """The GGUF's tokenizer.* keys (and architecture, name) in a GGUF with no tensors."""
    import gguf

    r = gguf.GGUFReader(src)
    arch = field_value(r.fields["general.architecture"])
    w = gguf.GGUFWriter(dst, arch)
    w.add_name(field_value(r.fields["general.name"]))
    for key, f in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        v = field_value(f)
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            sub = f.types[1]
            if sub == gguf.GGUFValueType.STRING:
                w.add_array(key, v)
            else:
                w.add_key_value(key, v, t, sub_type=sub)
        else:
            w.add_key_value(key, v, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tar_xz(src, dst, arcname):
    """dst: a .tar.xz holding src as arcname, byte-identical on every run (no times, owners)."""
    info = tarfile.TarInfo(arcname)
    info.size = os.path.getsize(src)
    info.mode = 0o644
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar, open(src, "rb") as f:
        tar.addfile(info, f)
    with open(dst, "wb") as f:
        f.write(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))


def small_tokenizer_json(hf_json, n_keep=4096):
    """The converted tokenizer.json cut to ids < n_keep and the merges among them, the added
    tokens renumbered to follow."""
    j = json.loads(hf_json)
    vocab = {t: i for t, i in j["model"]["vocab"].items() if i < n_keep}
    merges = []
    for m in j["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ")
        if a in vocab and b in vocab and a + b in vocab:
            merges.append([a, b])
    added = []
    for k, a in enumerate(j["added_tokens"]):
        a = dict(a)
        a["id"] = n_keep + k
        added.append(a)
    j["normalizer"] = {"type": "NFC"}
    j["model"]["vocab"] = vocab
    j["model"]["merges"] = merges
    j["added_tokens"] = added
    return j


def render_chats(template, other_template=None):
    """The conversations rendered with template; other_template (the 0.5B model's, whose
    tools text differs) must render them the same."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    tpl = env.from_string(template)
    other = env.from_string(other_template) if other_template else None
    convs = [c for c in base.CONVERSATIONS if c] + [
        [{"role": "user", "content": "What is 6*7?"}, {"role": "tool", "content": "42"},
         {"role": "tool", "content": "{\"ok\": true}"}, {"role": "assistant", "content": "42."},
         {"role": "tool", "content": "last"}],
        [{"role": "system", "content": "S"}, {"role": "tool", "content": "t"}, {"role": "system", "content": "again"}],
    ]
    out = []
    for msgs in convs:
        for gen in (True, False):
            text = tpl.render(messages=msgs, add_generation_prompt=gen, tools=None)
            if other:
                assert other.render(messages=msgs, add_generation_prompt=gen, tools=None) == text, msgs
            out.append({"template": "qwen2.5", "add_generation_prompt": gen, "messages": msgs, "expected": text})
    try:  # the template fails on an empty conversation; etx refuses it (tested in C)
        tpl.render(messages=[], add_generation_prompt=True)
        raise SystemExit("the Qwen2.5 template rendered an empty conversation: update chat_template.c")
    except Exception as e:  # jinja2.exceptions.UndefinedError
        print("empty conversation:", type(e).__name__)
    return out


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def llamacpp_check(args):
    """llama.cpp's ids (llama-cpp-python, vocab only) for the committed strings, from the
    model's GGUF and from the tensor-free fixture, compared with expected.json."""
    from llama_cpp import Llama

    with open(os.path.join(TOKFIX, "corpus.json"), encoding="utf-8") as f:
        strings = json.load(f)
    with open(os.path.join(OUT, "extra.json"), encoding="utf-8") as f:
        strings += json.load(f)
    with open(os.path.join(OUT, "expected.json"), encoding="utf-8") as f:
        expected = json.load(f)["ids"]
    report = []
    with tempfile.TemporaryDirectory() as d:
        with tarfile.open(os.path.join(OUT, "tokenizer.gguf.tar.xz")) as tar:
            tar.extract("tokenizer.gguf", d)
        for name, path in (("model GGUF", args.gguf), ("tokenizer.gguf", os.path.join(d, "tokenizer.gguf"))):
            llm = Llama(model_path=path, vocab_only=True, verbose=False)
            lines = []
            for i, (s, want) in enumerate(zip(strings, expected)):
                got = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
                if got != want:
                    lines.append(f"DIFF {i} {s!r}\n  hf:        {want}\n  llama.cpp: {got}")
            head = f"{name}: llama.cpp vs transformers (expected.json), {len(strings)} strings: {len(lines)} differ"
            print(head)
            report += [head] + lines
    with open(os.path.join(OUT, "llamacpp_crosscheck.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(report) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models", "cache", "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf"))
    ap.add_argument("--small-gguf", default=os.path.join(ROOT, "models", "cache",
                                                         "Qwen2.5-Coder-0.5B-Instruct-AWQ.Q4_K_M.gguf"),
                    help="the 0.5B model (fetch_eval_model.sh --small), if present: its chat template must "
                         "render the conversations the same")
    ap.add_argument("--llamacpp-check", action="store_true", help="only compare llama.cpp with the committed ids")
    args = ap.parse_args()
    if args.llamacpp_check:
        llamacpp_check(args)
        return
    from tokenizers import Tokenizer

    os.makedirs(os.path.join(OUT, "small"), exist_ok=True)
    with open(os.path.join(TOKFIX, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    strings = corpus + EXTRA
    write_json(os.path.join(OUT, "extra.json"), EXTRA)

    tmp = tempfile.TemporaryDirectory()
    fixture = os.path.join(tmp.name, "tokenizer.gguf")
    write_tokenizer_gguf(args.gguf, fixture)
    write_tar_xz(fixture, os.path.join(OUT, "tokenizer.gguf.tar.xz"), "tokenizer.gguf")
    with open(os.path.join(OUT, "LICENSE-NOTE"), "w") as f:
        f.write(NOTE)

    hf = hf_tokenizer_from_gguf(args.gguf).backend_tokenizer
    expected = base.encode_all(hf, strings)
    # the tensor-free fixture must be the same tokenizer as the model file
    again = base.encode_all(hf_tokenizer_from_gguf(fixture).backend_tokenizer, strings)
    assert again == expected, "the tokenizer-only GGUF does not tokenize as the model's GGUF"
    write_json(os.path.join(OUT, "expected.json"), expected)
    print(f"qwen2: {len(strings)} strings ({len(corpus)} from corpus.json), "
          f"{sum(len(x) for x in expected['ids'])} ids, {len(expected['decoded'])} decode differently")

    # the Llama 3 vocabulary under the Qwen2 pre-tokenizer
    llama3 = json.loads(Tokenizer.from_file(os.path.join(TOKFIX, "llama3", "tokenizer.json")).to_str())
    llama3["pre_tokenizer"] = json.loads(hf.to_str())["pre_tokenizer"]
    llama3["model"]["ignore_merges"] = False
    mixed = Tokenizer.from_str(json.dumps(llama3))
    write_json(os.path.join(OUT, "expected_llama3_vocab.json"), base.encode_all(mixed, strings))

    small = small_tokenizer_json(hf.to_str())
    path = os.path.join(OUT, "small", "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(small, f, ensure_ascii=False, separators=(",", ":"))
    write_json(os.path.join(OUT, "expected_small.json"), base.encode_all(Tokenizer.from_file(path), strings))

    other = base.chatml_template(args.small_gguf) if os.path.exists(args.small_gguf) else None
    write_json(os.path.join(OUT, "chat.json"), render_chats(base.chatml_template(args.gguf), other))
    print("chat: the 0.5B model's template renders the same" if other else "chat: no 0.5B model to compare")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
