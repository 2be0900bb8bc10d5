#!/bin/sh
# timeout lets a fast command finish with its status and stops a slow one with a signal.
timeout 5 sh -c 'exit 3'; echo "fast command: $?"
{ timeout 1 sleep 10; } 2>/dev/null; s=$?; echo "slow command (TERM): $s"
{ timeout -s KILL 1 sleep 10; } 2>/dev/null; echo "slow command (KILL): $?"
{ timeout -s INT 1 sleep 10; } 2>/dev/null; echo "slow command (INT): $?"
timeout -s USR1 1 sh -c 'trap "echo caught USR1; exit 7" USR1; sleep 3; echo "sleep done"'; echo "trapped: $?"
timeout 2 sleep 0.1; echo "finished in time: $?"
[ "$s" -eq 143 ]
