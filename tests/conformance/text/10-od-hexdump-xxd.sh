#!/bin/sh
# od, hexdump and xxd views of the same bytes, and xxd -r back to the bytes.
set -e
printf 'Kiln\000\001\377 binary\n\tend' > b
od -c b
od -A x -t x1 b
od -A d -t u2 b
od -t o1 -N 4 b
hexdump -C b
hexdump -e '8/1 "%02x " "\n"' b
xxd b
xxd -p b
xxd -p b | xxd -r -p | cmp - b && echo "xxd round trip ok"
xxd -l 4 -s 2 b
seq 1 50 | od -A n -t x1 | head -n 3
