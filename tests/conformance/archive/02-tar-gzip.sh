#!/bin/sh
# tar with -z: compressed archive lists and extracts like the plain one; gunzip -t accepts it.
set -e
mkdir -p src/sub
seq 1 20000 > src/big
echo small > src/sub/small
tar -czf t.tgz src
gunzip -t t.tgz && echo "gunzip -t ok"
tar -tzf t.tgz | sort
mkdir out; tar -xzf t.tgz -C out
cmp src/big out/src/big && cmp src/sub/small out/src/sub/small && echo "contents match"
gunzip -c t.tgz > t.tar
tar -tf t.tar | sort | md5sum
tar -tzf t.tgz | sort | md5sum
zcat t.tgz | tar -xOf - src/sub/small
tar -cf - src | gzip -1 | tar -tzf - | wc -l
