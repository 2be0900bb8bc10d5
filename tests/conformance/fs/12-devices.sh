#!/bin/sh
# /dev/null swallows and reads empty; /dev/zero reads zeros; /dev/full refuses writes with ENOSPC.
test -c /dev/null && echo "/dev/null is a character device"
echo gone > /dev/null && echo "write to /dev/null ok"
wc -c < /dev/null
head -c 8 /dev/zero | od -A n -t x1
head -c 16 /dev/urandom | wc -c
if echo x > /dev/full 2>/tmp/err; then echo "write to /dev/full succeeded"; exit 1; fi
echo "/dev/full refused"
sed 's/^.*: //' /tmp/err
[ "$(head -c 4 /dev/zero | od -A n -t x1 | tr -d " ")" = 00000000 ]
