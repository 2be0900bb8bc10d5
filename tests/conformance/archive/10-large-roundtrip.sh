#!/bin/sh
# Several megabytes of varied data through gzip, bzip2 and tar; checksums before and after agree.
set -e
awk 'BEGIN { x = 12345; for (i = 0; i < 200000; i++) { x = (x * 1103515245 + 12345) % 2147483648; print x, i % 97 } }' > data
wc -c < data
md5sum data
gzip -9 -c data | gunzip -c | md5sum
bzip2 -c data | bunzip2 -c | md5sum
mkdir d; cp data d/one; cp data d/two; seq 1 100000 > d/three
tar -czf big.tgz d
mkdir out; tar -xzf big.tgz -C out
(cd out/d && md5sum one two three)
