// KILN-CORPUS: read lines from stdin (getline), sort them, print sorted with counts of duplicates
// STDIN: sort_input.txt
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    char **lines = NULL; size_t n = 0, cap = 0;
    char *line = NULL; size_t lcap = 0; ssize_t got;
    size_t bytes = 0;
    while ((got = getline(&line, &lcap, stdin)) != -1) {
        if (got > 0 && line[got - 1] == '\n') line[--got] = 0;
        if (n == cap) { cap = cap ? cap * 2 : 16; lines = realloc(lines, cap * sizeof *lines); }
        lines[n++] = strdup(line);
        bytes += (size_t)got;
    }
    free(line);
    qsort(lines, n, sizeof *lines, cmp);
    printf("%zu lines, %zu bytes\n", n, bytes);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && strcmp(lines[i], lines[j]) == 0) j++;
        printf("%4zu %s\n", j - i, lines[i]);
        i = j;
    }
    for (size_t i = 0; i < n; i++) free(lines[i]);
    free(lines);
    return 0;
}
