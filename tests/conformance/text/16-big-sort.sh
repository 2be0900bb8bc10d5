#!/bin/sh
# Sorting and filtering 50,000 lines: sort -n/-u/-r, uniq -c on a large stream, a 256 KiB single line through sed.
set -e
awk 'BEGIN { x = 7; for (i = 0; i < 50000; i++) { x = (x * 69069 + 1) % 4294967296; print x % 100000 } }' > nums
sort -n nums | md5sum
sort -n nums | head -n 3
sort -rn nums | head -n 3
sort -u nums | wc -l
sort nums | uniq -c | sort -rn | head -n 3
head -c 262144 /dev/zero | tr '\0' a > line; echo >> line
sed 's/a/b/g' line | md5sum
awk '{ print length($0) }' line
grep -c '^a*$' line
