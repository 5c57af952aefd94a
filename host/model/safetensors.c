/*
 * safetensors.c — .safetensors parsing (see safetensors.h), single and sharded
 * checkpoints. The JSON header is parsed with cJSON; every number taken from it is
 * checked to be a non-negative integer before it is used as a size or offset.
 */
#include "model/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/dequant.h"

#define ST_MAX_HEADER (100u << 20) // the format's own limit on the JSON header

static const struct {
    const char* name;
    STDtype dtype;
    int size;
} DTYPES[] = {
    {"F32", ST_F32, 4},     {"F16", ST_F16, 2},     {"BF16", ST_BF16, 2},     {"F64", ST_OTHER, 8},
    {"I64", ST_OTHER, 8},   {"I32", ST_OTHER, 4},   {"I16", ST_OTHER, 2},     {"I8", ST_OTHER, 1},
    {"U64", ST_OTHER, 8},   {"U32", ST_OTHER, 4},   {"U16", ST_OTHER, 2},     {"U8", ST_OTHER, 1},
    {"BOOL", ST_OTHER, 1},  {"F8_E4M3", ST_OTHER, 1}, {"F8_E5M2", ST_OTHER, 1},
};

static int dtype_lookup(const char* s, STDtype* dt) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++) {
        if (strcmp(DTYPES[i].name, s) == 0) {
            *dt = DTYPES[i].dtype;
            return DTYPES[i].size;
        }
    }
    return 0;
}

static etx_status map_file(const char* path, const uint8_t** map, size_t* size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return etx_error(ETX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 8) {
        close(fd);
        return etx_error(ETX_ERR_FORMAT, "%s: not a safetensors file (shorter than its 8-byte header length)",
                         path);
    }
    void* p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return etx_error(ETX_ERR_IO, "cannot map %s: %s", path, strerror(e));
    *map = p;
    *size = (size_t)sb.st_size;
    return etx_ok();
}

// A JSON number that is an integer in [0, 2^53].
static int json_uint(const cJSON* v, uint64_t* out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static etx_status parse_shape(const STFile* f, STTensor* t, const cJSON* shape) {
    if (!cJSON_IsArray(shape))
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: missing or invalid \"shape\"", f->path, t->name);
    int n = cJSON_GetArraySize(shape);
    if (n > ST_MAX_DIMS)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s has %d dimensions (at most %d)", f->path, t->name, n,
                         ST_MAX_DIMS);
    t->n_dims = n;
    t->n_elems = 1;
    int i = 0;
    const cJSON* d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_uint(d, &v))
            return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: shape entry %d is not a non-negative integer", f->path,
                             t->name, i);
        if (v != 0 && t->n_elems > (UINT64_C(1) << 56) / v)
            return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: shape is too large", f->path, t->name);
        t->shape[i++] = v;
        t->n_elems *= v;
    }
    return etx_ok();
}

static etx_status parse_offsets(const STFile* f, STTensor* t, const cJSON* offs, int elem_size) {
    uint64_t b, e;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(cJSON_GetArrayItem(offs, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &e))
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: missing or invalid \"data_offsets\"", f->path, t->name);
    uint64_t avail = f->size - f->data_offset;
    if (b > e)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] begin after they end", f->path,
                         t->name, (unsigned long long)b, (unsigned long long)e);
    if (e > avail)
        return etx_error(ETX_ERR_FORMAT,
                         "%s: tensor %s: data_offsets [%llu, %llu] run past the data section (%llu bytes)", f->path, t->name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)avail);
    if (e - b != t->n_elems * (uint64_t)elem_size)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: %llu bytes of data for %llu elements of %s", f->path, t->name,
                         (unsigned long long)(e - b), (unsigned long long)t->n_elems, t->dtype_name);
    t->begin = b;
    t->end = e;
    t->data = f->map + f->data_offset + b;
    return etx_ok();
}

static etx_status parse_tensor(const STFile* f, const cJSON* item, STTensor* t) {
    t->name = xstrdup(item->string);
    if (!cJSON_IsObject(item))
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: header entry is not an object", f->path, t->name);
    const cJSON* dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dt))
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: missing \"dtype\"", f->path, t->name);
    int es = dtype_lookup(dt->valuestring, &t->dtype);
    if (es == 0)
        return etx_error(ETX_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", f->path, t->name, dt->valuestring);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
    ETX_TRY(parse_shape(f, t, cJSON_GetObjectItemCaseSensitive(item, "shape")));
    return parse_offsets(f, t, cJSON_GetObjectItemCaseSensitive(item, "data_offsets"), es);
}

static etx_status parse_header(STFile* f) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    if (n == 0 || n > ST_MAX_HEADER || n > f->size - 8)
        return etx_error(ETX_ERR_FORMAT, "%s: header length %llu does not fit the file (%zu bytes)", f->path,
                         (unsigned long long)n, f->size);
    f->data_offset = 8 + n;
    cJSON* root = cJSON_ParseWithLength((const char*)f->map + 8, (size_t)n);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return etx_error(ETX_ERR_FORMAT, "%s: header is not a JSON object", f->path);
    }
    int count = 0;
    const cJSON* item;
    cJSON_ArrayForEach(item, root) count += strcmp(item->string, "__metadata__") != 0;
    f->tensors = xcalloc((size_t)count, sizeof(STTensor));
    etx_status st = etx_ok();
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) continue;
        st = parse_tensor(f, item, &f->tensors[f->n_tensors++]);
        if (st.code != ETX_OK) break;
    }
    cJSON_Delete(root);
    return st;
}

