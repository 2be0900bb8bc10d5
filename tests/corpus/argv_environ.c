// KILN-CORPUS: argc/argv (with spaces and empty arguments) and chosen environment variables
// ARGS: first "second arg" "" --flag=value ümlaut
// ENV: KILN_TEST_VAR=hello-from-env KILN_OTHER=x=y=z
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++) printf("argv[%d]=[%s] len=%zu\n", i, argv[i], strlen(argv[i]));
    printf("argv[argc] is NULL: %d\n", argv[argc] == NULL);
    const char *v = getenv("KILN_TEST_VAR");
    printf("KILN_TEST_VAR=%s\n", v ? v : "(unset)");
    v = getenv("KILN_OTHER");
    printf("KILN_OTHER=%s\n", v ? v : "(unset)");
    v = getenv("KILN_SURELY_UNSET");
    printf("KILN_SURELY_UNSET=%s\n", v ? v : "(unset)");
    int kiln_vars = 0;
    for (char **e = environ; *e; e++) if (strncmp(*e, "KILN_", 5) == 0) kiln_vars++;
    printf("KILN_ variables in environ: %d\n", kiln_vars);
    setenv("KILN_SET_LATER", "42", 1);
    printf("after setenv: %s\n", getenv("KILN_SET_LATER"));
    return 0;
}
