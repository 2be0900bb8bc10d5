#!/bin/sh
# trap handlers for USR1/USR2/HUP sent to the shell itself, ignored signals, and reset to default.
trap 'echo got USR1' USR1
trap 'echo got USR2; n=$((n + 1))' USR2
n=0
kill -USR1 $$
echo after USR1
kill -USR2 $$; kill -USR2 $$
echo "USR2 count $n"
trap '' HUP
kill -HUP $$
echo "HUP ignored"
trap - USR1
trap
sh -c 'kill -TERM $$; echo not reached'
echo "shell killed by TERM: $?"
sh -c 'trap "echo child got TERM; exit 9" TERM; kill -TERM $$; echo not reached'
echo "child status $?"
(trap '' INT; sh -c 'kill -INT $$; echo "INT ignored in child (inherited)"')
[ "$n" -eq 2 ]
