#!/bin/sh
# Exit statuses: true/false, !, && and ||, pipelines (last command), not-found 127, not-executable 126, exit N.
# EXPECT-STATUS: 42
true; echo "true $?"
false; echo "false $?"
! false; echo "! false $?"
! true; echo "! true $?"
true && echo "&& runs on success"
false || echo "|| runs on failure"
false | true; echo "false | true: $?"
true | false; echo "true | false: $?"
sh -c 'exit 300'; echo "exit 300 wraps: $?"
nosuchcommand 2>/tmp/err; echo "not found: $?"
sed 's/^.*: //' /tmp/err
printf 'echo hi\n' > noexec; chmod 644 noexec
./noexec 2>/tmp/err; echo "not executable: $?"
sed 's/^.*: //' /tmp/err
sh -c 'false; exit'; echo "bare exit keeps last status: $?"
if sh -c 'exit 1'; then echo wrong; else echo "if sees failure $?"; fi
while false; do :; done; echo "while that never ran: $?"
exit 42
