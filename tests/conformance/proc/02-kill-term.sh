#!/bin/sh
# kill -TERM, -KILL, -HUP, -USR2, -ALRM on a background sleep; wait reports 128+signal.
# (wait's stderr is dropped: ash prints "Terminated" only when wait itself reaps the job, a race.)
# (INT is left out: a background job ignores SIGINT from the moment ash sets that up, so an early kill races.)
for sig in TERM KILL HUP USR2 ALRM; do
  sleep 10 &
  pid=$!
  kill -$sig $pid
  wait $pid 2>/dev/null
  s=$?
  echo "$sig: wait status $s"
  [ "$s" -gt 128 ] || bad=1
done
sleep 10 &
kill -s TERM $! && echo "kill -s TERM ok"
wait $! 2>/dev/null; echo "status $?"
kill -0 $$ && echo "kill -0 on myself succeeds"
kill -0 99999 2>/dev/null || echo "kill -0 on a missing pid fails"
[ -z "$bad" ]
