#!/bin/sh
# Identity as root and as nobody: id -u/-g/-n, whoami, logname-free checks, new files' owners.
set -e
echo "root: $(id -u) $(id -g) $(id -un) $(id -gn) $(whoami)"
: > rootfile; stat -c 'root creates %U:%G' rootfile
chmod 777 /work
su -s /bin/sh nobody -c 'echo "nobody: $(id -u) $(id -g) $(id -un) $(id -gn) $(whoami)"; : > /work/nobodyfile'
stat -c 'nobody creates %U:%G' nobodyfile
su -s /bin/sh nobody -c 'chown root /work/nobodyfile' 2>/tmp/err || echo "nobody cannot chown: $(cat /tmp/err)"
su -s /bin/sh nobody -c 'chmod 600 /work/nobodyfile && echo "owner may chmod"'
su -s /bin/sh nobody -c 'chmod 600 /work/rootfile' 2>/tmp/err || echo "non-owner cannot chmod: $(cat /tmp/err)"
status=0; su -s /bin/sh nosuchuser -c true 2>/tmp/err || status=$?
echo "unknown user: status $status: $(cat /tmp/err)"
