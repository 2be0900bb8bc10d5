#!/bin/sh
# The error each failing file operation reports: ENOENT (an empty path too), ENOTDIR, EISDIR, EEXIST, ENOTEMPTY, EINVAL, ELOOP.
mkdir -p d/sub; : > f; : > d/sub/x
try() { "$@" 2>&1 | sed 's/^[^:]*: //'; }
try cat nosuch
try cat ''
try mkdir ''
try stat ''
(cd '') 2>&1 | sed 's/^.*: //'
try cat f/child
try cat d
try mkdir f
try rmdir d
try mv d d/sub/inside
try ln -s a/b f
try cp f d/sub/x/y
try touch nosuchdir/file
try ls d/sub/x/
try rm d
ln -s loop loop
try cat loop
(echo x > d) 2>&1 | sed 's/^.*: //'
(echo x > nosuchdir/f) 2>&1 | sed 's/^.*: //'
(cd f) 2>&1 | sed 's/^.*: //'
(cd nosuch) 2>&1 | sed 's/^.*: //'
echo done
