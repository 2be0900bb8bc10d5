#!/bin/sh
# Process ids agree without printing them: $! equals the child's $$, the child's $PPID is our $$, subshells keep $$.
set -e
sh -c 'echo $$ > child.pid; echo $PPID > child.ppid' &
bg=$!
wait
[ "$(cat child.pid)" = "$bg" ] && echo "\$! is the child's \$\$"
[ "$(cat child.ppid)" = "$$" ] && echo "child's \$PPID is our \$\$"
[ "$(sh -c 'echo $PPID')" = "$$" ] && echo "command substitution child sees us as parent"
[ "$(echo $$)" = "$$" ] && echo "subshell keeps \$\$"
( [ "$$" = "$(cat /dev/null; echo $$)" ] ) && echo "nested subshell keeps \$\$ too"
a=$(sh -c 'echo $$'); b=$(sh -c 'echo $$')
[ "$a" != "$b" ] && echo "two children have distinct pids"
[ "$$" -gt 1 ] && echo "our pid is above 1"
sh -c 'kill -0 $PPID' && echo "a child can signal-probe its parent"
