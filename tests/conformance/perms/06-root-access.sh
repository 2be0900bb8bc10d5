#!/bin/sh
# As root, test -r/-w ignore mode bits, but -x needs an execute bit somewhere; running a mode-0 script fails.
set -e
printf '#!/bin/sh\necho ran\n' > s
for m in 000 400 200 100 010 001 700; do
  chmod $m s
  r=no; w=no; x=no
  test -r s && r=yes; test -w s && w=yes; test -x s && x=yes
  echo "mode $m as root: r=$r w=$w x=$x"
done
chmod 000 s
cat s
echo '# appended' >> s && echo "root wrote a mode-0 file"
status=0; ./s 2>/tmp/err || status=$?
echo "exec mode 000: status $status: $(sed 's/^.*: //' /tmp/err)"
chmod 001 s; ./s
id -u; id -g; id -un; whoami
