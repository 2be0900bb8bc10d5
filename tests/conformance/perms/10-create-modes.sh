#!/bin/sh
# Modes chosen at creation: mkdir -m, mkfifo -m, touch, mktemp (0600/0700), under a umask.
set -e
umask 022
mkdir -m 700 m700; stat -c '%n %a' m700
mkdir -p -m 750 p/q/r; stat -c '%n %a' p p/q p/q/r
mkfifo -m 640 fifo; stat -c '%n %a %F' fifo
echo data > src
mkdir -m 1777 shared; stat -c '%n %a' shared
mkdir -m a=rx,u+w sym; stat -c '%n %a' sym
touch t; stat -c 'touch creates %a' t
t=$(mktemp /tmp/kiln.XXXXXX); stat -c 'mktemp file %a' "$t"
t=$(mktemp -d /tmp/kiln.XXXXXX); stat -c 'mktemp dir %a' "$t"
umask 077
echo x > late; stat -c 'umask 077 file %a' late
mknod node p; stat -c 'mknod fifo %a %F' node
