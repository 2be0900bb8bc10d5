# traps and signals, background jobs, wait, kill
# BG_NICE (on by default) makes every background job call nice(5); vkernel has no setpriority
# yet, so that is tested on its own (test_debian_shells.py, zsh-bg-nice).
unsetopt bg_nice
TRAPUSR1() { print "got USR1" }
kill -USR1 $$
print after-usr1
{ integer n=0; while (( n++ < 20000 )); do :; done; for i in 1 2 3; do print "bg $i"; done } > /tmp/bg.out &
wait $!; print "bg rc=$?"
while read -r l; do print "$l"; done < /tmp/bg.out
( while :; do :; done ) &
spin=$!
kill -TERM $spin
wait $spin; print "spinner rc=$?"
( integer i=0; while (( i++ < 20000 )); do :; done; exit 42 ) &
wait $!; print "rc42=$?"
trap 'print "ZERR trap"' ZERR
false
trap - ZERR
( trap 'print "sub got TERM"; exit 1' TERM; kill -TERM $sysparams[pid] 2>/dev/null || kill -TERM $(exec /bin/zsh-static -fc 'print $PPID'); print unreachable ) ; print "sub rc=$?"
producer() { for i in 1 2 3; do print "p$i"; done }
producer | while read -r line; do print "got $line"; done
TRAPEXIT() { print "EXIT trap, status $?" }
exit 6
