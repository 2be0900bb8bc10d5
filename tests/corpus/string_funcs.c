// KILN-CORPUS: strlen, memcpy, memmove (overlapping), memset, memcmp, strcmp ordering, strstr, strchr, strtok, strncpy
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static char buf[70000];
    for (int i = 0; i < 65536; i++) buf[i] = (char)('a' + (i * 7) % 26);
    buf[65536] = 0;
    printf("strlen %zu\n", strlen(buf));
    for (int off = 0; off < 40; off += 3) printf("%zu ", strlen(buf + 65536 - off));
    printf("\n");
    char a[256], b[256];
    for (int i = 0; i < 256; i++) a[i] = (char)i;
    for (int n = 0; n < 256; n += 17) {
        memset(b, 0x5a, sizeof b);
        memcpy(b + (n % 13), a, (size_t)n);
        printf("%d:%d ", n, memcmp(b + (n % 13), a, (size_t)n));
    }
    printf("\n");
    char ov[64] = "0123456789abcdefghijklmnopqrstuvwxyz";
    memmove(ov + 5, ov, 20);  printf("memmove fwd: %s\n", ov);
    memmove(ov, ov + 7, 20);  printf("memmove back: %s\n", ov);
    static char big[100000];
    for (int i = 0; i < 100000; i++) big[i] = (char)(i % 251);
    memmove(big + 1, big, 99999);
    memmove(big + 3000, big + 3, 50000);
    unsigned long h = 0;
    for (int i = 0; i < 100000; i++) h = h * 131 + (unsigned char)big[i];
    printf("big memmove hash %lu\n", h);
    const char *words[] = {"apple", "Apple", "apples", "app", "", "banana", "\xff", "a\x80", "zebra"};
    for (int i = 0; i < 9; i++) {
        for (int j = 0; j < 9; j++) {
            int c = strcmp(words[i], words[j]);
            putchar(c < 0 ? '<' : c > 0 ? '>' : '=');
        }
        putchar('\n');
    }
    printf("strncmp %d %d\n", strncmp("abcdef", "abcxyz", 3) == 0, strncmp("abcdef", "abcxyz", 4) < 0);
    const char *hay = "the quick brown fox jumps over the lazy dog; the end";
    const char *needles[] = {"the", "fox", "lazy dog", "cat", "", "end", "d"};
    for (int i = 0; i < 7; i++) {
        const char *p = strstr(hay, needles[i]);
        printf("strstr(%s) = %ld\n", needles[i], p ? (long)(p - hay) : -1L);
    }
    char haybig[5000];
    memset(haybig, 'a', sizeof haybig - 1); haybig[4999] = 0;
    haybig[4990] = 'b';
    printf("strstr long = %ld\n", (long)(strstr(haybig, "aaaaaaaab") - haybig));
    printf("strchr %ld strrchr %ld\n", (long)(strchr(hay, 'q') - hay), (long)(strrchr(hay, 't') - hay));
    char csv[] = "alpha,beta,,gamma;delta, epsilon ;;zeta";
    int k = 0;
    for (char *t = strtok(csv, ",;"); t; t = strtok(NULL, ",;")) printf("tok%d=[%s]\n", k++, t);
    char dst[10];
    strncpy(dst, "hi", sizeof dst);
    printf("strncpy pad zero: %d\n", dst[9] == 0);
    printf("strspn %zu strcspn %zu\n", strspn("aaabbbccc", "ab"), strcspn("hello, world", ",! "));
    char *dup = strdup(hay);
    printf("strdup equal %d\n", strcmp(dup, hay) == 0);
    free(dup);
    return 0;
}
