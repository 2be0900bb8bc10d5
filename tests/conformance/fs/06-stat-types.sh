#!/bin/sh
# stat -c reports size, mode and type for a file, a directory, a symlink and a fifo.
set -e
printf '0123456789' > file
mkdir dir
ln -s file link
mkfifo fifo
chmod 600 file
stat -c '%n|%s|%a|%A|%F' file link fifo
stat -c '%n|%a|%F' dir
stat -L -c '%n|%s|%F' link
stat -c '%u:%g %U:%G' file
[ "$(stat -c %s file)" -eq 10 ] && echo "size 10"
if stat missing 2>/tmp/err; then exit 1; fi
cat /tmp/err
