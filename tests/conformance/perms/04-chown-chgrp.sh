#!/bin/sh
# As root, chown and chgrp by name and number; names resolve through /etc/passwd and /etc/group.
set -e
: > f; mkdir -p d/sub; : > d/sub/g; ln -s f l
stat -c '%u:%g %U:%G' f
chown nobody f;            stat -c 'chown nobody: %u:%g %U:%G' f
chown :nogroup f;          stat -c 'chown :nogroup: %u:%g %U:%G' f
chown 0:0 f;               stat -c 'chown 0:0: %u:%g' f
chown 1234:5678 f;         stat -c 'chown 1234:5678: %u:%g %U:%G' f
chgrp root f;              stat -c 'chgrp root: %u:%g' f
chown -R nobody:nogroup d; stat -c '%n %U:%G' d d/sub d/sub/g
chown -h 42:43 l;          stat -c 'symlink itself: %u:%g' l
stat -c 'target untouched: %u:%g' f
status=0; chown nosuchuser f 2>/tmp/err || status=$?
echo "unknown user: status $status: $(cat /tmp/err)"
chmod 4755 f; chown 7 f; stat -c 'chown clears setuid: %a' f
