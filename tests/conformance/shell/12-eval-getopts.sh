#!/bin/sh
# eval of built-up commands and variable names; getopts with flags, arguments, errors and OPTIND.
set -e
for i in 1 2 3; do eval "var_$i=value$i"; done
eval echo '$var_1 $var_2 $var_3'
cmd='echo "quoted  spaces" | tr a-z A-Z'
eval "$cmd"
name=var_2; eval "echo indirect: \$$name"
parse() {
  OPTIND=1
  while getopts "ab:c" opt "$@"; do
    case $opt in
      a) echo "flag a" ;;
      b) echo "b=$OPTARG" ;;
      c) echo "flag c" ;;
      \?) echo "bad option" ;;
    esac
  done
  shift $((OPTIND - 1))
  echo "rest: $*"
}
parse -a -b val -c file1 file2
parse -ac -bx -- -notanoption
parse -z 2>/tmp/err
sed 's/^[^:]*: //' /tmp/err
parse -b 2>/tmp/err || true
sed 's/^[^:]*: //' /tmp/err
