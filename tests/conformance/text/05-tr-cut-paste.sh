#!/bin/sh
# tr (ranges, -d, -s, -c, classes), cut (-c, -f, -d, -s), paste (-d, -s).
set -e
echo 'Hello, World!' | tr 'a-z' 'A-Z'
echo 'Hello, World!' | tr -d 'lo'
echo 'aaabbbccc   ddd' | tr -s 'a-c '
echo 'abc123def456' | tr -cd '0-9'; echo
echo 'tabs	and spaces' | tr '[:space:]' '_'; echo
echo 'MiXeD' | tr '[:upper:][:lower:]' '[:lower:][:upper:]'
printf 'a\nb\nc\n' | tr '\n' ' '; echo
echo 'abcdefghij' | cut -c 2-4
echo 'abcdefghij' | cut -c 1,3,5-
echo 'one:two:three:four' | cut -d: -f2
echo 'one:two:three:four' | cut -d: -f1,3-
printf 'a:b\nnodelim\nc:d\n' | cut -d: -f2 -s
cut -d: -f1,7 /etc/passwd
printf '1\n2\n3\n' > p1
printf 'a\nb\nc\n' > p2
paste p1 p2
paste -d, p1 p2
paste -s p1
paste -s -d+ p1
paste -s -d+ p1 | sed 's/$/\n/' | head -n1
