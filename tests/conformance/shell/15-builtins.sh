#!/bin/sh
# Builtins: command -v/type, alias, read -n, printf builtin, test/[ forms, true/false/:, pwd, times-free.
set -e
command -v ls
command -v cd
type echo | sed 's/ is .*builtin.*/ is a builtin/'
command -v nosuch || echo "nosuch: status $?"
alias ll='ls -1'
alias ll
unalias ll
alias ll 2>/dev/null || echo "alias removed"
printf 'abcdef' | { read -n 3 x; echo "read -n 3: $x"; }
[ 3 -lt 10 ] && [ abc \< abd ] && [ -n "x" ] && [ -z "" ] && echo "test forms"
[ 1 -eq 1 -a 2 -eq 2 ] && [ 1 -eq 2 -o 2 -eq 2 ] && echo "-a and -o"
[ ! -e /nonexistent ] && echo "negation"
test "abc" = "abc" && test "a" != "b" && echo "string compare"
[ 010 -eq 10 ] && echo "leading zero is decimal in test"
status=0; [ 1 -eq x ] 2>/tmp/err || status=$?
echo "bad integer: status $status"
echo "$(( $(printf '%d' "'A") ))"
v=$(printf '%s' 'no newline'); echo "[$v]"
