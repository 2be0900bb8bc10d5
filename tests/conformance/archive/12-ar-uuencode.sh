#!/bin/sh
# uuencode/uudecode and base64 as archive-style encodings; ar lists and extracts a handmade archive.
set -e
seq 1 500 > data
uuencode data data.out | head -n 1
uuencode data data.out > data.uu
mkdir dec; cd dec; uudecode ../data.uu; cmp data.out ../data && echo "uudecode restored the file"; cd ..
uuencode -m data name | sed -n '1p;$p'
pad() { printf '%-*s' "$1" "$2"; }
{
  printf '!<arch>\n'
  pad 16 'one.txt/'; pad 12 0; pad 6 0; pad 6 0; pad 8 100644; pad 10 4; printf '`\n'; printf 'one\n'
  pad 16 'two.txt/'; pad 12 0; pad 6 0; pad 6 0; pad 8 100644; pad 10 4; printf '`\n'; printf 'two\n'
} > a.ar
ar t a.ar
mkdir x; cd x; ar x ../a.ar; cat one.txt two.txt
