#!/bin/sh
# EXIT traps run on normal exit, on exit N and on error exit, keep the status, and can be reset.
# EXPECT-STATUS: 4
sh -c 'trap "echo exit trap ran" EXIT; echo body'
echo "status $?"
sh -c 'trap "echo trap sees status \$?" EXIT; exit 5'
echo "status $?"
sh -ec 'trap "echo cleanup after error" EXIT; false; echo no'
echo "status $?"
sh -c 'trap "echo first" EXIT; trap "echo second" EXIT; :'
sh -c 'trap "echo removed" EXIT; trap - EXIT; echo "no trap output"'
sh -c 'trap "" EXIT; trap' && echo "trap listing done"
sh -c 'f() { trap "echo in trap" EXIT; }; f; echo "after f"'
(trap 'echo subshell exit' EXIT; echo in subshell)
trap 'echo main shell exiting with $?' EXIT
exit 4
