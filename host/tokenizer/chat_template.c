/*
 * chat_template.c — the chat templates etx renders, written out in C so that no Jinja
 * engine is needed, and checked byte for byte against the real Jinja templates
 * (tests/fixtures/tokenizer/chat.json, rendered with jinja2 the way transformers does).
 *
 * CHAT_LLAMA3: Meta Llama 3 Instruct's template (tokenizer_config.json of Llama 3):
 *   <|begin_of_text|> before the first message; each message is
 *   <|start_header_id|>ROLE<|end_header_id|>\n\n + trim(CONTENT) + <|eot_id|>,
 *   where trim is Python's str.strip() (Jinja's `trim` filter). The original template
 *   writes the assistant header unconditionally; etx writes it only when
 *   add_generation_prompt is set (as the Llama 3.1+ templates do), so that a finished
 *   conversation can be rendered too.
 * CHAT_CHATML: SmolLM2-Instruct's template (GGUF tokenizer.chat_template): when the
 *   first message is not a system message, a default system message comes first; each
 *   message is <|im_start|>ROLE\nCONTENT<|im_end|>\n (content untrimmed); the generation
 *   prompt is <|im_start|>assistant\n.
 * CHAT_QWEN25: Qwen2.5's template (Qwen2.5 and Qwen2.5-Coder Instruct, GGUF
 *   tokenizer.chat_template), without tools: ChatML whose default system message is
 *   Qwen's own; a first system message replaces it. user, assistant and later system
 *   messages are <|im_start|>ROLE\nCONTENT<|im_end|>\n; a run of consecutive tool
 *   messages becomes one user turn, each content wrapped in
 *   \n<tool_response>\n ... \n</tool_response>. The Jinja template silently drops
 *   messages of any other role and fails on an empty conversation; etx refuses both
 *   with an error instead of losing a message.
 */
#include "tokenizer/tokenizer.h"

#include <string.h>

#include "common.h"

static const char SMOLLM_DEFAULT_SYSTEM[] =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

static const char QWEN25_DEFAULT_SYSTEM[] =
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

// A growable output string.
typedef struct {
    char* s;
    size_t n, cap;
} Buf;

static void buf_add(Buf* b, const char* s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void buf_str(Buf* b, const char* s) { buf_add(b, s, strlen(s)); }

// Python's str.isspace() for one code point.
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

// Code point starting at s[i] (1 to 4 bytes, *len); an invalid byte reads as itself.
static uint32_t cp_at(const unsigned char* s, size_t n, size_t i, size_t* len) {
    unsigned char c = s[i];
    size_t k = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (i + k > n) k = 1;
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1Fu) : k == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t j = 1; j < k; j++) v = v << 6 | (s[i + j] & 0x3Fu);
    *len = k;
    return v;
}

// Appends s with leading and trailing whitespace removed, as Python's str.strip() does.
static void buf_trimmed(Buf* b, const char* text) {
    const unsigned char* s = (const unsigned char*)text;
    size_t n = strlen(text), start = 0, end = 0, len;
    while (start < n && py_isspace(cp_at(s, n, start, &len))) start += len;
    for (size_t i = start; i < n; i += len) // end = just past the last non-space character
        if (!py_isspace(cp_at(s, n, i, &len))) end = i + len;
    if (end > start) buf_add(b, text + start, end - start);
}

