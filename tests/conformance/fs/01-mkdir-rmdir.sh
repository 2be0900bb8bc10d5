#!/bin/sh
# mkdir -p builds nested directories; rmdir removes only empty ones and fails otherwise.
set -e
mkdir -p a/b/c a/d
mkdir -p a/b/c            # -p on an existing path succeeds
ls -R a
if mkdir a 2>/tmp/err; then echo "mkdir of existing dir succeeded"; exit 1; fi
echo "mkdir existing: $(cat /tmp/err)"
if rmdir a 2>/tmp/err; then echo "rmdir of non-empty dir succeeded"; exit 1; fi
echo "rmdir non-empty: $(cat /tmp/err)"
rmdir a/b/c
rmdir -p a/d 2>/tmp/err || true
test -d a/b && echo "a/b still there"
test ! -e a/d && echo "a/d gone"
rm -r a
test ! -e a && echo "a removed"
