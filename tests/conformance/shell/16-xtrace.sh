#!/bin/sh
# set -x traces expanded commands to stderr with PS4; set -v echoes input lines; both can be turned off.
exec 2>&1
x=world
set -x
echo "hello $x"
y=$((1 + 2))
f() { echo "in f $1"; }
f arg
PS4='>> '
echo custom prefix
set +x
echo untraced
sh -xc 'a=1; echo $a' 
sh -vc 'echo verbose'
