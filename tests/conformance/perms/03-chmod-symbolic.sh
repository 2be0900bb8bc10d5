#!/bin/sh
# chmod with symbolic modes: who/op/perm lists, X, s, t, copying permissions, several clauses.
set -e
: > f; mkdir d
chmod 644 f
for m in u+x g+w o-r a+x go-x u=rw,go= +r a-w u+s g+s o+t a=rwx,u-w,g-w,o-wx g=u o=g-w; do
  chmod $m f
  echo "$m: $(stat -c '%a %A' f)"
done
chmod 600 f; chmod a+X f; stat -c 'a+X on file without x: %a' f
chmod 700 f; chmod a+X f; stat -c 'a+X on file with u+x: %a' f
chmod 700 d; chmod go+X d; stat -c 'go+X on dir: %a' d
status=0; chmod q+z f 2>/tmp/err || status=$?
echo "bad mode: status $status: $(cat /tmp/err)"
