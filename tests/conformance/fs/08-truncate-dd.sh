#!/bin/sh
# truncate grows and shrinks files (sparse reads as zeros); dd with bs/count/skip/seek/conv=notrunc.
set -e
truncate -s 1M big
wc -c < big
od -A d -t x1 big
truncate -s 10 big
wc -c < big
printf 'ABCDEFGHIJKLMNOPQRSTUVWXYZ' > letters
dd if=letters of=part bs=4 skip=2 count=3 2>/tmp/dd.err
cat part; echo
cat /tmp/dd.err
printf '0123456789' > digits
dd if=letters of=digits bs=1 count=3 seek=4 conv=notrunc 2>/dev/null
cat digits; echo
dd if=/dev/zero bs=1024 count=64 2>/dev/null | wc -c
dd if=letters bs=5 2>/dev/null | wc -c
