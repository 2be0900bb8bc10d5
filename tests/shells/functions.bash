# functions, recursion, locals, subshells, pipes, redirection, here-docs
fib() { local n=$1; if (( n < 2 )); then echo $n; else echo $(( $(fib $((n-1))) + $(fib $((n-2))) )); fi; }
echo "fib(12)=$(fib 12)"
counter=0
bump() { local counter=100; counter=$((counter+1)); echo "inner=$counter"; }
bump; echo "outer=$counter"
fact() { (( $1 <= 1 )) && { echo 1; return; }; echo $(( $1 * $(fact $(( $1 - 1 ))) )); }
echo "fact(20)=$(fact 20)"
status() { return $1; }
status 7; echo "rc=$?"
( exit 3 ); echo "subshell rc=$?"
echo one two three | { read -r a b c; echo "$c $b $a"; }
cat_builtin() { while IFS= read -r line; do echo "> $line"; done; }
cat_builtin <<END
first line
  indented $counter
END
echo data > /tmp/f.txt; echo more >> /tmp/f.txt
while read -r l; do echo "read: $l"; done < /tmp/f.txt
exec 3>/tmp/g.txt; echo via-fd3 >&3; exec 3>&-; read -r v < /tmp/g.txt; echo "$v"
out=$(/bin/bash-static -c 'echo child $((6*7)); exit 5'); echo "child said [$out] rc=$?"
set -- a "b c" d; echo "$# args: $2"; shift; echo "now $1"
