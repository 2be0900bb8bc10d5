#!/bin/sh
# bzip2 round trip with checksums, and the other compressors busybox has: lzop round trip.
set -e
seq 1 30000 > data
bzip2 -c data > data.bz2
bzip2 -t data.bz2 2>/dev/null || bunzip2 -t data.bz2
bunzip2 -c data.bz2 | cmp - data && echo "bzip2 round trip ok"
bzcat data.bz2 | md5sum
md5sum < data.bz2
tar -cjf t.tbz data && tar -tjf t.tbz
lzop -c data > data.lzo
lzop -dc data.lzo | cmp - data && echo "lzop round trip ok"
echo 'not bzip2' > bad.bz2
status=0; bunzip2 -c bad.bz2 > /dev/null 2>/tmp/err || status=$?
echo "bad bz2: status $status: $(cat /tmp/err)"
