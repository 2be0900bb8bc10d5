#!/bin/sh
# Concatenated gzip members decompress to the concatenation; zcat, gzip -dc and gunzip -c agree.
set -e
echo first | gzip -c > multi.gz
echo second | gzip -c >> multi.gz
seq 1 3 | gzip -c >> multi.gz
zcat multi.gz
gzip -dc multi.gz | md5sum
gunzip -c multi.gz | md5sum
gunzip -t multi.gz && echo "multi-member test ok"
cat multi.gz multi.gz | gunzip -c | wc -l
