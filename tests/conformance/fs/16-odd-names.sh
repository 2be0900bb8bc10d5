#!/bin/sh
# File names with spaces, newlines, unicode, bytes that are not UTF-8, a leading dash, 255 bytes; too long names and deep paths.
set -e
: > 'with space'
: > "$(printf 'new\nline')"
: > 'ünïcödé-名前'
: > -dash
mkdir "$(printf 'not\347utf8\360')" && cd "$(printf 'not\347utf8\360')" && pwd | od -c | head -n 2 && cd ..
: > ./-dash2
long=$(printf '%0255d' 0)
: > "$long"
ls | od -c | tail -n 3
ls | wc -l
find . -type f | sort | head -n 3
echo "$long" | wc -c
status=0; (: > "${long}x") 2>/dev/null || status=$?
echo "256-byte name refused by a redirection: status $status"
touch "${long}y" 2>/tmp/err || echo "touch: $(sed 's/^.*: //' /tmp/err)"
d=.; i=0
while [ $i -lt 60 ]; do d="$d/deep$i"; i=$((i + 1)); done
mkdir -p "$d"
cd "$d" && pwd | wc -c && cd /work
rm -- -dash ./-dash2 && echo "dash files removed"
ls | head -n 2 | od -c | head -n 2
