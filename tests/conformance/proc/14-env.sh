#!/bin/sh
# Environment: export and unset reach children, env -i and env -u, env VAR=val, readonly.
set -e
export A=1
B=2
sh -c 'echo "child: A=${A:-unset} B=${B:-unset}"'
export B
sh -c 'echo "after export: B=$B"'
unset A
sh -c 'echo "after unset: A=${A:-unset}"'
env -i /bin/sh -c 'echo "env -i: A=${A:-unset} B=${B:-unset}"'
env -i X=1 Y=2 /usr/bin/env | sort
env -u B /bin/sh -c 'echo "env -u: B=${B:-unset}"'
C=3 env | grep '^C='
readonly R=fixed
(R=other) 2>/tmp/err || echo "readonly: $(sed 's/^.*: //' /tmp/err)"
sh -c 'echo "PATH in child: $PATH"'
