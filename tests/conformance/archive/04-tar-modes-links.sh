#!/bin/sh
# tar keeps modes (including setuid/sticky), owners, mtimes, symlinks and hard links through a round trip.
set -e
export TZ=UTC
mkdir -p src/dir
echo exec > src/run; chmod 4755 src/run
echo priv > src/priv; chmod 600 src/priv
chmod 1777 src/dir
ln -s run src/link
ln -s /absolute/target src/abslink
ln src/priv src/hard
chown 1234:5678 src/priv
touch -h -d '2003-03-03 03:03:03' src/run src/priv src/link src/abslink src/dir src
tar -cf t.tar src
tar -tvf t.tar | sort -k 6
mkdir out; tar -xpf t.tar -C out
cd out/src
stat -c '%n %a %u:%g %Y %F' run priv dir
stat -c '%n %a %u:%g %F' link abslink
readlink link; readlink abslink
stat -c '%n %h' priv hard
[ "$(stat -c %i priv)" = "$(stat -c %i hard)" ] && echo "hard link kept"
