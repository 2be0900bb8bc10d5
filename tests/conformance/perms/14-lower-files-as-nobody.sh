#!/bin/sh
# Files of the image (the read-only lower layer) as nobody: read /etc/passwd, no writes or deletes in /etc.
set -e
su -s /bin/sh nobody -c '
  grep -c "^root:" /etc/passwd
  echo x 2>/dev/null >> /etc/passwd || echo "append to /etc/passwd refused"
  rm -f /etc/group 2>&1 || echo "rm status $?"
  touch /etc/newfile 2>&1 || echo "touch status $?"
  mv /etc/passwd /tmp/p 2>&1 || echo "mv status $?"
  ls /root >/dev/null 2>&1 && echo "can list /root" || echo "cannot list /root"
'
test -f /etc/group && test -f /etc/passwd && echo "image files intact"
stat -c "%a %U:%G %n" /etc /etc/passwd /tmp
