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
 * CHAT_QWEN3: Qwen3's template (tests/fixtures/tokenizer/qwen3/chat_template.jinja),
 *   without tools and with thinking on (enable_thinking undefined, the template's
 *   default): no default system message (a first system message is written first); user
 *   and later system messages as ChatML; tool turns as Qwen2.5's. An assistant message
 *   holding "</think>" is split: its content is what follows the last "</think>"
 *   (leading newlines dropped), its reasoning what precedes the first "</think>" after
 *   the last "<think>" before it (newlines trimmed). Assistant messages up to the last
 *   real user query (a user message that is not a whole <tool_response> block) are
 *   written with their content only; later ones (the agent's turns since that query)
 *   keep their reasoning as "<think>\nR\n</think>\n\n" before the content, and the
 *   last message, when it is the assistant's, always gets that block (empty when it has
 *   no reasoning). The generation prompt is "<|im_start|>assistant\n". Empty
 *   conversations and other roles are refused, as for Qwen2.5.
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

static void render_tool_turn(Buf* b, const etx_chat_message* msgs, int n, int i);

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
            render_tool_turn(b, msgs, n, i);
            continue;
        }
        buf_str(b, "<|im_start|>"); // user, assistant, system (checked by qwen_check)
        buf_str(b, msgs[i].role);
        buf_str(b, "\n");
        buf_str(b, msgs[i].content);
        buf_str(b, "<|im_end|>\n");
    }
    if (add_generation_prompt) buf_str(b, "<|im_start|>assistant\n");
}

// Appends s[0, n) without the newlines at its start (lstrip) and / or end (rstrip).
static void buf_strip_nl(Buf* b, const char* s, size_t n, int lstrip, int rstrip) {
    while (lstrip && n > 0 && *s == '\n') s++, n--;
    while (rstrip && n > 0 && s[n - 1] == '\n') n--;
    buf_add(b, s, n);
}

// Start of the last occurrence of pat in s[0, n), or NULL.
static const char* find_last(const char* s, size_t n, const char* pat) {
    size_t k = strlen(pat);
    for (size_t i = n >= k ? n - k + 1 : 0; i-- > 0;)
        if (memcmp(s + i, pat, k) == 0) return s + i;
    return NULL;
}

static int is_tool_response(const char* c) {
    static const char open[] = "<tool_response>", close[] = "</tool_response>";
    size_t n = strlen(c);
    return n >= sizeof open - 1 && n >= sizeof close - 1 && memcmp(c, open, sizeof open - 1) == 0 &&
           memcmp(c + n - (sizeof close - 1), close, sizeof close - 1) == 0;
}

// A tool message at i: a run of them is one user turn, each wrapped in <tool_response>.
static void render_tool_turn(Buf* b, const etx_chat_message* msgs, int n, int i) {
    if (i == 0 || !is_role(&msgs[i - 1], "tool")) buf_str(b, "<|im_start|>user");
    buf_str(b, "\n<tool_response>\n");
    buf_str(b, msgs[i].content);
    buf_str(b, "\n</tool_response>");
    if (i == n - 1 || !is_role(&msgs[i + 1], "tool")) buf_str(b, "<|im_end|>\n");
}

