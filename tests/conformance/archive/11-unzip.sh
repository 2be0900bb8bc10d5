#!/bin/sh
# unzip lists and extracts a stored (uncompressed) zip built byte by byte with printf.
set -e
crc() { printf "$1" > /tmp/crcdata; crc32 /tmp/crcdata | cut -d' ' -f1; }
le32() { v=$1; printf "\\$(printf %o $((v & 255)))\\$(printf %o $(((v >> 8) & 255)))\\$(printf %o $(((v >> 16) & 255)))\\$(printf %o $(((v >> 24) & 255)))"; }
le16() { v=$1; printf "\\$(printf %o $((v & 255)))\\$(printf %o $(((v >> 8) & 255)))"; }
data='hello from a zip\n'
size=17
c=$((0x$(crc "$data")))
{
  printf 'PK\003\004'; le16 10; le16 0; le16 0; le16 0; le16 33; le32 $c; le32 $size; le32 $size; le16 9; le16 0
  printf 'hello.txt'; printf "$data"
  printf 'PK\001\002'; le16 20; le16 10; le16 0; le16 0; le16 0; le16 33; le32 $c; le32 $size; le32 $size
  le16 9; le16 0; le16 0; le16 0; le16 0; le32 0; le32 0
  printf 'hello.txt'
  printf 'PK\005\006'; le16 0; le16 0; le16 1; le16 1; le32 55; le32 $((30 + 9 + size)); le16 0
} > a.zip
wc -c < a.zip
unzip -l a.zip | sed 's/  */ /g'
mkdir out; cd out
unzip ../a.zip
cat hello.txt
unzip -p ../a.zip hello.txt
