# functions, recursion, locals, subshells, pipes, redirection, here-docs, float maths
fib() { local n=$1; if (( n < 2 )); then print $n; else print $(( $(fib $((n-1))) + $(fib $((n-2))) )); fi }
print "fib(12)=$(fib 12)"
counter=0
bump() { local counter=100; (( counter++ )); print "inner=$counter" }
bump; print "outer=$counter"
status() { return $1 }
status 7; print "rc=$?"
( exit 3 ); print "subshell rc=$?"
print one two three | read a b c; print "$c $b $a"
while IFS= read -r line; do print "> $line"; done <<END
first line
  indented $counter
END
print data > /tmp/f.txt; print more >> /tmp/f.txt
while read -r l; do print "read: $l"; done < /tmp/f.txt
exec 3>/tmp/g.txt; print via-fd3 >&3; exec 3>&-; read -r v < /tmp/g.txt; print "$v"
out=$(/bin/zsh-static -fc 'print child $((6*7)); exit 5'); print "child said [$out] rc=$?"
set -- a "b c" d; print "$# args: $2"; shift; print "now $1"
float f=0.1; float g; for i in {1..10}; do (( g += f )); done; printf '%.17g\n' $g
print $(( 1e300 * 1e10 )) $(( 7 / 2.0 )) $(( 2.0 ** 0.5 )) $(( 1.0 / 3 ))
typeset -F 3 t=2.5; print "t=$t"
repeat 3 print -n "r"; print
