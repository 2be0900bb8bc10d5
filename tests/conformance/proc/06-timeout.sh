#!/bin/sh
# timeout lets a fast command finish with its status and stops a slow one with a signal.
timeout 5 sh -c 'exit 3'; echo "fast command: $?"
timeout 1 sleep 10; echo "slow command (TERM): $?"
timeout -s KILL 1 sleep 10; echo "slow command (KILL): $?"
timeout -s INT 1 sh -c 'trap "echo caught INT; exit 7" INT; while :; do sleep 0.05; done'; echo "trapped: $?"
timeout 2 sleep 0.1; echo "finished in time: $?"
