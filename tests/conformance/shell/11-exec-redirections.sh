#!/bin/sh
# exec with redirections: opening, duplicating, closing file descriptors; 2>&1 order; noclobber.
set -e
exec 3> out3
echo "to fd 3" >&3
echo "again to fd 3" >&3
exec 3>&-
cat out3
exec 4< out3
read -r first <&4
read -r second <&4
exec 4<&-
echo "read: $first / $second"
{ echo out; echo err >&2; } > both 2>&1
cat both
{ echo out; echo err >&2; } 2>&1 > only-out | sed 's/^/piped: /'
cat only-out
exec 5>&1
echo "through saved stdout" >&5
exec 5>&-
set -C
status=0; (echo clobber > out3) 2>/tmp/err || status=$?
echo "noclobber: status $status: $(sed 's/^.*: //' /tmp/err)"
echo forced >| out3
cat out3
set +C
echo appended >> out3
cat out3
sh -c 'echo "child writes fd 6" >&6' 6> fd6
cat fd6
status=0; (echo x >&7) 2>/tmp/err || status=$?
echo "bad fd: status $status: $(sed 's/^.*: //' /tmp/err)"