etx_status st_open(const char* path, STFile* f) {
    memset(f, 0, sizeof *f);
    ETX_TRY(map_file(path, &f->map, &f->size));
    f->path = xstrdup(path);
    etx_status st = parse_header(f);
    if (st.code != ETX_OK) st_close(f);
    return st;
}

void st_close(STFile* f) {
    if (f->map) munmap((void*)f->map, f->size);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const STTensor* st_find(const STFile* f, const char* name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

// ---------------------------------------------------------------------------
// checkpoints

static char* join_path(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char* path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

// Index of shard `name` in c->files, opening it on first use.
static etx_status shard_index(STCheckpoint* c, const char* index_path, const char* name, int* idx) {
    for (int i = 0; i < c->n_files; i++) {
        const char* p = c->files[i].path;
        size_t lp = strlen(p), ln = strlen(name);
        if (lp > ln && p[lp - ln - 1] == '/' && strcmp(p + lp - ln, name) == 0) {
            *idx = i;
            return etx_ok();
        }
    }
    if (name[0] == '\0' || strchr(name, '/') || strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
        return etx_error(ETX_ERR_FORMAT, "%s: weight_map names an invalid shard file \"%.64s\"", index_path, name);
    char* path = join_path(c->dir, name);
    c->files = xrealloc(c->files, (size_t)(c->n_files + 1) * sizeof(STFile));
    etx_status st = st_open(path, &c->files[c->n_files]);
    free(path);
    if (st.code != ETX_OK) return etx_error_wrap(st, "%s: shard", index_path);
    *idx = c->n_files++;
    return etx_ok();
}

static etx_status parse_index(STCheckpoint* c, const char* index_path, const cJSON* root) {
    const cJSON* wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) return etx_error(ETX_ERR_FORMAT, "%s: missing \"weight_map\" object", index_path);
    int n = cJSON_GetArraySize(wm);
    c->map_names = xcalloc((size_t)n, sizeof(char*));
    c->map_file = xcalloc((size_t)n, sizeof(int));
    const cJSON* e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e))
            return etx_error(ETX_ERR_FORMAT, "%s: weight_map entry for tensor %s is not a file name", index_path,
                             e->string);
        int idx = 0;
        ETX_TRY(shard_index(c, index_path, e->valuestring, &idx));
        c->map_names[c->n_map] = xstrdup(e->string);
        c->map_file[c->n_map++] = idx;
    }
    return etx_ok();
}

static etx_status open_index(STCheckpoint* c, const char* index_path) {
    char* text;
    size_t len;
    ETX_TRY(etx_read_file(index_path, &text, &len));
    cJSON* root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return etx_error(ETX_ERR_FORMAT, "%s: not a JSON object", index_path);
    }
    etx_status st = parse_index(c, index_path, root);
    cJSON_Delete(root);
    return st;
}

etx_status st_checkpoint_open(const char* dir, STCheckpoint* c) {
    memset(c, 0, sizeof *c);
    c->dir = xstrdup(dir);
    char* index = join_path(dir, "model.safetensors.index.json");
    char* single = join_path(dir, "model.safetensors");
    etx_status st;
    if (file_exists(index)) {
        st = open_index(c, index);
    } else if (file_exists(single)) {
        c->files = xcalloc(1, sizeof(STFile));
        st = st_open(single, &c->files[0]);
        if (st.code == ETX_OK) c->n_files = 1;
    } else {
        st = etx_error(ETX_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json found", dir);
    }
    free(index);
    free(single);
    if (st.code != ETX_OK) st_checkpoint_close(c);
    return st;
}

void st_checkpoint_close(STCheckpoint* c) {
    for (int i = 0; i < c->n_files; i++) st_close(&c->files[i]);
    for (int i = 0; i < c->n_map; i++) free(c->map_names[i]);
    free(c->files);
    free(c->map_names);
    free(c->map_file);
    free(c->dir);
    memset(c, 0, sizeof *c);
}

etx_status st_checkpoint_find(const STCheckpoint* c, const char* name, const STTensor** t, const STFile** file) {
    *t = NULL;
    *file = NULL;
    if (c->n_map == 0) {
        if (c->n_files == 1 && (*t = st_find(&c->files[0], name))) *file = &c->files[0];
        return etx_ok();
    }
    for (int i = 0; i < c->n_map; i++) {
        if (strcmp(c->map_names[i], name) != 0) continue;
        const STFile* f = &c->files[c->map_file[i]];
        *t = st_find(f, name);
        if (!*t)
            return etx_error(ETX_ERR_FORMAT, "%s: tensor %s is missing, though the index places it in this shard",
                             f->path, name);
        *file = f;
        return etx_ok();
    }
    return etx_ok();
}

void st_to_f32(const STTensor* t, float* dst) {
    const uint8_t* p = t->data;
    int64_t n = (int64_t)t->n_elems;
    if (t->dtype == ST_F32) {
        memcpy(dst, p, (size_t)n * sizeof(float));
        return;
    }
    int f16 = t->dtype == ST_F16;
#pragma omp parallel for schedule(static) if (n >= (1 << 20))
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
        dst[i] = f16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
}
