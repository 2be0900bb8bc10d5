#!/bin/sh
# umask masks the modes of new files and directories; umask -S shows it symbolically.
set -e
for m in 022 077 002 027 000; do
  umask $m
  rm -rf f d
  : > f; mkdir d
  echo "umask $(umask) -> file $(stat -c %a f) dir $(stat -c %a d)"
done
umask 022
umask -S
umask u=rwx,g=rx,o=
umask
(umask 077; : > inner; stat -c 'subshell file %a' inner)
: > outer; stat -c 'after subshell %a' outer
