#!/bin/sh
# sed: s with flags and backreferences, addresses and ranges, -n/p, d, a/i/c, y, hold space, -i, -E.
set -e
printf 'apple pie\nbanana split\ncherry tart\ndate loaf\nelder flower\n' > in
sed 's/a/A/' in
sed 's/a/A/g' in
sed -n '2,4p' in
sed '/cherry/d' in
sed -n '/banana/,/date/{=;p}' in
sed 's/\([a-z]*\) \([a-z]*\)/\2 \1/' in
sed -E 's/([a-z]+) ([a-z]+)/<\2|\1>/' in
sed '2a\
after two
3i\
before three
$c\
last changed' in
sed 'y/abc/xyz/' in
sed -n '1h;1!H;${x;s/\n/,/g;p}' in
sed '1!G;h;$!d' in
sed 's/e/E/2g' in
cp in edited
sed -i 's/pie/cake/;/split/d' edited
cat edited
sed -n '$=' in
printf 'no newline' | sed 's/$/!/'
echo
