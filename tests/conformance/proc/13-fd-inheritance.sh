#!/bin/sh
# Children inherit open descriptors (and see the shared offset); closed descriptors are not inherited.
set -e
exec 3> shared
echo parent-1 >&3
sh -c 'echo child >&3'
echo parent-2 >&3
exec 3>&-
cat shared
exec 4< shared
read -r l <&4; echo "parent read: $l"
sh -c 'read -r l <&4; echo "child read: $l"'
read -r l <&4; echo "parent read after child: $l"
exec 4<&-
status=0; sh -c 'echo x >&4' 2>/dev/null || status=$?
echo "closed fd in child: status $status"
{ sh -c 'echo to stderr >&2'; } 2>&1 | sed 's/^/via pipe: /'
(echo "subshell stdout"; echo "subshell stderr" >&2) 2> err.txt
cat err.txt
