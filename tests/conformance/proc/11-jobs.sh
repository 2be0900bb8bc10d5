#!/bin/sh
# Job table of a non-interactive shell: jobs, %N job specs for kill and wait (wait's racy "Terminated" dropped).
sleep 5 &
sleep 5 &
jobs | sed 's/ *$//'
kill %1
wait %1 2>/dev/null; s1=$?; echo "job 1: $s1"
kill -KILL %2
wait %2 2>/dev/null; echo "job 2: $?"
echo "jobs empty"
(exit 9) &
wait %1 2>/dev/null; s3=$?; echo "new job 1: $s3"
[ "$s1 $s3" = "143 9" ]
