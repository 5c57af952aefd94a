/*
 * util.c — temporary files for the fuzz targets (util.h). Inputs go to a memfd, not to
 * disk: a fuzzer writes a file per execution, millions of times, and /proc/self/fd/N
 * opens, stats and maps like a regular file, which is what the parsers check for.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int memfd = -1;
static char memfd_path[64];

const char* fuzz_file(const uint8_t* data, size_t n) {
    if (memfd < 0) {
        memfd = memfd_create("etx-fuzz-input", MFD_CLOEXEC);
        if (memfd < 0) {
            perror("fuzz: memfd_create");
            abort();
        }
        snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
    }
    // shrink first: the previous input may have been longer
    if (ftruncate(memfd, 0) != 0 || (n > 0 && pwrite(memfd, data, n, 0) != (ssize_t)n)) {
        perror("fuzz: writing the memfd");
        abort();
    }
    return memfd_path;
}

static char dir_path[256];
static char file_path[512];

// Removes the directory and what the targets put in it (plain files and links only).
static void remove_dir(void) {
    static const char* const names[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                        "tokenizer.json", "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) fuzz_dir_remove(names[i]);
    rmdir(dir_path);
}

const char* fuzz_dir(void) {
    if (dir_path[0]) return dir_path;
    const char* tmp = getenv("TMPDIR");
    snprintf(dir_path, sizeof dir_path, "%s/etx-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(remove_dir);
    return dir_path;
}

const char* fuzz_dir_write(const char* name, const uint8_t* data, size_t n) {
    snprintf(file_path, sizeof file_path, "%s/%s", fuzz_dir(), name);
    unlink(file_path); // it may be a link to a fixture: never write through it
    int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (n > 0 && write(fd, data, n) != (ssize_t)n) || close(fd) != 0) {
        perror("fuzz: writing a file in the temporary directory");
        abort();
    }
    return file_path;
}

void fuzz_dir_link(const char* name, const char* target) {
    snprintf(file_path, sizeof file_path, "%s/%s", fuzz_dir(), name);
    unlink(file_path);
    if (symlink(target, file_path) != 0) {
        perror("fuzz: symlink");
        abort();
    }
}

void fuzz_dir_remove(const char* name) {
    if (!dir_path[0]) return;
    snprintf(file_path, sizeof file_path, "%s/%s", dir_path, name);
    unlink(file_path);
}

char* fuzz_cstr(const uint8_t* data, size_t n) {
    char* s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, data, n);
    s[n] = '\0';
    return s;
}
