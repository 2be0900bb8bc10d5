#!/bin/sh
# Hard links share data and inode; the link count follows ln and rm.
set -e
echo first > a
stat -c '%h' a
ln a b
ln b c
stat -c '%n %h' a b c
echo appended >> c
cat a
ia=$(stat -c %i a); ib=$(stat -c %i b)
[ "$ia" = "$ib" ] && echo "same inode"
rm a
stat -c '%n %h' b c
cat b
mkdir d
if ln d dlink 2>/tmp/err; then exit 1; fi
echo "hard link to dir refused: $(cat /tmp/err)"
