#!/usr/bin/env python3
"""gen_fuzz_corpus.py — writes the seed corpora of the libFuzzer targets (tests/fuzz/).

    python3 tests/scripts/gen_fuzz_corpus.py OUT_DIR [MODEL.gguf]

writes OUT_DIR/fuzz_<target>/ for every target, from the project's own material:
the fixtures (tests/fixtures: GGUF and safetensors models, config.json, tokenizer.json,
the tokenizer corpus and chat conversations, policy files, the GSM8K sample), the JSON
examples of the docs (policy files, sweep grids, data lines), and the default model's
GGUF header and tensor table (MODEL, default models/cache/SmolLM2-135M-Instruct.Q4_1.gguf;
skipped with a note when it has not been fetched).

The seeds are generated, not committed: they are copies and cuts of files that are
already committed (or fetched), so generating them keeps them in step with the fixtures
and keeps the repository small. The output is deterministic. Only the standard library
is needed (CI runs this before the fuzz pass: tests/fuzz/run_fuzz.sh).
"""
import hashlib
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures")


def write_seed(out, target, data, name=None):
    """Writes one seed (bytes or str) as OUT/fuzz_<target>/<name or content hash>."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.join(out, "fuzz_" + target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture_files(name):
    """Every file called `name` under tests/fixtures, sorted."""
    hits = []
    for dirpath, _, files in os.walk(FIX):
        if name in files:
            hits.append(os.path.join(dirpath, name))
    return sorted(hits)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def doc_json_blocks():
    """The JSON examples of docs/*.md and README.md: indented blocks that parse as JSON."""
    blocks = []
    paths = [os.path.join(ROOT, "README.md")]
    docs = os.path.join(ROOT, "docs")
    paths += [os.path.join(docs, f) for f in sorted(os.listdir(docs)) if f.endswith(".md")]
    for p in paths:
        lines = read(p).decode("utf-8").splitlines()
        for i, line in enumerate(lines):
            if not re.match(r"^ {4,}\{", line):
                continue
            text = ""
            for j in range(i, min(i + 12, len(lines))):
                text += lines[j].strip() + "\n"
                try:
                    blocks.append(json.loads(text))
                    break
                except ValueError:
                    continue
    return blocks


# ---------------------------------------------------------------------------
# GGUF: the fixtures whole; the default model's header and tensor table, its tokenizer
# arrays shortened, and plain truncations of the file

GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_header(path, keep=512):
    """The header and tensor table of a GGUF file with arrays cut to `keep` elements
    (the data section left out); None when the file is not GGUF."""
    with open(path, "rb") as f:
        head = f.read(64 << 20)  # the default model's header is a few MB
    if head[:4] != b"GGUF":
        return None
    pos = 4
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", head, pos)
    pos += 20
    out = bytearray(head[:24])

    def rd_str(p):
        (n,) = struct.unpack_from("<Q", head, p)
        return p + 8 + n

    for _ in range(n_kv):
        start = pos
        pos = rd_str(pos)  # key
        (vtype,) = struct.unpack_from("<I", head, pos)
        pos += 4
        if vtype == 8:
            pos = rd_str(pos)
            out += head[start:pos]
        elif vtype == 9:
            (etype, n) = struct.unpack_from("<IQ", head, pos)
            body = pos + 12
            items = []
            p = body
            for k in range(n):
                q = rd_str(p) if etype == 8 else p + GGUF_SCALAR[etype]
                if k < keep:
                    items.append(head[p:q])
                p = q
            pos = p
            out += head[start:body - 12] + struct.pack("<IQ", etype, len(items)) + b"".join(items)
        else:
            pos += GGUF_SCALAR[vtype]
            out += head[start:pos]
    table_start = pos
    for _ in range(n_tensors):
        pos = rd_str(pos)
        (nd,) = struct.unpack_from("<I", head, pos)
        pos += 4 + 8 * nd + 4 + 8
    out += head[table_start:pos]
    return bytes(out)


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    """One metadata pair: vtype 4 u32, 6 f32, 8 string, (9, etype) array of etype."""
    out = gguf_str(key)
    if vtype == 8:
        return out + struct.pack("<I", 8) + gguf_str(value)
    if vtype == 4:
        return out + struct.pack("<II", 4, value)
    if vtype == 6:
        return out + struct.pack("<If", 6, value)
    etype = vtype[1]
    items = b"".join(gguf_str(v) if etype == 8 else struct.pack("<i", v) for v in value)
    return out + struct.pack("<IIQ", 9, etype, len(value)) + items


def mini_gguf():
    """A valid one-layer Llama GGUF of about 12 KB (dim 32, 2 heads, 1 KV head, FFN 32,
    vocab 32), one matrix per block type etx reads, and a byte-level BPE tokenizer with
    one merge and ChatML tokens: a small seed the whole GGUF model loader accepts, so the
    fuzzer mutates a complete model at a hundredth of tiny.gguf's cost per execution."""
    dim, vocab = 32, 32
    # tokens: byte-level symbols of a few bytes, one merge result, special tokens
    tokens = ["a", "b", "c", "\u0120", "ab", "<|im_start|>", "<|im_end|>",
              "<|endoftext|>"]
    tokens += [chr(ord("d") + i) for i in range(vocab - len(tokens))]
    types = [3 if t.startswith("<|") else 1 for t in tokens]
    kvs = [gguf_kv("general.architecture", 8, "llama"),
           gguf_kv("llama.embedding_length", 4, dim), gguf_kv("llama.feed_forward_length", 4, dim),
           gguf_kv("llama.block_count", 4, 1), gguf_kv("llama.attention.head_count", 4, 2),
           gguf_kv("llama.attention.head_count_kv", 4, 1), gguf_kv("llama.context_length", 4, 64),
           gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5), gguf_kv("llama.rope.freq_base", 6, 10000.0),
           gguf_kv("tokenizer.ggml.model", 8, "gpt2"), gguf_kv("tokenizer.ggml.pre", 8, "smollm"),
           gguf_kv("tokenizer.ggml.tokens", (9, 8), tokens), gguf_kv("tokenizer.ggml.merges", (9, 8), ["a b"]),
           gguf_kv("tokenizer.ggml.token_type", (9, 5), types),
           gguf_kv("tokenizer.ggml.bos_token_id", 4, 5), gguf_kv("tokenizer.ggml.eos_token_id", 4, 6)]
    # ggml types: (id, elements per block, bytes per block)
    F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16 = (0, 1, 4), (1, 1, 2), (2, 32, 18), (3, 32, 20), (6, 32, 22), \
        (7, 32, 24), (8, 32, 34), (30, 1, 2)
    tensors = [("token_embd.weight", [dim, vocab], Q8_0), ("output_norm.weight", [dim], F32),
               ("blk.0.attn_norm.weight", [dim], F32), ("blk.0.attn_q.weight", [dim, dim], Q4_0),
               ("blk.0.attn_k.weight", [dim, 16], Q4_1), ("blk.0.attn_v.weight", [dim, 16], Q5_0),
               ("blk.0.attn_output.weight", [dim, dim], Q8_0), ("blk.0.ffn_norm.weight", [dim], F16),
               ("blk.0.ffn_gate.weight", [dim, dim], BF16), ("blk.0.ffn_up.weight", [dim, dim], Q5_1),
               ("blk.0.ffn_down.weight", [dim, dim], F32)]
    infos, data = b"", b""
    for name, ne, (tid, be, bb) in tensors:
        n = 1
        for d in ne:
            n *= d
        blocks = n // be
        if tid == 0:
            payload = b"".join(struct.pack("<f", ((i * 37) % 17 - 8) / 64.0) for i in range(n))
        elif be == 1:  # f16 / bf16: small finite values
            payload = b"".join(struct.pack("<H", 0x3C00 if tid == 1 else 0x3F80) for i in range(n))
        else:  # quantized blocks: an f16 scale (and min) of 1/64, then patterned quants
            head = struct.pack("<H", 0x2400) * (2 if tid in (3, 7) else 1)
            payload = b"".join(head + bytes((i * 29 + k * 7) % 256 for k in range(bb - len(head)))
                               for i in range(blocks))
        pad = (-len(data)) % 32
        data += b"\0" * pad
        infos += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", tid, len(data))
        data += payload
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    return head + b"\0" * ((-len(head)) % 32) + data


def gen_gguf(out, model):
    write_seed(out, "gguf", mini_gguf(), "mini-llama.gguf")
    for p in sorted(os.listdir(os.path.join(FIX, "loader"))):
        if p.endswith(".gguf"):
            write_seed(out, "gguf", read(os.path.join(FIX, "loader", p)), p)
    if not model or not os.path.exists(model):
        print("gen_fuzz_corpus: %s not found; no seeds from the default model" % model, file=sys.stderr)
        return
    hdr = gguf_header(model)
    write_seed(out, "gguf", hdr, "smollm2-header-vocab512.gguf")
    whole = read(model)[: 1 << 16]
    for n in (24, 4096, 65536):
        write_seed(out, "gguf", whole[:n], "smollm2-first-%d.gguf" % n)


# ---------------------------------------------------------------------------
# safetensors: each fixture file rebuilt with its small tensors only (a few KB, valid),
# its header with the data cut short, and the index files

ST_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors_small(path, max_bytes=1024):
    data = read(path)
    (n,) = struct.unpack_from("<Q", data, 0)
    hdr = json.loads(data[8:8 + n])
    body = data[8 + n:]
    new_hdr, new_body = {}, b""
    for name in sorted(hdr):
        t = hdr[name]
        if name == "__metadata__":
            new_hdr[name] = t
            continue
        b, e = t["data_offsets"]
        if e - b > max_bytes:
            continue
        new_hdr[name] = {"dtype": t["dtype"], "shape": t["shape"],
                         "data_offsets": [len(new_body), len(new_body) + e - b]}
        new_body += body[b:e]
    text = json.dumps(new_hdr).encode()
    return struct.pack("<Q", len(text)) + text + new_body, data[:8 + n + 64]


def gen_safetensors(out):
    for dirpath, _, files in sorted(os.walk(FIX)):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            tag = os.path.basename(dirpath) + "-" + f
            if f.endswith(".safetensors"):
                small, cut = safetensors_small(p)
                write_seed(out, "safetensors", small, tag + ".small")
                write_seed(out, "safetensors", cut, tag + ".cut")
            elif f == "model.safetensors.index.json":
                write_seed(out, "safetensors", read(p), tag)


# ---------------------------------------------------------------------------
# JSON files of the fixtures and docs

def gen_json_files(out, blocks):
    for p in fixture_files("config.json"):
        write_seed(out, "hf_config", read(p), os.path.basename(os.path.dirname(p)) + ".json")
    for p in fixture_files("tokenizer.json"):
        if os.path.getsize(p) > 64 << 10:  # the full-size vocabularies (MB) would slow every execution
            continue
        write_seed(out, "tokenizer_json", read(p), os.path.basename(os.path.dirname(p)) + ".json")
    pol_dir = os.path.join(FIX, "policy")
    for f in sorted(os.listdir(pol_dir)):
        if f.endswith(".json"):
            write_seed(out, "policy", read(os.path.join(pol_dir, f)), f)
            write_seed(out, "sweep_grid", json.dumps({"base": json.loads(read(os.path.join(pol_dir, f)))}))
    for b in blocks:
        if not isinstance(b, dict):
            continue
        if "grid" in b:
            write_seed(out, "sweep_grid", json.dumps(b, indent=1))
        elif "id" in b:
            write_seed(out, "eval_jsonl", json.dumps(b) + "\n")
        elif "prompt" in b or "messages" in b:  # docs/serve.md: a request body (first byte: endpoint)
            for flags in range(4):
                write_seed(out, "serve_request", bytes([flags]) + json.dumps(b).encode("utf-8"))
        else:
            write_seed(out, "policy", json.dumps(b, indent=1))
    write_seed(out, "sweep_grid", json.dumps({"policy": "sample", "grid": {"temperature": [0.1, 1, 2], "top_k": [1, 40],
                                                                           "seed": [1, 18446744073709551615]}}))


# ---------------------------------------------------------------------------
# text: the tokenizer corpus and conversations, eval data lines, result lines, GSM8K

def gen_text(out):
    corpus = json.loads(read(os.path.join(FIX, "tokenizer", "corpus.json")))
    added = json.loads(read(os.path.join(FIX, "tokenizer", "expected_added.json")))
    chats = json.loads(read(os.path.join(FIX, "tokenizer", "chat.json")))
    strings = [s for s in corpus if isinstance(s, str)] + list(added["texts"])
    for i, s in enumerate(strings):
        write_seed(out, "tokenizer_text", bytes([i % 3]) + s.encode("utf-8"))
    for i, c in enumerate(chats):
        text = "\0".join(m["content"] for m in c["messages"])
        write_seed(out, "tokenizer_text", bytes([i % 3]) + text.encode("utf-8"))
    # ids: SmolLM2's ids of the corpus (tokenizer 0), the added-token fixture's (1)
    def ids_seed(which, ids):
        return bytes([which]) + b"".join(struct.pack("<H", i + 16) for i in ids if 0 <= i + 16 < 65536)
    smol = json.loads(read(os.path.join(FIX, "tokenizer", "expected_smollm2.json")))
    for ids in smol["ids"][:40]:
        write_seed(out, "tokenizer_ids", ids_seed(0, ids[:256]))
        # the same ids as text: first byte 0x81 (bit 7 set: cli_parse_ids; 129 % 3 = 0: SmolLM2)
        write_seed(out, "tokenizer_ids", bytes([0x81]) + ", ".join(map(str, ids[:256])).encode())
    for ids in added["ids"]:
        write_seed(out, "tokenizer_ids", ids_seed(1, ids))
    write_seed(out, "tokenizer_ids", ids_seed(2, list(range(0, 400, 7))))

    # eval data: the GSM8K sample whole and line by line, and the other shapes of a line
    sample = read(os.path.join(FIX, "eval", "gsm8k_sample.jsonl"))
    write_seed(out, "eval_jsonl", sample, "gsm8k_sample.jsonl")
    lines = sample.decode("utf-8").splitlines()
    for line in lines:
        write_seed(out, "eval_jsonl", line + "\n")
    write_seed(out, "eval_jsonl", "\n".join([
        '{"id": "a", "prompt": "Hello"}',
        '{"id": 7, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}',
        '{"id": "a", "prompt": "duplicate id"}',
        '{"id": 1.5, "prompt": "not an integer id"}',
        '{"id": "r", "prompt": "x", "reference": "#### 3"}',
        "not json", "", "   ", '{"id": "last", "prompt": "no newline"}']))

    # results files (batch_request.c's line format), whole and cut mid-line
    branches = {"greedy": 3, "sample": 0, "argmax": 1, "pause": 0, "helv": 0, "lehv": 2, "hehv": 1, "adaptive": 0}
    res = []
    for i, line in enumerate(lines[:4]):
        item = json.loads(line)
        r = {"id": item["id"], "completion": "The answer is 18.\n#### 18", "tokens": 9, "finish": "eos",
             "branches": branches, "score": {"strict": i % 2, "flexible": 1}, "extracted": {"strict": "18"}}
        res.append(json.dumps(r))
        res.append(json.dumps(dict({"combo": i % 3}, **r)))
    text = "\n".join(res) + "\n"
    write_seed(out, "resume", text, "results.jsonl")
    write_seed(out, "resume", text[: len(text) * 2 // 3], "results-truncated.jsonl")
    write_seed(out, "resume", '{"id": "s", "tokens": 1}\nnot json\n{"id": 2, "combo": 1e300}\n{"id": ', "odd.jsonl")

    # GSM8K: completion NUL reference
    for line in lines:
        ans = json.loads(line).get("answer", "")
        completion = ans.split("####")[0] + "The answer is " + ans.split("####")[-1].strip() + "."
        write_seed(out, "gsm8k", completion.encode() + b"\0" + ans.encode())
        write_seed(out, "gsm8k", ans.encode() + b"\0" + ans.encode())
    write_seed(out, "gsm8k", b"#### -1,234.50\0#### $1234.5")


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    out = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "models", "cache",
                                                               "SmolLM2-135M-Instruct.Q4_1.gguf")
    gen_gguf(out, model)
    gen_safetensors(out)
    gen_json_files(out, doc_json_blocks())
    gen_text(out)
    total = 0
    for d in sorted(os.listdir(out)):
        files = os.listdir(os.path.join(out, d))
        size = sum(os.path.getsize(os.path.join(out, d, f)) for f in files)
        total += size
        print("gen_fuzz_corpus: %-22s %4d seeds %8d bytes" % (d, len(files), size))
    print("gen_fuzz_corpus: %d bytes in all" % total)


if __name__ == "__main__":
    main()
