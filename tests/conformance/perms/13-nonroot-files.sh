#!/bin/sh
# A non-root user's new files and directories: owners via stat and ls -ln, a 0600 root file refused, id -G.
set -e
printf 'root only\n' > /tmp/rootsecret; chmod 600 /tmp/rootsecret
su -s /bin/sh nobody -c '
  umask 022
  echo mine > /tmp/nobodyfile
  stat -c "%u:%g %a %n" /tmp/nobodyfile
  ls -ln /tmp/nobodyfile | awk "{print \$1, \$3, \$4, \$NF}"
  cat /tmp/rootsecret 2>&1 || echo "cat status $?"
  echo x 2>/dev/null > /tmp/rootsecret || echo "overwrite refused"
  rm /tmp/rootsecret 2>&1 || echo "rm status $?"
  id -G
  mkdir /tmp/nobodydir && stat -c "%u:%g %a %n" /tmp/nobodydir
  echo in > /tmp/nobodydir/f && ls -ln /tmp/nobodydir | awk "NR>1 {print \$3, \$4, \$NF}"
'
stat -c "%U:%G %n" /tmp/nobodyfile /tmp/nobodydir /tmp/rootsecret
cat /tmp/rootsecret
