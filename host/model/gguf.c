/*
 * gguf.c — GGUF parsing over an mmap (see gguf.h for the file layout). The parser walks
 * the header with a cursor whose every read is checked against the bytes left; counts
 * and lengths are checked against what the rest of the file could possibly hold before
 * anything is allocated from them.
 */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/dequant.h"

#define GGUF_MAX_NAME 65535          // longest key or tensor name accepted
#define GGUF_MAX_ALIGNMENT (1u << 20)

typedef struct {
    const uint8_t* p;
    uint64_t size;
    uint64_t pos;
} Cursor;

static etx_status need(const Cursor* c, uint64_t n) {
    if (n > c->size - c->pos)
        return etx_error(ETX_ERR_FORMAT, "truncated: need %llu bytes at offset %llu, file has %llu",
                         (unsigned long long)n, (unsigned long long)c->pos, (unsigned long long)c->size);
    return etx_ok();
}

static uint64_t rd_le(const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static etx_status rd_uint(Cursor* c, int n, uint64_t* v) {
    ETX_TRY(need(c, (uint64_t)n));
    *v = rd_le(c->p + c->pos, n);
    c->pos += (uint64_t)n;
    return etx_ok();
}

static etx_status rd_u32(Cursor* c, uint32_t* v) {
    uint64_t x;
    ETX_TRY(rd_uint(c, 4, &x));
    *v = (uint32_t)x;
    return etx_ok();
}

// A GGUF string: u64 length, then the bytes. *s points into the map.
static etx_status rd_str(Cursor* c, const char** s, uint64_t* len) {
    ETX_TRY(rd_uint(c, 8, len));
    if (*len > c->size - c->pos)
        return etx_error(ETX_ERR_FORMAT, "string length %llu at offset %llu runs past the end of the file",
                         (unsigned long long)*len, (unsigned long long)(c->pos - 8));
    *s = (const char*)(c->p + c->pos);
    c->pos += *len;
    return etx_ok();
}

static char* dup_name(const char* s, uint64_t len) {
    char* out = xmalloc((size_t)len + 1);
    memcpy(out, s, (size_t)len);
    out[len] = '\0';
    return out;
}

// Bytes of one scalar value of a type; 0 for strings/arrays, -1 for unknown types.
static int scalar_size(uint32_t type) {
    switch (type) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    case GGUF_STRING: case GGUF_ARRAY: return 0;
    default: return -1;
    }
}

const char* gguf_type_name(uint32_t type) {
    static const char* const names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                        "bool", "string", "array", "uint64", "int64", "float64"};
    return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

static int is_int_type(uint32_t t) {
    return t == GGUF_UINT8 || t == GGUF_INT8 || t == GGUF_UINT16 || t == GGUF_INT16 || t == GGUF_UINT32 ||
           t == GGUF_INT32 || t == GGUF_UINT64 || t == GGUF_INT64 || t == GGUF_BOOL;
}

static int is_signed(uint32_t t) {
    return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
}

// Decodes one scalar at p into kv->i / kv->u / kv->f.
static void decode_scalar(uint32_t type, const uint8_t* p, GGUFKV* kv) {
    int n = scalar_size(type);
    uint64_t raw = rd_le(p, n);
    kv->u = raw;
    if (is_signed(type)) {
        int shift = 64 - 8 * n;
        kv->i = (int64_t)(raw << shift) >> shift; // sign-extend
    } else {
        kv->i = (int64_t)raw;
    }
    if (type == GGUF_FLOAT32) {
        uint32_t b = (uint32_t)raw;
        float x;
        memcpy(&x, &b, 4);
        kv->f = x;
    } else if (type == GGUF_FLOAT64) {
        memcpy(&kv->f, &raw, 8);
    }
}

static etx_status parse_array(Cursor* c, GGUFKV* kv) {
    ETX_TRY(rd_u32(c, &kv->arr_type));
    ETX_TRY(rd_uint(c, 8, &kv->arr_n));
    int es = scalar_size(kv->arr_type);
    if (kv->arr_type == GGUF_ARRAY)
        return etx_error(ETX_ERR_UNSUPPORTED, "nested arrays are not supported");
    if (es < 0) return etx_error(ETX_ERR_FORMAT, "unknown array element type %u", kv->arr_type);
    uint64_t left = c->size - c->pos;
    kv->arr_data = c->p + c->pos;
    if (es > 0) {
        if (kv->arr_n > left / (uint64_t)es)
            return etx_error(ETX_ERR_FORMAT, "array of %llu %s runs past the end of the file",
                             (unsigned long long)kv->arr_n, gguf_type_name(kv->arr_type));
        c->pos += kv->arr_n * (uint64_t)es;
        return etx_ok();
    }
    if (kv->arr_n > left / 8)
        return etx_error(ETX_ERR_FORMAT, "array of %llu strings runs past the end of the file",
                         (unsigned long long)kv->arr_n);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const char* s;
        uint64_t len;
        etx_status st = rd_str(c, &s, &len);
        if (st.code != ETX_OK) return etx_error_wrap(st, "string %llu of the array", (unsigned long long)i);
    }
    return etx_ok();
}

