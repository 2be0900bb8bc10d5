#!/bin/sh
# expr arithmetic/strings/regex, seq forms, bc and dc arithmetic, factor.
set -e
expr 7 + 5
expr 7 \* 6
expr 17 / 5
expr 17 % 5
expr length "kiln"
expr substr "conformance" 4 4
expr index "kiln" l
expr "abc123" : '[a-z]*'
expr "abc123" : '[a-z]*\([0-9]*\)'
expr 3 \< 10
expr "b" \> "a"
status=0; expr 0 + 0 || status=$?
echo "expr zero result status $status"
seq 5
seq 2 3 14
seq -w 8 11
seq -s: 1 5
seq 3 -1 1
seq 0.5 0.25 1.5
echo '2^64 + 1' | bc
echo 'scale=10; 4*a(1)' | bc -l
echo '1 2 + p 10 3 / p 2 16 ^ p' | dc
factor 360 1001 9973
