#!/bin/sh
# gzip -1..-9 output is byte-identical for identical input and time; -d/-c/-k/-f behave.
set -e
seq 1 50000 > data
touch -d '2000-01-01 00:00:00' data
for l in 1 6 9; do
  gzip -$l -c data > data.$l.gz
  echo "level $l: $(wc -c < data.$l.gz) bytes $(md5sum < data.$l.gz)"
  gzip -d -c data.$l.gz | cmp - data
done
gzip -c -n data | md5sum
gzip data
test ! -e data && test -e data.gz && echo "gzip replaced the file"
gunzip data.gz
test -e data && test ! -e data.gz && echo "gunzip restored it"
gzip -k data 2>/dev/null || { gzip -c data > data.gz; }
status=0; gzip data 2>/tmp/err || status=$?
echo "existing .gz: status $status"
gzip -f data && echo "forced"
printf '' | gzip -c | gunzip -c | wc -c
