#!/bin/sh
# xargs runs commands in batches (-n), with placeholders (-I), from NUL lists (-0), and reports failures.
seq 1 10 | xargs -n 3 echo batch
seq 1 5 | xargs -I{} sh -c 'echo item {}'
printf 'a b\0c\0' | xargs -0 -n 1 echo arg
echo one two three | xargs
printf '' | xargs echo "runs once with no input:"
mkdir x; touch x/f1 x/f2 x/f3
find x -type f | sort | xargs wc -c | tail -n 1
seq 1 3 | xargs -n 1 sh -c 'exit $0'
s=$?
echo "failing command: $s"
echo a | xargs -n 1 sh -c 'exit 255' 2>/tmp/err
echo "exit 255 stops xargs: $?"
[ "$s" -eq 123 ]
