#!/bin/sh
# A writer to a closed pipe dies of SIGPIPE (141 with pipefail); the reader's output is intact.
yes | head -n 1
yes | head -c 5; echo
seq 1 1000000 | head -n 2
set -o pipefail
yes | head -n 1 > /dev/null
s=$?
echo "pipefail status $s"
(sleep 1; echo late) | true
echo "writer after reader exited: $?"
sh -c 'yes; echo "yes exited $?" >&2' | head -n 1
trap '' PIPE
sh -c 'yes 2>/dev/null; echo "with SIGPIPE ignored yes returns $?" >&2' | head -n 1
[ "$s" -eq 141 ]
