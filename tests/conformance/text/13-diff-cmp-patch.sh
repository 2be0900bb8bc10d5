#!/bin/sh
# diff -u between versions, cmp of equal and differing files, patch applying the diff.
# EXPECT-STATUS: 1
printf 'one\ntwo\nthree\nfour\nfive\n' > old
printf 'one\n2\nthree\nfour\nfive\nsix\n' > new
diff -u old new > p
echo "diff status $?"
sed '1,2s/\t.*//' p
cp old patched
patch patched < p
cmp patched new && echo "patched equals new"
cmp old new
echo "cmp status $?"
cmp old old && echo "cmp same"
diff old old && echo "diff same"
diff old new > /dev/null
