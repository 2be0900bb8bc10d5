#!/bin/sh
# Background jobs with &, $! and wait: wait returns each job's exit status, also for finished jobs.
(sleep 0.1; exit 3) &
p1=$!
(exit 5) &
p2=$!
sleep 0.2
wait $p1; s1=$?; echo "job 1 status $s1"
wait $p2; s2=$?; echo "job 2 status $s2"
[ "$p1" != "$p2" ] && echo "distinct pids"
case $p1 in *[!0-9]*|'') echo "bad pid" ;; *) echo "numeric pid" ;; esac
true & wait; echo "wait with no argument: $?"
echo "output from background" > bgout &
wait
cat bgout
wait 99999 2>/dev/null; s3=$?; echo "wait for a non-child: $s3"
[ "$s1 $s2 $s3" = "3 5 127" ] && [ "$(cat bgout)" = "output from background" ]
