#!/bin/sh
# gunzip -t and -d reject corrupt and truncated input with a message and a failure status.
seq 1 5000 | gzip -c > good.gz
gunzip -t good.gz; echo "good: $?"
head -c 200 good.gz > truncated.gz
gunzip -t truncated.gz 2>&1; s=$?; echo "truncated: $s"
echo 'not gzip at all' > plain.gz
gunzip -t plain.gz 2>&1; echo "not gzip: $?"
size=$(wc -c < good.gz)
{ head -c 100 good.gz; printf 'XXXXXXXX'; tail -c $((size - 108)) good.gz; } > corrupt.gz
gunzip -c corrupt.gz > /dev/null 2>/tmp/err; echo "corrupt body: $?"
cat /tmp/err
gunzip missing.gz 2>&1; echo "missing: $?"
tar -tzf plain.gz 2>&1; echo "tar -z on non-gzip: $?"
[ "$s" -ne 0 ] && gunzip -t good.gz
