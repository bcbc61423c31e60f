/*
 * cairn.h: the small conveniences a C stage wants on top of the bindings
 * that `cairn stage build` generates for the `cairn:stage` world (stage.h).
 *
 * The generated API is complete but raw: strings are (pointer, length)
 * pairs, and everything handed back to the host must be allocated with
 * malloc, because the bindings free it after the call. These helpers keep
 * that rule for you:
 *
 *   bool exports_stage_run(stage_invocation_t *invocation, stage_outcome_t *ret, stage_string_t *err) {
 *       cairn_outcome_init(ret);
 *       cairn_info("checking %zu files", count);
 *       if (broken) return cairn_fail(err, "%s is broken", path);
 *       cairn_summary(ret, "%zu files", count);
 *       cairn_output(ret, "files", "%zu", count);
 *       return true;
 *   }
 *
 * Files: /src, /in/<stage>, /out and /tmp are ordinary directories for
 * wasi-libc (fopen, opendir, ...).
 */
#ifndef CAIRN_H
#define CAIRN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage.h"

/* printf into a fresh malloc'd string; NULL only when out of memory. */
static char *cairn_vformat(const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int length = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (length < 0) {
        return NULL;
    }
    char *text = malloc((size_t)length + 1);
    if (text != NULL) {
        vsnprintf(text, (size_t)length + 1, format, args);
    }
    return text;
}

/* Declares `char *text`: the variadic arguments after `format`, printed
 * into a malloc'd string (NULL when out of memory). */
#define CAIRN_FORMAT(text, format)                   \
    char *text;                                      \
    do {                                             \
        va_list cairn_args_;                         \
        va_start(cairn_args_, format);               \
        text = cairn_vformat(format, cairn_args_);   \
        va_end(cairn_args_);                         \
    } while (0)

/* A NUL-terminated malloc'd copy of a WIT string (free it). */
static char *cairn_string(const stage_string_t *string) {
    char *text = malloc(string->len + 1);
    if (text != NULL) {
        memcpy(text, string->ptr, string->len);
        text[string->len] = '\0';
    }
    return text;
}

/* Logs through the host at `level` (CAIRN_STAGE_HOST_LEVEL_INFO, ...). */
static void cairn_log(cairn_stage_host_level_t level, const char *format, ...) {
    CAIRN_FORMAT(text, format);
    if (text == NULL) {
        return;
    }
    stage_string_t message;
    stage_string_set(&message, text);
    cairn_stage_host_log(level, &message);
    free(text);
}

#define cairn_debug(...) cairn_log(CAIRN_STAGE_HOST_LEVEL_DEBUG, __VA_ARGS__)
#define cairn_info(...) cairn_log(CAIRN_STAGE_HOST_LEVEL_INFO, __VA_ARGS__)
#define cairn_warn(...) cairn_log(CAIRN_STAGE_HOST_LEVEL_WARN, __VA_ARGS__)
#define cairn_error(...) cairn_log(CAIRN_STAGE_HOST_LEVEL_ERROR, __VA_ARGS__)

/* Reports progress: `done` of `total` units (total 0 when unknown). */
static void cairn_progress(uint64_t done, uint64_t total) {
    cairn_stage_host_progress(done, total);
}

/* Attaches a diagnostic to `path:line` (line 0: the whole file). */
static void cairn_annotate(cairn_stage_host_level_t severity, const char *path, uint32_t line, const char *message) {
    cairn_stage_host_annotation_t annotation;
    stage_string_set(&annotation.path, path);
    annotation.line = line;
    annotation.column.is_some = false;
    annotation.severity = severity;
    stage_string_set(&annotation.message, message);
    cairn_stage_host_annotate(&annotation);
}

/* The value of a granted secret as a malloc'd string, or NULL. */
static char *cairn_secret(const char *name) {
    stage_string_t key, value;
    stage_string_set(&key, name);
    if (!cairn_stage_host_secret(&key, &value)) {
        return NULL;
    }
    char *text = cairn_string(&value);
    stage_string_free(&value);
    return text;
}

/* The `with` value for `key` as a malloc'd string, or NULL. */
static char *cairn_config(const stage_invocation_t *invocation, const char *key) {
    size_t key_length = strlen(key);
    for (size_t index = 0; index < invocation->config.len; index++) {
        const stage_tuple2_string_string_t *entry = &invocation->config.ptr[index];
        if (entry->f0.len == key_length && memcmp(entry->f0.ptr, key, key_length) == 0) {
            return cairn_string(&entry->f1);
        }
    }
    return NULL;
}

/* Starts an empty outcome: call it first in exports_stage_run. */
static void cairn_outcome_init(stage_outcome_t *outcome) {
    outcome->summary.is_some = false;
    outcome->outputs.ptr = NULL;
    outcome->outputs.len = 0;
}

/* Sets the one-line summary. */
static void cairn_summary(stage_outcome_t *outcome, const char *format, ...) {
    CAIRN_FORMAT(text, format);
    if (text == NULL) {
        return;
    }
    if (outcome->summary.is_some) {
        stage_string_free(&outcome->summary.val);
    }
    outcome->summary.is_some = true;
    stage_string_set(&outcome->summary.val, text); /* owned: the bindings free it */
}

/* Adds the output `key` (read downstream as ${{ stages.NAME.outputs.KEY }}). */
static void cairn_output(stage_outcome_t *outcome, const char *key, const char *format, ...) {
    CAIRN_FORMAT(text, format);
    stage_tuple2_string_string_t *grown =
        realloc(outcome->outputs.ptr, (outcome->outputs.len + 1) * sizeof(stage_tuple2_string_string_t));
    if (text == NULL || grown == NULL) {
        free(text);
        if (grown != NULL) {
            outcome->outputs.ptr = grown;
        }
        return;
    }
    outcome->outputs.ptr = grown;
    stage_tuple2_string_string_t *entry = &grown[outcome->outputs.len++];
    stage_string_dup(&entry->f0, key);
    stage_string_set(&entry->f1, text);
}

/* Fails the stage with a message: `return cairn_fail(err, "...", ...);`. */
static bool cairn_fail(stage_string_t *err, const char *format, ...) {
    CAIRN_FORMAT(text, format);
    stage_string_set(err, text != NULL ? text : strdup("the stage failed"));
    return false;
}

#endif
