#!/bin/sh
# Named pipes (mkfifo): a writer and a reader in separate processes meet; opens block until both ends exist.
set -e
mkfifo p
seq 1 10000 > p &
wc -l < p
wait
(sleep 0.2; echo "late writer" > p) &
cat p
wait
exec 3<> p
echo "through a read-write fd" >&3
read -r line <&3
echo "$line"
exec 3>&-
{ echo one; echo two; } > p &
while read -r x; do echo "got $x"; done < p
wait
mkfifo q
(cat q | tr a-z A-Z > out) &
echo "upper me" > q
wait
cat out
