#!/bin/sh
# A process killed by a signal reports 128+N to the shell; kill -l maps numbers and names.
for sig in HUP INT QUIT ABRT KILL SEGV TERM USR1 ALRM; do
  sh -c "kill -$sig \$\$"
  s=$?
  echo "$sig -> $s"
  [ $sig = QUIT ] || [ "$s" -eq $((128 + $(kill -l $sig))) ] || bad=1
done
kill -l 9 15 1 10
kill -l TERM
kill -l 143
[ -z "$bad" ] && [ "$(kill -l 143)" = TERM ]
