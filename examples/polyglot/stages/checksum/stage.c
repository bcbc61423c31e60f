/*
 * checksum: writes CRC32SUMS, the CRC-32 (IEEE, as zlib and gzip compute
 * it) of every file under /src, one "crc32  path" line per file in path
 * order, and returns how many files and bytes it read.
 */
#include <dirent.h>
#include <sys/stat.h>

#include "cairn.h"

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[n] = c;
    }
}

/* The CRC-32 of a file; false if it cannot be read. */
static bool crc_file(const char *path, uint32_t *crc, uint64_t *size) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return false;
    }
    uint32_t c = 0xFFFFFFFFu;
    static unsigned char buffer[65536];
    size_t read;
    while ((read = fread(buffer, 1, sizeof buffer, file)) > 0) {
        for (size_t i = 0; i < read; i++) {
            c = crc_table[(c ^ buffer[i]) & 0xFF] ^ (c >> 8);
        }
        *size += read;
    }
    bool ok = !ferror(file);
    fclose(file);
    *crc = c ^ 0xFFFFFFFFu;
    return ok;
}

/* Paths of the regular files under `root/relative`, appended to `paths`. */
static bool collect(const char *root, const char *relative, char ***paths, size_t *count) {
    char folder[4096];
    snprintf(folder, sizeof folder, "%s%s%s", root, relative[0] ? "/" : "", relative);
    DIR *dir = opendir(folder);
    if (dir == NULL) {
        return false;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        char child[4096], full[4096];
        snprintf(child, sizeof child, "%s%s%s", relative, relative[0] ? "/" : "", entry->d_name);
        snprintf(full, sizeof full, "%s/%s", root, child);
        struct stat info;
        if (lstat(full, &info) != 0) {
            continue;
        }
        if (S_ISDIR(info.st_mode)) {
            collect(root, child, paths, count);
        } else if (S_ISREG(info.st_mode)) {
            *paths = realloc(*paths, (*count + 1) * sizeof(char *));
            (*paths)[(*count)++] = strdup(child);
        }
    }
    closedir(dir);
    return true;
}

static int by_name(const void *left, const void *right) {
    return strcmp(*(char *const *)left, *(char *const *)right);
}

bool exports_stage_run(stage_invocation_t *invocation, stage_outcome_t *ret, stage_string_t *err) {
    (void)invocation;
    cairn_outcome_init(ret);
    crc_init();
    char **paths = NULL;
    size_t count = 0;
    if (!collect("/src", "", &paths, &count)) {
        return cairn_fail(err, "cannot read /src: does the stage have `inputs`?");
    }
    qsort(paths, count, sizeof(char *), by_name);

    FILE *sums = fopen("/out/CRC32SUMS", "w");
    if (sums == NULL) {
        return cairn_fail(err, "cannot write /out/CRC32SUMS");
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
        char full[4096];
        snprintf(full, sizeof full, "/src/%s", paths[i]);
        uint32_t crc = 0;
        if (!crc_file(full, &crc, &bytes)) {
            fclose(sums);
            return cairn_fail(err, "cannot read %s", full);
        }
        fprintf(sums, "%08x  %s\n", crc, paths[i]);
        cairn_progress(i + 1, count);
        free(paths[i]);
    }
    free(paths);
    fclose(sums);

    cairn_info("checksummed %zu files, %llu bytes", count, (unsigned long long)bytes);
    cairn_summary(ret, "%zu files, %llu bytes", count, (unsigned long long)bytes);
    cairn_output(ret, "files", "%zu", count);
    cairn_output(ret, "bytes", "%llu", (unsigned long long)bytes);
    return true;
}
