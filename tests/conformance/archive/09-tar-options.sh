#!/bin/sh
# tar -C, --strip-components, --no-recursion, -O, extracting selected members, -v output, and archives from stdin/stdout.
set -e
mkdir -p proj/src proj/build
echo main > proj/src/main.c
echo obj > proj/build/main.o
echo readme > proj/README
tar -cf t.tar -C proj .
tar -tf t.tar | sort
mkdir strip; tar -xf t.tar -C strip --strip-components 2
find strip | sort
tar -cf n.tar --no-recursion -C proj . ./src
tar -tf n.tar
(cd proj && tar -cf ../c.tar ./src/main.c ./README)
tar -tf c.tar
tar -xOf t.tar ./src/main.c
mkdir sel; tar -xf t.tar -C sel ./README
find sel | sort
tar -cf - -C proj src | tar -xvf - -C sel
find sel -type f | sort
