#!/bin/sh
# mv renames files and directories, moves into a directory, and replaces an existing file.
set -e
echo one > f1
echo two > f2
mkdir d
mv f1 g1
test ! -e f1 && cat g1
mv g1 d/
cat d/g1
mv -f f2 d/g1             # replaces the existing target
cat d/g1
test ! -e f2 && echo "f2 moved"
mkdir e
mv d e/
ls -R e
mv e/d renamed
ls renamed
mv missing somewhere 2>/tmp/err || echo "mv missing: status $? $(cat /tmp/err)"
test ! -e somewhere
