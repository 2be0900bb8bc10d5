#!/bin/sh
# Parameter expansion: defaults and alternatives, length, prefix/suffix removal, substrings, replacement.
path=/usr/local/lib/libkiln.so.1.2
echo "${path##*/}"
echo "${path#*/}"
echo "${path%%.*}"
echo "${path%.*}"
echo "${#path}"
echo "${path:5}" "${path:5:5}"
echo "${path/lib/LIB}" "${path//lib/LIB}"
unset u; empty=
echo "[${u:-default}] [${empty:-default}] [${empty-unset-only}]"
echo "[${u:+alt}] [${path:+alt}]"
echo "[${u:=assigned}] u=$u"
(: "${missing:?is required}") 2>/tmp/err
echo "status $?: $(sed 's/^[^:]*: //' /tmp/err)"
set -- one two three
echo "$# ${#1} ${3} ${@} $*"
for a in "$@"; do echo "arg <$a>"; done
IFS=,
echo "$*"
IFS=' '
n=5; echo "${n}th" "$n"th
files="a.c b.c c.h"
for f in $files; do echo "${f%.c}"; done
[ "${path##*/}" = libkiln.so.1.2 ] && [ "${path%%.*}" = /usr/local/lib/libkiln ] && [ "$u" = assigned ]
