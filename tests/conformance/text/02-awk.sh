#!/bin/sh
# awk: fields and -F, NR/NF, arrays and for-in (sorted), printf formats, functions, split/gsub/substr/index/length, numbers.
set -e
printf 'alice 30 paris\nbob 25 london\ncarol 35 paris\ndave 40 berlin\n' > people
awk '{print NR": "$1" is "$2}' people
awk '$2 > 28 {n++; s += $2} END {print n, s, s / n}' people
awk '{c[$3]++} END {for (k in c) print k, c[k]}' people | sort
awk -F: '{print $1, NF}' /etc/passwd
awk 'BEGIN {printf "%5.2f|%-6s|%06d|%x|%o|%e|%c\n", 3.14159, "ab", 42, 255, 8, 12345.678, 65}'
awk 'function fact(n) { return n <= 1 ? 1 : n * fact(n - 1) } BEGIN { for (i = 1; i <= 10; i++) printf "%d ", fact(i); print "" }'
awk 'BEGIN { s = "the quick brown fox"; n = split(s, w, " "); print n, w[4]; gsub(/o/, "0", s); print s;
  print substr(s, 5, 5), index(s, "br"), length(s), toupper("mix"), tolower("MIX") }'
awk 'BEGIN { print 1/3, 2147483647 + 1, 9007199254740992 + 1, int(-3.7), -7 % 3, 1e6, 1e-5, 100000 * 100000, 0.1 + 0.2 }'
awk 'BEGIN { x = "10"; y = 9; print (x > y), ("10" > "9"), (x + 0 > y) }'
awk 'NR % 2 == 0' people
awk '{ $2 = $2 * 2; print }' OFS=, people
awk 'BEGIN { while ((getline line < "people") > 0) n++; print n " lines" }'
seq 1 10 | awk '{ s += $1 } END { print "sum", s }'
echo "a-b-c" | awk -F- -v OFS=+ '{ $1 = $1; print }'
awk 'BEGIN { printf "%s %s\n", sprintf("%03d", 7), substr("hello", 2) }'
