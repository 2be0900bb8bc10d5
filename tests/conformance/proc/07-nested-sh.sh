#!/bin/sh
# Nested shells: sh -c levels, $0 and arguments, exported vs unexported variables, exit statuses.
export OUTER=exported
local_only=hidden
sh -c 'echo "level 1: OUTER=$OUTER local_only=${local_only:-unset}"; sh -c "echo level 2: \$OUTER; sh -c \"echo level 3; exit 4\"; echo level 2 saw \$?"; exit 6'
echo "level 1 status $?"
sh -c 'echo "\$0=$0 \$1=$1 \$2=$2"' zero one two
VAR=temporary sh -c 'echo "prefix assignment: $VAR"'
echo "after prefix: ${VAR:-unset}"
echo 'echo "from a script file: $# args"; exit 12' > s.sh
sh s.sh a b c; s=$?; echo "script status $s"
sh -c 'sh -c "sh -c \"sh -c \\\"echo four deep\\\"\""'
echo 'echo "read from stdin"' | sh
sh -s x y <<'EOF2'
echo "sh -s args: $1 $2"
EOF2
[ "$s" -eq 12 ]
