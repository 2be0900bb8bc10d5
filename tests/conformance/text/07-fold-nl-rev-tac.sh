#!/bin/sh
# fold -w/-s, nl numbering styles, rev, tac, expand/unexpand.
set -e
echo 'the quick brown fox jumps over the lazy dog' > line
fold -w 10 line
fold -s -w 12 line
printf 'one\n\ntwo\nthree\n' > lines
nl lines
nl -b a lines
nl -v 10 -i 5 -w 3 -s '. ' lines
rev line
printf 'x\ny\nz\n' | rev
tac lines
printf 'a\tb\tc\n' | expand -t 4 | od -c | head -n 2
printf 'a       b\n' | unexpand -a | od -c | head -n 1
