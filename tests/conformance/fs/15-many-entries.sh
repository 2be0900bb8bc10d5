#!/bin/sh
# A directory with 2000 entries: listing, counting, sorted order, deleting half through find -exec, removing all.
set -e
mkdir big
i=0
while [ $i -lt 2000 ]; do : > big/f$i; i=$((i + 1)); done
ls big | wc -l
ls big | head -n 3
ls big | tail -n 3
find big -type f | wc -l
find big -name 'f*[02468]' -exec rm {} +
ls big | wc -l
ls -a big | wc -l
set -- big/*
echo "glob sees $# entries"
rm -r big
test ! -e big && echo "removed"
