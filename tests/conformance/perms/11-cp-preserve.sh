#!/bin/sh
# cp keeps the mode (less umask) but not the owner; cp -p keeps mode, owner and time; mv keeps all.
set -e
export TZ=UTC
umask 022
echo data > f; chmod 4750 f; chown 1234:5678 f; touch -d '2002-02-02 02:02:02' f
cp f plain;    stat -c 'cp:    %a %u:%g' plain
cp -p f kept;  stat -c 'cp -p: %a %u:%g %Y' kept
cp -a f arch;  stat -c 'cp -a: %a %u:%g %Y' arch
cp f copy2; mv copy2 moved; stat -c 'mv:    %a %u:%g' moved
chmod 666 f
umask 077; cp f masked; stat -c 'cp under umask 077 of 666: %a' masked