static etx_status parse_value(Cursor* c, GGUFKV* kv) {
    ETX_TRY(rd_u32(c, &kv->type));
    int n = scalar_size(kv->type);
    if (n < 0) return etx_error(ETX_ERR_FORMAT, "unknown value type %u", kv->type);
    if (kv->type == GGUF_STRING) return rd_str(c, &kv->str, &kv->str_len);
    if (kv->type == GGUF_ARRAY) return parse_array(c, kv);
    ETX_TRY(need(c, (uint64_t)n));
    decode_scalar(kv->type, c->p + c->pos, kv);
    c->pos += (uint64_t)n;
    return etx_ok();
}

static etx_status parse_kv(Cursor* c, const char* path, uint64_t idx, GGUFKV* kv) {
    const char* key;
    uint64_t len;
    etx_status st = rd_str(c, &key, &len);
    if (st.code != ETX_OK) return etx_error_wrap(st, "%s: metadata key %llu", path, (unsigned long long)idx);
    if (len == 0 || len > GGUF_MAX_NAME)
        return etx_error(ETX_ERR_FORMAT, "%s: metadata key %llu has invalid length %llu", path,
                         (unsigned long long)idx, (unsigned long long)len);
    kv->key = dup_name(key, len);
    st = parse_value(c, kv);
    if (st.code != ETX_OK) return etx_error_wrap(st, "%s: metadata key %s", path, kv->key);
    return etx_ok();
}

static etx_status parse_tensor_info(Cursor* c, const char* path, uint64_t idx, GGUFTensor* t) {
    const char* name;
    uint64_t len;
    etx_status st = rd_str(c, &name, &len);
    if (st.code != ETX_OK) return etx_error_wrap(st, "%s: tensor info %llu", path, (unsigned long long)idx);
    if (len == 0 || len > GGUF_MAX_NAME)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor info %llu has invalid name length %llu", path,
                         (unsigned long long)idx, (unsigned long long)len);
    t->name = dup_name(name, len);
    uint32_t nd;
    if ((st = rd_u32(c, &nd)).code != ETX_OK) return etx_error_wrap(st, "%s: tensor %s", path, t->name);
    if (nd < 1 || nd > 4)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s has %u dimensions (expected 1..4)", path, t->name, nd);
    t->n_dims = (int)nd;
    t->n_elems = 1;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if ((st = rd_uint(c, 8, &t->ne[d])).code != ETX_OK) return etx_error_wrap(st, "%s: tensor %s", path, t->name);
        if (t->ne[d] == 0 || t->ne[d] > (UINT64_C(1) << 62) / t->n_elems)
            return etx_error(ETX_ERR_FORMAT, "%s: tensor %s has invalid dimension %d = %llu", path, t->name, d,
                             (unsigned long long)t->ne[d]);
        t->n_elems *= t->ne[d];
    }
    if ((st = rd_u32(c, &t->type)).code != ETX_OK) return etx_error_wrap(st, "%s: tensor %s", path, t->name);
    if ((st = rd_uint(c, 8, &t->offset)).code != ETX_OK) return etx_error_wrap(st, "%s: tensor %s", path, t->name);
    const GGMLTypeInfo* ti = ggml_type_info(t->type);
    if (!ti)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s has unknown ggml type %u", path, t->name, t->type);
    if (!ti->supported)
        return etx_error(ETX_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %s (%u), which etx cannot read", path,
                         t->name, ti->name, t->type);
    if (t->ne[0] % (uint64_t)ti->block_elems != 0)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: row length %llu is not a multiple of the %s block (%d)",
                         path, t->name, (unsigned long long)t->ne[0], ti->name, ti->block_elems);
    t->n_bytes = t->n_elems / (uint64_t)ti->block_elems * (uint64_t)ti->block_bytes;
    return etx_ok();
}

// Checks each tensor's data lies inside the data section; sets t->data.
static etx_status place_tensors(GGUFFile* f) {
    uint64_t avail = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        GGUFTensor* t = &f->tensors[i];
        if (t->offset % f->alignment != 0)
            return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: data offset %llu is not a multiple of the alignment %llu",
                             f->path, t->name, (unsigned long long)t->offset, (unsigned long long)f->alignment);
        if (t->offset > avail || t->n_bytes > avail - t->offset)
            return etx_error(ETX_ERR_FORMAT,
                             "%s: tensor %s: data [%llu, %llu) lies outside the data section (%llu bytes)", f->path,
                             t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->n_bytes),
                             (unsigned long long)avail);
        t->data = f->map + f->data_offset + t->offset;
    }
    return etx_ok();
}

