#!/usr/bin/env python3
"""gen_qwen3_chat_fixture.py — renders the conversations of tests/fixtures/tokenizer/qwen3/chat.json
with Qwen3's own chat template (tests/fixtures/tokenizer/qwen3/chat_template.jinja, the
template Qwen3 ships in its tokenizer_config.json; see LICENSE-NOTE there) through jinja2,
the way transformers' apply_chat_template renders it (a sandboxed environment with
trim_blocks and lstrip_blocks; no tools, enable_thinking left undefined, i.e. the
template's default: thinking on). host/tokenizer/chat_template.c's CHAT_QWEN3 must give
the same bytes (tests/tokenizer/test_tokenizer.c, test_chat_templates).

usage: python3 tests/scripts/gen_qwen3_chat_fixture.py     (needs: pip install jinja2)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "tokenizer", "qwen3")
sys.path.insert(0, HERE)
import gen_tokenizer_fixtures as base  # noqa: E402  (CONVERSATIONS)

THINK = "<think>\nFirst I add.\nThen I check.\n</think>\n\n"
# Conversations that exercise Qwen3's reasoning handling: <think> blocks before and after
# the last user query, tool turns after it, tool results sent as user messages, several
# think tags, newlines around them.
QWEN3 = [
    [{"role": "user", "content": "q1"}, {"role": "assistant", "content": THINK + "a1"},
     {"role": "user", "content": "q2"}],
    [{"role": "user", "content": "q1"}, {"role": "assistant", "content": THINK + "a1"},
     {"role": "user", "content": "q2"}, {"role": "assistant", "content": THINK + "a2"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
     {"role": "assistant", "content": "no reasoning here"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "calling"},
     {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"},
     {"role": "assistant", "content": "<think>tools said r</think>\n\nfinal"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>r0</think>mid"},
     {"role": "user", "content": "<tool_response>\nx\n</tool_response>"},
     {"role": "assistant", "content": "<think>\n\nr1\n\n</think>\n\n\nend\n"}],
    [{"role": "user", "content": "q"},
     {"role": "assistant", "content": "pre<think>a<think>b\n</think>c</think>\nd"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "</think>only a close tag"},
     {"role": "system", "content": "late system"}, {"role": "user", "content": "again"}],
    [{"role": "assistant", "content": "<think>x</think>y"}],
]


def main():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    with open(os.path.join(FIX, "chat_template.jinja"), encoding="utf-8") as f:
        tpl = env.from_string(f.read())
    out = []
    for msgs in [c for c in base.CONVERSATIONS if c] + QWEN3:
        for gen in (True, False):
            text = tpl.render(messages=msgs, add_generation_prompt=gen, tools=None)
            out.append({"template": "qwen3", "add_generation_prompt": gen, "messages": msgs, "expected": text})
    try:  # the template fails on an empty conversation (messages[0]); etx refuses it (tested in C)
        tpl.render(messages=[], add_generation_prompt=True, tools=None)
        raise SystemExit("the Qwen3 template rendered an empty conversation: update chat_template.c")
    except Exception as e:  # jinja2.exceptions.UndefinedError
        if isinstance(e, SystemExit):
            raise
        print("empty conversation:", type(e).__name__)
    with open(os.path.join(FIX, "chat.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %d cases" % len(out))


if __name__ == "__main__":
    main()
