#!/bin/sh
# cpio -o (newc) archives a file list and cpio -i -d extracts it with the same contents.
set -e
mkdir -p src/a/b
seq 1 3000 > src/nums
echo leaf > src/a/b/leaf
ln -s nums src/link
find src | sort | cpio -o -H newc > a.cpio 2>/tmp/err
cat /tmp/err
cpio -t < a.cpio 2>/dev/null
mkdir out; cd out
cpio -i -d < ../a.cpio 2>/tmp/err; cat /tmp/err
cmp src/nums ../src/nums && cmp src/a/b/leaf ../src/a/b/leaf && echo "contents match"
readlink src/link