static etx_status read_alignment(GGUFFile* f) {
    f->alignment = 32;
    const GGUFKV* kv = gguf_find(f, "general.alignment");
    if (!kv) return etx_ok();
    int64_t a;
    ETX_TRY(gguf_get_int(f, "general.alignment", &a));
    if (a <= 0 || a > GGUF_MAX_ALIGNMENT || (a & (a - 1)) != 0)
        return etx_error(ETX_ERR_FORMAT, "%s: metadata key general.alignment = %lld is not a power of two <= %u",
                         f->path, (long long)a, GGUF_MAX_ALIGNMENT);
    f->alignment = (uint64_t)a;
    return etx_ok();
}

static etx_status parse_header(GGUFFile* f) {
    Cursor c = {f->map, f->size, 0};
    if (f->size < 4 || memcmp(f->map, "GGUF", 4) != 0)
        return etx_error(ETX_ERR_FORMAT, "%s: not a GGUF file (bad magic)", f->path);
    c.pos = 4;
    etx_status st;
    if ((st = rd_u32(&c, &f->version)).code != ETX_OK) return etx_error_wrap(st, "%s: header", f->path);
    if (f->version != 2 && f->version != 3)
        return etx_error(ETX_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3)", f->path, f->version);
    uint64_t nt, nkv;
    if ((st = rd_uint(&c, 8, &nt)).code != ETX_OK) return etx_error_wrap(st, "%s: header", f->path);
    if ((st = rd_uint(&c, 8, &nkv)).code != ETX_OK) return etx_error_wrap(st, "%s: header", f->path);
    // each key/value needs >= 13 bytes, each tensor info >= 29: reject counts the file cannot hold
    uint64_t left = f->size - c.pos;
    if (nkv > left / 13)
        return etx_error(ETX_ERR_FORMAT, "%s: metadata count %llu is larger than the file could hold", f->path,
                         (unsigned long long)nkv);
    if (nt > left / 29)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor count %llu is larger than the file could hold", f->path,
                         (unsigned long long)nt);
    f->kv = xcalloc((size_t)nkv, sizeof(GGUFKV));
    f->n_kv = nkv;
    for (uint64_t i = 0; i < nkv; i++) ETX_TRY(parse_kv(&c, f->path, i, &f->kv[i]));
    f->tensors = xcalloc((size_t)nt, sizeof(GGUFTensor));
    f->n_tensors = nt;
    for (uint64_t i = 0; i < nt; i++) ETX_TRY(parse_tensor_info(&c, f->path, i, &f->tensors[i]));
    ETX_TRY(read_alignment(f));
    uint64_t pad = (f->alignment - c.pos % f->alignment) % f->alignment;
    f->data_offset = c.pos + pad;
    if (f->data_offset > f->size) {
        if (nt > 0)
            return etx_error(ETX_ERR_FORMAT, "%s: truncated before the data section (offset %llu, file has %llu)",
                             f->path, (unsigned long long)f->data_offset, (unsigned long long)f->size);
        f->data_offset = f->size;
    }
    return place_tensors(f);
}

