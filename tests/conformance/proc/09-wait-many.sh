#!/bin/sh
# Many concurrent children: each one's status comes back through wait, in the order asked for.
pids=
for i in 1 2 3 4 5 6 7 8; do
  (sleep 0.0$i; exit $i) &
  pids="$pids $!"
done
all=
for p in $pids; do wait $p; s=$?; echo "status $s"; all="$all$s"; done
for i in 1 2 3 4 5; do (echo "child $i" > out.$i) & done
wait
cat out.1 out.2 out.3 out.4 out.5
i=0; while [ $i -lt 30 ]; do true & i=$((i + 1)); done; wait; echo "30 children reaped"
[ "$all" = 12345678 ] && [ "$(cat out.1 out.2 out.3 out.4 out.5 | wc -l)" -eq 5 ]
