#!/bin/sh
# cd through symlinks: logical vs physical pwd, cd -P, .. handling, realpath, cd - and OLDPWD.
set -e
mkdir -p real/inner other
ln -s real/inner link
ln -s ../other real/up
cd link
pwd
pwd -P
cd ..
pwd
cd -P link
pwd
cd /work
cd link/..
pwd
cd /work
realpath link real/up real/inner/../up
readlink -f link/../up
cd /tmp
cd - > /dev/null
echo "back in $(pwd), OLDPWD=$OLDPWD"
cd real/up && pwd && pwd -P
status=0; cd /work/nosuch 2>/tmp/err || status=$?
echo "cd missing: status $status: $(sed 's/^.*: //' /tmp/err)"
