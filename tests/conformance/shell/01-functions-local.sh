#!/bin/sh
# Functions: arguments, return status, recursion with local variables, globals vs locals, nested calls.
fib() {
  local n=$1 a b
  if [ "$n" -lt 2 ]; then echo "$n"; return; fi
  a=$(fib $((n - 1)))
  b=$(fib $((n - 2)))
  echo $((a + b))
}
greet() { echo "hello $1 ($# args)"; }
setglobal() { g=changed; local l=inner; echo "in function: g=$g l=$l"; }
status() { return "$1"; }
g=orig; l=outer
greet world extra args
f10=$(fib 10); echo "$f10"
setglobal
echo "after: g=$g l=$l"
status 7; echo "return status $?"
status 0 && echo "return 0 is success"
count() { local i=0; while [ $i -lt "$1" ]; do i=$((i + 1)); done; echo "counted $i"; }
count 1000
outer() { inner() { echo "inner defined by outer"; }; inner; }
outer; inner
unset -f inner
type inner >/dev/null 2>&1 || echo "inner unset"
[ "$f10" -eq 55 ] && [ "$g $l" = "changed outer" ]
