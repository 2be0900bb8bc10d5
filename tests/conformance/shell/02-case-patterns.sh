#!/bin/sh
# case with literal, glob, character-class and alternative patterns, fall-through order, quoting.
classify() {
  case "$1" in
    "") echo "empty" ;;
    [0-9]|[0-9][0-9]) echo "$1: small number" ;;
    *[!0-9]*) case "$1" in
        *.tar.gz|*.tgz) echo "$1: gzipped tarball" ;;
        [Yy]|[Yy][Ee][Ss]) echo "$1: yes" ;;
        -*) echo "$1: option" ;;
        '*') echo "$1: literal star" ;;
        ?) echo "$1: one character" ;;
        *) echo "$1: word" ;;
      esac ;;
    *) echo "$1: big number" ;;
  esac
}
for w in "" 7 42 12345 a.tar.gz b.tgz y YES -v '*' x hello; do classify "$w"; done
pat='h*'
case hello in $pat) echo "unquoted variable is a pattern" ;; esac
case hello in "$pat") echo "wrong" ;; *) echo "quoted variable is literal" ;; esac
[ "$(classify a.tgz)" = "a.tgz: gzipped tarball" ] && [ "$(classify 99)" = "99: small number" ]