static etx_status map_file(const char* path, const uint8_t** map, size_t* size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return etx_error(ETX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return etx_error(ETX_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size == 0) {
        close(fd);
        return etx_error(ETX_ERR_FORMAT, "%s: not a GGUF file (empty or not a regular file)", path);
    }
    void* p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return etx_error(ETX_ERR_IO, "cannot map %s: %s", path, strerror(e));
    *map = p;
    *size = (size_t)sb.st_size;
    return etx_ok();
}

etx_status gguf_open(const char* path, GGUFFile* f) {
    memset(f, 0, sizeof *f);
    ETX_TRY(map_file(path, &f->map, &f->size));
    f->path = xstrdup(path);
    etx_status st = parse_header(f);
    if (st.code != ETX_OK) gguf_close(f);
    return st;
}

void gguf_close(GGUFFile* f) {
    if (f->map) munmap((void*)f->map, f->size);
    for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].key);
    for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const GGUFKV* gguf_find(const GGUFFile* f, const char* key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key && strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

const GGUFTensor* gguf_find_tensor(const GGUFFile* f, const char* name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name && strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static etx_status find_typed(const GGUFFile* f, const char* key, const GGUFKV** kv) {
    *kv = gguf_find(f, key);
    if (!*kv) return etx_error(ETX_ERR_FORMAT, "%s: missing metadata key %s", f->path, key);
    return etx_ok();
}

static etx_status wrong_type(const GGUFFile* f, const GGUFKV* kv, const char* want) {
    return etx_error(ETX_ERR_FORMAT, "%s: metadata key %s has type %s, expected %s", f->path, kv->key,
                     gguf_type_name(kv->type), want);
}

etx_status gguf_get_int(const GGUFFile* f, const char* key, int64_t* out) {
    const GGUFKV* kv;
    ETX_TRY(find_typed(f, key, &kv));
    if (!is_int_type(kv->type)) return wrong_type(f, kv, "an integer");
    if (kv->type == GGUF_UINT64 && kv->u > (uint64_t)INT64_MAX)
        return etx_error(ETX_ERR_FORMAT, "%s: metadata key %s = %llu is too large", f->path, key,
                         (unsigned long long)kv->u);
    *out = kv->i;
    return etx_ok();
}

etx_status gguf_get_float(const GGUFFile* f, const char* key, double* out) {
    const GGUFKV* kv;
    ETX_TRY(find_typed(f, key, &kv));
    if (kv->type == GGUF_FLOAT32 || kv->type == GGUF_FLOAT64) {
        *out = kv->f;
        return etx_ok();
    }
    if (is_int_type(kv->type) && kv->type != GGUF_BOOL) {
        *out = kv->type == GGUF_UINT64 ? (double)kv->u : (double)kv->i;
        return etx_ok();
    }
    return wrong_type(f, kv, "a number");
}

etx_status gguf_get_string(const GGUFFile* f, const char* key, const char** s, size_t* len) {
    const GGUFKV* kv;
    ETX_TRY(find_typed(f, key, &kv));
    if (kv->type != GGUF_STRING) return wrong_type(f, kv, "string");
    *s = kv->str;
    *len = (size_t)kv->str_len;
    return etx_ok();
}

etx_status gguf_get_int_or(const GGUFFile* f, const char* key, int64_t def, int64_t* out) {
    if (!gguf_find(f, key)) {
        *out = def;
        return etx_ok();
    }
    return gguf_get_int(f, key, out);
}

etx_status gguf_get_float_or(const GGUFFile* f, const char* key, double def, double* out) {
    if (!gguf_find(f, key)) {
        *out = def;
        return etx_ok();
    }
    return gguf_get_float(f, key, out);
}

etx_status gguf_get_string_dup(const GGUFFile* f, const char* key, char** out) {
    const char* s;
    size_t len;
    ETX_TRY(gguf_get_string(f, key, &s, &len));
    *out = dup_name(s, len);
    return etx_ok();
}

static etx_status find_array(const GGUFFile* f, const char* key, const GGUFKV** kv) {
    ETX_TRY(find_typed(f, key, kv));
    if ((*kv)->type != GGUF_ARRAY) return wrong_type(f, *kv, "array");
    return etx_ok();
}

etx_status gguf_get_string_array(const GGUFFile* f, const char* key, const char*** strs, size_t** lens,
                                 uint64_t* n) {
    const GGUFKV* kv;
    ETX_TRY(find_array(f, key, &kv));
    if (kv->arr_type != GGUF_STRING)
        return etx_error(ETX_ERR_FORMAT, "%s: metadata key %s is an array of %s, expected strings", f->path, key,
                         gguf_type_name(kv->arr_type));
    // the array was bounds-checked while parsing; walk it again
    const char** s = xmalloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof(char*));
    size_t* l = xmalloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof(size_t));
    const uint8_t* p = kv->arr_data;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        uint64_t len = rd_le(p, 8);
        s[i] = (const char*)(p + 8);
        l[i] = (size_t)len;
        p += 8 + len;
    }
    *strs = s;
    *lens = l;
    *n = kv->arr_n;
    return etx_ok();
}

etx_status gguf_get_int_array(const GGUFFile* f, const char* key, int32_t** out, uint64_t* n) {
    const GGUFKV* kv;
    ETX_TRY(find_array(f, key, &kv));
    if (!is_int_type(kv->arr_type))
        return etx_error(ETX_ERR_FORMAT, "%s: metadata key %s is an array of %s, expected integers", f->path, key,
                         gguf_type_name(kv->arr_type));
    int es = scalar_size(kv->arr_type);
    int32_t* v = xmalloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof(int32_t));
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        GGUFKV x;
        decode_scalar(kv->arr_type, kv->arr_data + i * (uint64_t)es, &x);
        int big = kv->arr_type == GGUF_UINT64 ? x.u > INT32_MAX : (x.i > INT32_MAX || x.i < INT32_MIN);
        if (big) {
            free(v);
            return etx_error(ETX_ERR_FORMAT, "%s: metadata key %s: element %llu does not fit in int32", f->path,
                             key, (unsigned long long)i);
        }
        v[i] = (int32_t)x.i;
    }
    *out = v;
    *n = kv->arr_n;
    return etx_ok();
}
