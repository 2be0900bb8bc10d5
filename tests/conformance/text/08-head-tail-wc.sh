#!/bin/sh
# head -n/-c, tail -n/-n +N/-c, wc -l/-w/-c/-L on files and stdin.
set -e
seq 1 100 > n
head -n 3 n
head -c 7 n | od -c
head -n -97 n
tail -n 2 n
tail -n +98 n
tail -c 8 n
wc -l n
wc -w < n
wc -c n
printf 'one two\nthree\nfour five six seven\n' > w
wc w
wc -L w
wc -l n w
printf 'no trailing newline' | wc -l
head -n 1 n w
