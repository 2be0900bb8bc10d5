#!/bin/sh
# Positional parameters: set --, shift, "$@" vs "$*" vs $@ with IFS, $#, and arguments through sh -c.
set -e
set -- "a b" c "" d
echo "count $#"
for x in "$@"; do echo "quoted-at <$x>"; done
for x in "$*"; do echo "quoted-star <$x>"; done
for x in $@; do echo "unquoted <$x>"; done
shift 2
echo "after shift 2: $# <$1> <$2>"
set --
echo "empty: $#"
sh -c 'echo "0=$0 1=$1 #=$#"' name first second
sh -c 'for a; do echo "for-default <$a>"; done' _ x 'y z'
IFS=:; set -- 1 2 3; echo "$*"; IFS=' '
set -- $(echo "split into words")
echo "$# words, last $3"
status=0; sh -c 'shift 5' 2>/dev/null || status=$?
echo "shift too far: status $status"
