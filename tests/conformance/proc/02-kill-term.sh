#!/bin/sh
# kill -TERM, -KILL, -INT and -HUP on a background sleep; wait reports 128+signal.
for sig in TERM KILL INT HUP USR2; do
  sleep 10 &
  pid=$!
  kill -$sig $pid
  wait $pid
  echo "$sig: wait status $?"
done
sleep 10 &
kill -s TERM $! && echo "kill -s TERM ok"
wait $!; echo "status $?"
kill -0 $$ && echo "kill -0 on myself succeeds"
kill -0 99999 2>/dev/null || echo "kill -0 on a missing pid fails"
