#!/bin/sh
# In sticky /tmp another user cannot remove or rename root's file, but can remove their own.
set -e
stat -c '/tmp mode %a' /tmp
: > /tmp/rootfile
su -s /bin/sh nobody -c '
  : > /tmp/nobodyfile && echo "nobody created a file"
  rm -f /tmp/rootfile 2>&1 || echo "rm root file refused"
  mv /tmp/rootfile /tmp/moved 2>&1 || echo "mv root file refused"
  rm /tmp/nobodyfile && echo "nobody removed own file"
'
test -e /tmp/rootfile && echo "root file still there"
mkdir plain; chmod 777 plain; : > plain/rootfile
su -s /bin/sh nobody -c 'rm -f /work/plain/rootfile && echo "without sticky bit nobody may remove it"'
test ! -e plain/rootfile && echo "gone"
