#!/bin/sh
# As nobody (su from root), mode bits decide reads, writes and execs, and root-owned files refuse writes.
set -e
printf 'secret\n' > private; chmod 600 private
printf 'public\n' > public; chmod 644 public
printf '#!/bin/sh\necho script ran\n' > script; chmod 755 script
mkdir locked; chmod 700 locked
chmod 755 /work
su -s /bin/sh nobody -c '
  id -u; id -g; id -un
  test -r private && echo "can read private" || echo "cannot read private"
  cat private 2>&1
  cat public
  test -w public && echo "can write public" || echo "cannot write public"
  echo x 2>&1 >> public || echo "append refused"
  ./script
  ls locked 2>&1 || echo "ls locked: status $?"
  touch /work/new 2>&1 || echo "create in root-owned dir refused"
  touch /tmp/mine && ls -l /tmp/mine | cut -c1-10 && stat -c "%U:%G" /tmp/mine
'
echo "su status $?"
