#!/bin/sh
# tar c/t/x round trip of a tree: listing, then every file's checksum matches after extraction.
set -e
mkdir -p src/a/b src/empty
seq 1 1000 > src/nums
printf 'hello\n' > src/a/hello.txt
head -c 100000 /dev/zero | tr '\0' 'z' > src/a/b/zeros
tar -cf t.tar src
tar -tf t.tar | sort
mkdir out && tar -xf t.tar -C out
(cd src && find . -type f | sort | xargs md5sum) > sums
(cd out/src && md5sum -c ../../sums)
find out | sort
tar -tf t.tar src/nums
tar -xOf t.tar src/a/hello.txt
status=0; tar -xf t.tar -C out src/missing 2>/tmp/err || status=$?
echo "missing member: status $status: $(cat /tmp/err)"
