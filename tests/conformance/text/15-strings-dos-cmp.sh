#!/bin/sh
# strings on binary data, unix2dos/dos2unix round trip, cmp -l byte differences, tee to several files.
printf 'ab\000\001hello world\377\376xy\000longer string here\000' > bin
strings bin
strings -n 12 bin
printf 'one\ntwo\n' > unix.txt
cp unix.txt dos.txt; unix2dos dos.txt
od -c dos.txt | head -n 1
dos2unix dos.txt; cmp unix.txt dos.txt && echo "dos2unix restores it"
printf 'abcdef' > c1; printf 'abXdeY' > c2
cmp -l c1 c2
echo "cmp -l status $?"
echo "tee test" | tee t1 t2 > /dev/null
cat t1 t2
echo more | tee -a t1 > /dev/null; cat t1
[ "$(strings -n 6 bin | wc -l)" -eq 2 ]
