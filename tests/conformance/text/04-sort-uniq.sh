#!/bin/sh
# sort -k/-t/-n/-r/-u/-s/-c and uniq -c/-d/-u/-i.
set -e
printf 'b,3,x\na,10,y\nc,2,x\na,1,z\nb,3,x\nd,10,w\n' > s
sort s
sort -t, -k2,2n s
sort -t, -k2,2nr -k1,1 s
sort -t, -k3,3 -s s
sort -u s
sort -r s
printf '10\n9\n-1\n1e3\n0x10\n 5\n' | sort -n
printf 'b\nB\na\nA\n' | sort
printf 'b\nB\na\nA\n' | sort -f
sort -c s 2>&1 || echo "unsorted: status $?"
sort s | sort -c && echo "sorted ok"
printf 'a\na\nb\nc\nc\nc\nd\n' > u
uniq u
uniq -c u
uniq -d u
uniq -u u
printf 'x\nX\ny\n' | uniq -i
sort s | uniq -c | sort -rn | head -n 2
