#!/bin/sh
# Pathname expansion: *, ?, [...], [!...], hidden files, no match stays literal, set -f, quoting.
set -e
mkdir g && cd g
touch a1 a2 b1 abc .hidden 'with space'
echo *
echo a?
echo [ab]1
echo [!a]*
echo .*
echo *.none
set -f; echo *; set +f
echo "*"
for f in *; do echo "<$f>"; done
mkdir -p d1/x d2/x
echo d*/x
echo */
