#!/bin/sh
# set -e stops at a failing command but not in conditions or && lists; set -u refuses unset variables.
# EXPECT-STATUS: 3
sh -ec 'echo before; false; echo not reached'
echo "set -e: status $?"
sh -ec 'if false; then :; fi; false || true; ! true; echo "conditions do not trigger -e"'
sh -ec 'false && true; echo "&& list does not trigger -e"'
sh -ec 'x=$(false); echo "not reached"'
echo "failing command substitution in assignment: status $?"
sh -uc 'echo "${unset_var}"' 2>/tmp/err
echo "set -u: status $?"
sed 's/^[^:]*: //' /tmp/err
sh -uc 'echo "default ${unset_var:-ok}"'
sh -c 'set -e; f() { false; echo "in function"; }; f; echo "after f"'
echo "function under -e: status $?"
set -e
(exit 3)
echo "not reached"
