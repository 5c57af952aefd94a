#!/usr/bin/env python3
"""qwen2_as_llama.py — rewrites a qwen2 GGUF (e.g. Qwen2.5-Coder-1.5B-Instruct Q4_K_M) as a
`llama` GGUF with the same matrices, byte for byte, for SPEED measurements only, while
etx cannot yet load the qwen2 architecture (another branch adds it).

What changes: general.architecture qwen2 -> llama, every qwen2.* key renamed llama.*, the
Q/K/V bias tensors dropped, tokenizer.ggml.pre set to smollm (a byte-level BPE both etx and
llama.cpp know). The result is NOT the model:
without the biases, and with Q/K rows read as llama.cpp's permuted Llama layout (qwen2
stores them in the rotate-half layout), its outputs are meaningless. The work per token
(every weight matrix in its Q4_K / Q6_K blocks, the same shapes) is the model's, so decode
speed of etx and llama.cpp on this file, or llama.cpp on the original, compare fairly.

    pip install numpy gguf
    python3 benchmarks/qwen2_as_llama.py IN.gguf OUT.gguf
"""
import sys

import gguf
from gguf import GGUFValueType as VT


def main():
    src, dst = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, "llama")
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        key = "llama." + name[len("qwen2."):] if name.startswith("qwen2.") else name
        if key == "tokenizer.ggml.pre":
            w.add_string(key, "smollm")
            continue
        vtype = f.types[0]
        if vtype == VT.ARRAY:
            sub = f.types[1]
            if sub == VT.STRING:
                vals = [bytes(f.parts[i]).decode("utf-8", errors="surrogateescape") for i in f.data]
            else:
                vals = [f.parts[i].tolist()[0] for i in f.data]
            w.add_array(key, vals)
        elif vtype == VT.STRING:
            w.add_string(key, bytes(f.parts[f.data[0]]).decode("utf-8"))
        else:
            w.add_key_value(key, f.parts[f.data[0]].tolist()[0], vtype)
    for t in r.tensors:
        if t.name.endswith(".bias"):
            continue
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
