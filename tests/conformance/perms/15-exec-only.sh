#!/bin/sh
# Execute permission without read: a mode 711 program runs for another user; mode 700 is refused.
set -e
mkdir /tmp/x711 /tmp/x700
cp /bin/busybox /tmp/x711/busybox; chmod 711 /tmp/x711/busybox; ln -s busybox /tmp/x711/echo
cp /bin/busybox /tmp/x700/busybox; chmod 700 /tmp/x700/busybox; ln -s busybox /tmp/x700/echo
su -s /bin/sh nobody -c '
  /tmp/x711/echo "a 711 program runs"
  cat /tmp/x711/busybox > /dev/null 2>&1 || echo "but nobody cannot read it"
  /tmp/x700/echo "not printed" 2>&1 || echo "700 program refused: status $?"
'
