#!/bin/sh
# cp -r copies a tree; cp -a keeps times, modes and symlinks; contents match by checksum.
set -e
mkdir -p src/sub/deep
printf 'alpha\n' > src/a.txt
seq 1 500 > src/sub/nums
printf 'deep\n' > src/sub/deep/d.txt
ln -s ../a.txt src/sub/link
chmod 640 src/sub/nums
touch -d '2001-02-03 04:05:06' src/a.txt src/sub/nums
cp -r src plain
cp -a src archive
cd src && find . | sort && cd ..
(cd src && find . -type f | sort | xargs md5sum) > /tmp/src.sums
(cd plain && md5sum -c /tmp/src.sums)
(cd archive && md5sum -c /tmp/src.sums)
stat -c '%n %a %Y' archive/a.txt archive/sub/nums
stat -c '%n %F' archive/sub/link plain/sub/link
readlink archive/sub/link
if cp src nodir 2>/tmp/err; then exit 1; fi
echo "cp dir without -r: $(cat /tmp/err)"
