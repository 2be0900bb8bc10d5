#!/bin/sh
# A symlink loop gives ELOOP: reading fails with a message, the links themselves are intact.
# EXPECT-STATUS: 1
ln -s b a
ln -s a b
ln -s self self
for l in a b self; do readlink $l; done
test -L a && echo "a is a link"
test -e a || echo "a does not resolve"
cat a 2>&1
echo "cat status $?"
cat self/x 2>&1
echo "cat status $?"
readlink -f a
echo "readlink -f status $?"
ls a b self
exec cat a
