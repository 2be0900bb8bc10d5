#!/bin/sh
# while read loops: IFS splitting, read -r, last line without newline, reading from a file and a pipe.
set -e
printf 'root:x:0\nuser:y:1000\nno newline at end' > input
while IFS=: read -r name pw id; do
  echo "name=$name pw=$pw id=$id"
done < input
printf 'a\\tb c\n  lead and trail  \n' > esc
while read line; do echo "[$line]"; done < esc
while read -r line; do echo "[$line]"; done < esc
while IFS= read -r line; do echo "[$line]"; done < esc
n=0
while read -r x; do n=$((n + x)); done <<EOF2
1
2
3
EOF2
echo "sum $n"
seq 1 5 | while read -r x; do echo "piped $x"; done
read -r first rest < input
echo "first=$first rest=$rest"
echo "a b c d" | { read -r one two; echo "one=$one two=$two"; }
