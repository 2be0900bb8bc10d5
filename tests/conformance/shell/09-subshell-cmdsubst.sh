#!/bin/sh
# Subshells isolate variables, cd and traps; command substitution nests and strips trailing newlines.
set -e
x=outer
(x=inner; cd /tmp; echo "in subshell x=$x pwd=$(pwd)")
echo "after subshell x=$x pwd=$(pwd)"
{ x=braces; }; echo "brace group changes x=$x"
y=$(echo "nested $(echo "deeper $(echo deepest)")")
echo "$y"
z=`echo backticks \`echo inner\``
echo "$z"
t=$(printf 'trailing\n\n\n')
echo "[$t]"
lines=$(printf 'a\nb\nc')
echo "$lines" | wc -l
echo "$(seq 1 3)"
echo $(seq 1 3)
n=$(echo 5); [ "$n" -eq 5 ] && echo "numeric from substitution"
s=$(exit 3) || echo "substitution status $?"
(exit 2) || echo "subshell status $?"
echo "$( (echo sub; echo shell) | tr a-z A-Z )"
