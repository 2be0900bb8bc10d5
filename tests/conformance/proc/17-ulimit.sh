#!/bin/sh
# Resource limits: ulimit -f stops a large write with SIGXFSZ; ulimit -n limits open descriptors in a child.
ulimit -f 4
(head -c 1024 /dev/zero > small && echo "1 KiB written under a 2 KiB limit")
(dd if=/dev/zero of=big bs=1024 count=100 2>/dev/null); s=$?
echo "write past the limit: status $s"
ls -l big | awk '{ print $5 }'
ulimit -f unlimited 2>/dev/null || true
sh -c 'ulimit -n 5; exec 5> /tmp/fd5' 2>/dev/null; echo "fd 5 under ulimit -n 5: status $?"
sh -c 'ulimit -n 5; exec 4> /tmp/fd4; echo "fd 4 under ulimit -n 5 ok"'
sh -c 'ulimit -f 1; ulimit -f'
[ "$s" -eq 153 ]
