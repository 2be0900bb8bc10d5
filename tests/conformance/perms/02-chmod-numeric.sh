#!/bin/sh
# chmod with octal modes, including setuid, setgid and sticky bits, shown by stat %a and %A.
set -e
: > f; mkdir d
for m in 0 644 755 600 777 4755 2755 1777 6711 7000 4644 2640 1600; do
  chmod $m f
  echo "chmod $m: $(stat -c '%a %A' f)"
done
chmod 1777 d; stat -c '%a %A' d
chmod 2775 d; stat -c '%a %A' d
chmod -R 700 d; stat -c '%a %A' d
status=0; chmod 888 f 2>/tmp/err || status=$?
echo "bad mode: status $status: $(cat /tmp/err)"
status=0; chmod 644 missing 2>/tmp/err || status=$?
echo "missing file: status $status: $(cat /tmp/err)"