static void render_llama3(Buf* b, const etx_chat_message* msgs, int n, int add_generation_prompt) {
    for (int i = 0; i < n; i++) {
        if (i == 0) buf_str(b, "<|begin_of_text|>");
        buf_str(b, "<|start_header_id|>");
        buf_str(b, msgs[i].role);
        buf_str(b, "<|end_header_id|>\n\n");
        buf_trimmed(b, msgs[i].content);
        buf_str(b, "<|eot_id|>");
    }
    if (add_generation_prompt) buf_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_chatml(Buf* b, const etx_chat_message* msgs, int n, int add_generation_prompt) {
    for (int i = 0; i < n; i++) {
        if (i == 0 && strcmp(msgs[0].role, "system") != 0) buf_str(b, SMOLLM_DEFAULT_SYSTEM);
        buf_str(b, "<|im_start|>");
        buf_str(b, msgs[i].role);
        buf_str(b, "\n");
        buf_str(b, msgs[i].content);
        buf_str(b, "<|im_end|>\n");
    }
    if (add_generation_prompt) buf_str(b, "<|im_start|>assistant\n");
}

static int is_role(const etx_chat_message* m, const char* role) { return strcmp(m->role, role) == 0; }

static void render_qwen25(Buf* b, const etx_chat_message* msgs, int n, int add_generation_prompt) {
    int first_is_system = is_role(&msgs[0], "system");
    if (first_is_system) {
        buf_str(b, "<|im_start|>system\n");
        buf_str(b, msgs[0].content);
        buf_str(b, "<|im_end|>\n");
    } else {
        buf_str(b, QWEN25_DEFAULT_SYSTEM);
    }
    for (int i = first_is_system; i < n; i++) {
        if (is_role(&msgs[i], "tool")) {
            if (i == 0 || !is_role(&msgs[i - 1], "tool")) buf_str(b, "<|im_start|>user");
            buf_str(b, "\n<tool_response>\n");
            buf_str(b, msgs[i].content);
            buf_str(b, "\n</tool_response>");
            if (i == n - 1 || !is_role(&msgs[i + 1], "tool")) buf_str(b, "<|im_end|>\n");
            continue;
        }
        buf_str(b, "<|im_start|>"); // user, assistant, system (checked by qwen25_check)
        buf_str(b, msgs[i].role);
        buf_str(b, "\n");
        buf_str(b, msgs[i].content);
        buf_str(b, "<|im_end|>\n");
    }
    if (add_generation_prompt) buf_str(b, "<|im_start|>assistant\n");
}

// What Qwen2.5's template cannot render: no messages at all, or a role it would drop.
static etx_status qwen25_check(const etx_chat_message* msgs, int n) {
    if (n == 0) return etx_error(ETX_ERR_INVALID_ARG, "chat: the qwen2.5 template needs at least one message");
    for (int i = 0; i < n; i++)
        if (!is_role(&msgs[i], "system") && !is_role(&msgs[i], "user") && !is_role(&msgs[i], "assistant") &&
            !is_role(&msgs[i], "tool"))
            return etx_error(ETX_ERR_INVALID_ARG,
                             "chat: message %d has role '%s', which the qwen2.5 template does not render "
                             "(system, user, assistant, tool)",
                             i, msgs[i].role);
    return etx_ok();
}

etx_status chat_template_apply(ChatTemplate c, const etx_chat_message* msgs, int n, int add_generation_prompt,
                               char** out) {
    *out = NULL;
    if (c != CHAT_LLAMA3 && c != CHAT_CHATML && c != CHAT_QWEN25)
        return etx_error(ETX_ERR_UNSUPPORTED, "chat template '%s' cannot render messages", chat_template_name(c));
    if (n < 0 || (n > 0 && !msgs)) return etx_error(ETX_ERR_INVALID_ARG, "chat: bad message array (n = %d)", n);
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return etx_error(ETX_ERR_INVALID_ARG, "chat: message %d has no %s", i, msgs[i].role ? "content" : "role");
    if (c == CHAT_QWEN25) ETX_TRY(qwen25_check(msgs, n));
    Buf b = {0};
    buf_add(&b, "", 0);
    if (c == CHAT_LLAMA3) render_llama3(&b, msgs, n, add_generation_prompt);
    else if (c == CHAT_QWEN25) render_qwen25(&b, msgs, n, add_generation_prompt);
    else render_chatml(&b, msgs, n, add_generation_prompt);
    *out = b.s;
    return etx_ok();
}

ChatTemplate chat_template_detect(const Tokenizer* t) {
    if (tokenizer_find(t, "<|start_header_id|>") >= 0 && tokenizer_find(t, "<|end_header_id|>") >= 0 &&
        tokenizer_find(t, "<|eot_id|>") >= 0)
        return CHAT_LLAMA3;
    int chatml = tokenizer_find(t, "<|im_start|>") >= 0 && tokenizer_find(t, "<|im_end|>") >= 0;
    // Qwen2.5's vocabulary (also Qwen2.5-Coder's) has the vision and FIM tokens; Qwen3's adds
    // <think>, and its template (thinking, no default system message) is not one etx renders.
    if (chatml && tokenizer_find(t, "<|object_ref_start|>") >= 0 && tokenizer_find(t, "<|fim_prefix|>") >= 0)
        return tokenizer_find(t, "<think>") >= 0 ? CHAT_NONE : CHAT_QWEN25;
    if (chatml) return CHAT_CHATML;
    return CHAT_NONE;
}

const char* chat_template_name(ChatTemplate c) {
    switch (c) {
    case CHAT_LLAMA3: return "llama3";
    case CHAT_CHATML: return "chatml";
    case CHAT_QWEN25: return "qwen2.5";
    case CHAT_NONE: return "none";
    }
    return "none";
}