static void render_qwen3(Buf* b, const etx_chat_message* msgs, int n, int add_generation_prompt) {
    if (is_role(&msgs[0], "system")) {
        buf_str(b, "<|im_start|>system\n");
        buf_str(b, msgs[0].content);
        buf_str(b, "<|im_end|>\n");
    }
    int last_query = n - 1; // the last user message that is not a tool result
    for (int i = n - 1; i >= 0; i--)
        if (is_role(&msgs[i], "user") && !is_tool_response(msgs[i].content)) {
            last_query = i;
            break;
        }
    for (int i = 0; i < n; i++) {
        const char* c = msgs[i].content;
        if (is_role(&msgs[i], "user") || (is_role(&msgs[i], "system") && i > 0)) {
            buf_str(b, "<|im_start|>");
            buf_str(b, msgs[i].role);
            buf_str(b, "\n");
            buf_str(b, c);
            buf_str(b, "<|im_end|>\n");
        } else if (is_role(&msgs[i], "tool")) {
            render_tool_turn(b, msgs, n, i);
        } else if (is_role(&msgs[i], "assistant")) {
            size_t len = strlen(c);
            const char* content = c; // [content, content + clen): after the last </think>
            size_t clen = len;
            const char* r = c; // [r, r + rlen): the reasoning
            size_t rlen = 0;
            const char* close = strstr(c, "</think>");
            if (close) {
                const char* last_close = find_last(c, len, "</think>");
                content = last_close + 8, clen = (size_t)(c + len - content);
                while (clen > 0 && *content == '\n') content++, clen--;
                size_t before = (size_t)(close - c); // before the first </think>, trailing newlines off
                while (before > 0 && c[before - 1] == '\n') before--;
                const char* open = find_last(c, before, "<think>");
                r = open ? open + 7 : c;
                rlen = (size_t)(c + before - r);
                while (rlen > 0 && *r == '\n') r++, rlen--;
            }
            buf_str(b, "<|im_start|>assistant\n");
            if (i > last_query && (i == n - 1 || rlen > 0)) {
                buf_str(b, "<think>\n");
                buf_strip_nl(b, r, rlen, 1, 1);
                buf_str(b, "\n</think>\n\n");
                buf_strip_nl(b, content, clen, 1, 0);
            } else {
                buf_add(b, content, clen);
            }
            buf_str(b, "<|im_end|>\n");
        }
    }
    if (add_generation_prompt) buf_str(b, "<|im_start|>assistant\n");
}

// What the Qwen2.5 / Qwen3 templates cannot render: no messages at all, or a role they
// would drop.
static etx_status qwen_check(const etx_chat_message* msgs, int n, const char* name) {
    if (n == 0) return etx_error(ETX_ERR_INVALID_ARG, "chat: the %s template needs at least one message", name);
    for (int i = 0; i < n; i++)
        if (!is_role(&msgs[i], "system") && !is_role(&msgs[i], "user") && !is_role(&msgs[i], "assistant") &&
            !is_role(&msgs[i], "tool"))
            return etx_error(ETX_ERR_INVALID_ARG,
                             "chat: message %d has role '%s', which the %s template does not render "
                             "(system, user, assistant, tool)",
                             i, msgs[i].role, name);
    return etx_ok();
}

etx_status chat_template_apply(ChatTemplate c, const etx_chat_message* msgs, int n, int add_generation_prompt,
                               char** out) {
    *out = NULL;
    if (c != CHAT_LLAMA3 && c != CHAT_CHATML && c != CHAT_QWEN25 && c != CHAT_QWEN3)
        return etx_error(ETX_ERR_UNSUPPORTED, "chat template '%s' cannot render messages", chat_template_name(c));
    if (n < 0 || (n > 0 && !msgs)) return etx_error(ETX_ERR_INVALID_ARG, "chat: bad message array (n = %d)", n);
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return etx_error(ETX_ERR_INVALID_ARG, "chat: message %d has no %s", i, msgs[i].role ? "content" : "role");
    if (c == CHAT_QWEN25 || c == CHAT_QWEN3) ETX_TRY(qwen_check(msgs, n, chat_template_name(c)));
    Buf b = {0};
    buf_add(&b, "", 0);
    if (c == CHAT_LLAMA3) render_llama3(&b, msgs, n, add_generation_prompt);
    else if (c == CHAT_QWEN25) render_qwen25(&b, msgs, n, add_generation_prompt);
    else if (c == CHAT_QWEN3) render_qwen3(&b, msgs, n, add_generation_prompt);
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
    // <think> and </think> (its template: reasoning blocks, no default system message).
    if (chatml && tokenizer_find(t, "<|object_ref_start|>") >= 0 && tokenizer_find(t, "<|fim_prefix|>") >= 0)
        return tokenizer_find(t, "<think>") >= 0 && tokenizer_find(t, "</think>") >= 0 ? CHAT_QWEN3 : CHAT_QWEN25;
    if (chatml) return CHAT_CHATML;
    return CHAT_NONE;
}

const char* chat_template_name(ChatTemplate c) {
    switch (c) {
    case CHAT_LLAMA3: return "llama3";
    case CHAT_CHATML: return "chatml";
    case CHAT_QWEN25: return "qwen2.5";
    case CHAT_QWEN3: return "qwen3";
    case CHAT_NONE: return "none";
    }
    return "none";
}
