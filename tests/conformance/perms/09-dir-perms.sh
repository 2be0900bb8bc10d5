#!/bin/sh
# Directory bits for a non-root user: r lists, w creates/removes entries, x enters and reaches files.
set -e
for m in 700 755 711 744 777; do
  rm -rf "d$m"; mkdir "d$m"; echo data > "d$m/f"; chmod $m "d$m"
done
chmod 755 /work
su -s /bin/sh nobody -c '
  for m in 700 755 711 744 777; do
    l=no; c=no; r=no; w=no
    ls /work/d$m >/dev/null 2>&1 && l=yes
    cd /work/d$m 2>/dev/null && c=yes && cd /work
    cat /work/d$m/f >/dev/null 2>&1 && r=yes
    touch /work/d$m/new 2>/dev/null && w=yes
    echo "dir $m: list=$l cd=$c read-file=$r create=$w"
  done
'
ls d777
