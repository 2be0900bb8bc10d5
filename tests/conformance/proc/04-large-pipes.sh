#!/bin/sh
# Pipelines moving megabytes: yes|head -c, seq|md5sum, tr through pipes, and multi-stage pipelines.
set -e
yes | head -c 1000000 | wc -c
yes kiln | head -n 100000 | sort | uniq -c
seq 1 200000 | md5sum
seq 1 100000 | tr 0-9 a-j | tail -n 2
dd if=/dev/zero bs=65536 count=32 2>/dev/null | tr '\0' x | wc -c
seq 1 50000 | awk '{ s += $1 } END { print s }'
seq 1 30000 | sed 's/$/ line/' | grep -c '7 line$'
head -c 500000 /dev/zero | gzip -c | gunzip -c | wc -c
seq 1 10 | while read -r x; do echo $((x * x)); done | paste -s -d+ | bc
