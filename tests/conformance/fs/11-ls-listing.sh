#!/bin/sh
# ls lists names sorted, with -a, -1, -F, -R, -d and -l columns for files of known size and date.
set -e
export TZ=UTC
mkdir -p l/sub l/.hidden
for f in b a c 10 9 Z; do echo "$f" > l/$f; done
ln -s a l/lnk
mkfifo l/pipe
chmod 755 l/c
touch -d '2020-01-02 03:04:05' l/a l/b l/c
ls l
ls -a l
ls -1 l
ls -F l
ls -R l
ls -d l/*
ls -l l/a l/b l/c | sed 's/  */ /g'
ls -l l/lnk | sed 's/.* l.lnk/l\/lnk/'
ls -r l
ls -S l/a l/10 l/Z
