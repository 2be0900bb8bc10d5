#!/bin/sh
# rm: files, -f on missing, refusal on directories without -r, -r on trees, unlink.
set -e
mkdir -p tree/a/b
touch tree/a/b/f tree/g file1 file2
rm file1
test ! -e file1 && echo "file1 removed"
rm -f nosuch && echo "rm -f missing ok"
if rm nosuch 2>/tmp/err; then exit 1; fi
echo "rm missing: $(cat /tmp/err)"
if rm tree 2>/tmp/err; then exit 1; fi
echo "rm dir: $(cat /tmp/err)"
rm -r tree
test ! -e tree && echo "tree removed"
unlink file2
ls -A
