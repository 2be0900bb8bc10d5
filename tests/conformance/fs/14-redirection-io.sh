#!/bin/sh
# Files through redirections: >, >>, <>, 2>, a 1 MB file written in pieces, and read back.
set -e
echo one > f
echo two >> f
cat f
exec 3<>rw
echo hello >&3
exec 3>&-
cat rw
: > f
wc -c < f
i=0
while [ $i -lt 64 ]; do
  dd if=/dev/zero bs=16384 count=1 2>/dev/null | tr '\0' "$(printf "\\$(printf %o $((65 + i % 26)))")" >> big
  i=$((i + 1))
done
wc -c < big
md5sum big
head -c 5 big; echo
tail -c 5 big; echo
ls nosuch 2> err.txt || echo "ls status $?"
cat err.txt
