#!/bin/sh
# ln -s (relative, absolute, dangling), readlink and readlink -f, test -L/-e, reading through links.
set -e
mkdir -p dir/sub
echo target > dir/sub/file
ln -s sub/file dir/rel
ln -s /work/dir/sub/file abs
ln -s nowhere dangling
ln -s dir/sub dirlink
for l in dir/rel abs dangling dirlink; do readlink $l; done
readlink -f dir/rel
readlink -f dirlink/../sub/file
cat dir/rel abs dirlink/file
test -L dangling && echo "dangling is a link"
test -e dangling || echo "dangling target missing"
test -h dir/rel && test -f dir/rel && echo "rel is a link to a regular file"
test -d dirlink && echo "dirlink is a directory (followed)"
ls dirlink/
ln -sf dir/sub/file dangling
cat dangling
if cat nowhere 2>/tmp/err; then exit 1; fi
cat /tmp/err
