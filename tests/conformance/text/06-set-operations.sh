#!/bin/sh
# Set operations on line lists with sort -u/-m, uniq -d/-u and grep -Fx -f (busybox has no comm or join).
set -e
printf 'cherry\napple\ndate\nbanana\n' > c1
printf 'fig\nbanana\nelder\ncherry\n' > c2
sort -o s1 c1
sort -o s2 c2
echo "merge:"; sort -m s1 s2
echo "union:"; sort -u c1 c2
echo "intersection:"; sort c1 c2 | uniq -d
echo "symmetric difference:"; sort c1 c2 | uniq -u
echo "only in c1:"; grep -Fxv -f c2 c1 | sort
echo "in both (grep):"; grep -Fx -f c2 c1
status=0; grep -Fx -f c2 /dev/null || status=$?
echo "nothing in common with an empty file: status $status"
