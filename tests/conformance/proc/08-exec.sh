#!/bin/sh
# exec replaces the shell: later commands never run, the status is the new program's; exec in a subshell.
# EXPECT-STATUS: 7
sh -c 'exec echo replaced; echo not reached'
echo "status $?"
sh -c 'exec sh -c "exit 5"; echo not reached'
echo "exec'd status $?"
(exec echo "in subshell"); echo "parent continues"
sh -c 'exec nosuchprog; echo "not reached"' 2>/tmp/err
echo "exec of missing program: $?"
sed 's/^[^:]*: //' /tmp/err
sh -c 'echo "pid kept: $([ $$ -gt 0 ] && echo yes)"; exec sh -c "echo still running"'
exec sh -c 'echo "final exec"; exit 7'
echo "not reached"
