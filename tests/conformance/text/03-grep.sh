#!/bin/sh
# grep: basic and -E regexps, -v -c -i -n -o -w -x -l -q -A/-B, multiple files, status 1 on no match.
set -e
printf 'foo bar\nFoo baz\nfoobar\nbaz qux\n123-456\nend\n' > g1
printf 'other foo\nnothing\n' > g2
grep foo g1
grep -i foo g1
grep -v foo g1
grep -c foo g1
grep -n baz g1
grep -o 'ba[rz]' g1
grep -w foo g1
grep -x foobar g1
grep -E '^[0-9]+-[0-9]+$' g1
grep -E 'bar|qux' g1
grep 'o\{2\}' g1
grep -l foo g1 g2
grep foo g1 g2
grep -h foo g1 g2
grep -A1 -B1 foobar g1
grep -q end g1 && echo "quiet match"
grep -e foo -e end g1
status=0; grep nomatch g1 || status=$?
echo "no match status $status"
status=0; grep foo missing 2>/tmp/err || status=$?
echo "missing file status $status: $(cat /tmp/err)"
egrep -c 'o+' g1
fgrep -c 'o b' g1
