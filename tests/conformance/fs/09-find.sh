#!/bin/sh
# find by -type, -name, -size, -maxdepth, -mindepth, -empty, -path, -exec, -prune.
set -e
mkdir -p t/a/b/c t/x
echo hi > t/a/one.txt
seq 1 2000 > t/a/b/big.log
: > t/x/empty.txt
ln -s a/one.txt t/lnk
find t -type f | sort
find t -type d | sort
find t -type l
find t -name '*.txt' | sort
find t -type f -size +2k
find t -maxdepth 1 | sort
find t -mindepth 3 | sort
find t -empty | sort
find t -path '*b*' -type f
find t -name x -prune -o -type f -print | sort
find t -type f -exec wc -c {} \; | sort
find t -name '*.log' -exec sh -c 'echo found $(basename "$1")' _ {} \;
