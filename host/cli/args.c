/*
 * args.c — the table-driven option parser of the etx command line. Every value is
 * checked in full ("12x" is not 12); an unknown option, a missing value or a bad value
 * is an error naming the option.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const CliOpt* cli_find(const CliCommand* cmd, const char* long_name) {
    for (int i = 0; i < cmd->n_opts; i++)
        if (cmd->opts[i].long_name && strcmp(cmd->opts[i].long_name, long_name) == 0) return &cmd->opts[i];
    return NULL;
}

void cli_usage(const CliCommand* cmd, FILE* f) {
    fprintf(f, "usage: etx %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->synopsis, cmd->summary);
    for (int i = 0; i < cmd->n_opts; i++) {
        const CliOpt* o = &cmd->opts[i];
        if (!o->long_name) {
            fprintf(f, "\n%s\n", o->help);
            continue;
        }
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s%s", o->short_name ? o->short_name : "", o->short_name ? ", " : "",
                 o->long_name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        if (strlen(left) > 28) fprintf(f, "  %s\n  %-28s %s\n", left, "", o->help);
        else fprintf(f, "  %-28s %s\n", left, o->help);
    }
    fprintf(f, "  %-28s %s\n", "-h, --help", "show this help");
}

static int set_value(const CliCommand* cmd, CliOpt* o, const char* v) {
    char* end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_STRING:
        *(const char**)o->dest = v;
        return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L) break;
        *(int*)o->dest = (int)x;
        return 0;
    }
    case OPT_FLOAT: {
        float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        *(float*)o->dest = x;
        return 0;
    }
    case OPT_U64: {
        if (*v == '-') break;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end) break;
        *(uint64_t*)o->dest = (uint64_t)x;
        return 0;
    }
    case OPT_FLAG:
        break;
    }
    const char* what = o->type == OPT_INT ? "an integer" : o->type == OPT_FLOAT ? "a number" : "a non-negative integer";
    fprintf(stderr, "etx %s: %s expects %s, got '%s'\n", cmd->name, o->long_name, what, v);
    return -1;
}

int cli_parse(CliCommand* cmd, int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_usage(cmd, stdout);
            return 0;
        }
        // split --name=value
        char name[64];
        const char* inline_value = NULL;
        const char* eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a, len);
        name[len] = '\0';
        if (eq) inline_value = eq + 1;
        CliOpt* o = NULL;
        for (int j = 0; j < cmd->n_opts && !o; j++) {
            CliOpt* c = &cmd->opts[j];
            if (!c->long_name) continue;
            if (strcmp(c->long_name, name) == 0 || (c->short_name && strcmp(c->short_name, name) == 0)) o = c;
        }
        if (!o) {
            if (a[0] == '-')
                fprintf(stderr, "etx %s: unknown option '%s' (see etx %s --help)\n", cmd->name, a, cmd->name);
            else
                fprintf(stderr, "etx %s: unexpected argument '%s' (see etx %s --help)\n", cmd->name, a, cmd->name);
            return 2;
        }
        o->seen = 1;
        if (o->type == OPT_FLAG) {
            if (inline_value) {
                fprintf(stderr, "etx %s: %s takes no value\n", cmd->name, o->long_name);
                return 2;
            }
            *(int*)o->dest = 1;
            continue;
        }
        const char* v = inline_value;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "etx %s: %s needs a value (%s)\n", cmd->name, o->long_name, o->metavar ? o->metavar : "");
                return 2;
            }
            v = argv[++i];
        }
        if (set_value(cmd, o, v) != 0) return 2;
    }
    return CLI_CONTINUE;
}
