/*
 * {{name}}: a cairn stage in C.
 *
 * `cairn stage build .` compiles every .c file here for wasm32-wasi against
 * bindings for the cairn:stage world (stage.h, generated at build time) and
 * the SDK's helpers (cairn.h). Everything the stage returns is freed by the
 * bindings after the call, so build it with the cairn_* helpers.
 */
#include <dirent.h>

#include "cairn.h"

bool exports_stage_run(stage_invocation_t *invocation, stage_outcome_t *ret, stage_string_t *err) {
    cairn_outcome_init(ret);
    char *stage = cairn_string(&invocation->stage);

    size_t entries = 0;
    DIR *src = opendir("/src");
    if (src != NULL) {
        struct dirent *entry;
        while ((entry = readdir(src)) != NULL) {
            if (entry->d_name[0] != '.') {
                entries++;
            }
        }
        closedir(src);
    }

    FILE *out = fopen("/out/hello.txt", "w");
    if (out == NULL) {
        free(stage);
        return cairn_fail(err, "cannot write /out/hello.txt");
    }
    fprintf(out, "hello from %s, which sees %zu entries in /src\n", stage, entries);
    fclose(out);

    cairn_info("hello from %s, written in C", stage);
    cairn_summary(ret, "%zu entries in /src", entries);
    cairn_output(ret, "entries", "%zu", entries);
    free(stage);
    return true;
}
