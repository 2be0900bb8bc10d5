# traps and signals, background jobs, wait, kill
trap 'echo "got USR1"' USR1
kill -USR1 $$
echo after-usr1
trap 'echo "ERR trap at line $LINENO"' ERR
false
trap - ERR
{ for i in 1 2 3; do echo "bg $i"; done; } > /tmp/bg.out &
wait $!; echo "bg rc=$?"
while read -r l; do echo "$l"; done < /tmp/bg.out
( trap - EXIT; while :; do :; done ) &
spin=$!
kill -TERM $spin
wait $spin; echo "spinner rc=$?"
( exit 42 ) &
wait $!; echo "rc42=$?"
producer() { for i in 1 2 3 4 5; do echo "p$i"; done; }
while read -r line; do echo "got $line"; done < <(producer)
read -t 0 probe < /tmp/bg.out; echo "input ready rc=$?"
f() { trap 'echo "RETURN trap in f"' RETURN; echo in-f; }
f
( trap 'echo "sub got TERM"; exit 1' TERM; kill -TERM $BASHPID; echo unreachable ); echo "sub rc=$?"
ulimit -n 64; echo "nofile=$(ulimit -n)"
trap 'echo "EXIT trap, status $?"' EXIT
exit 6
