#!/bin/sh
# ls -l shows the file type and setuid (s/S), setgid (s/S) and sticky (t/T) bits in the mode column.
set -e
for m in 4755 4644 2755 2644 1777 1776 6777 0; do
  : > "f$m"; chmod "$m" "f$m"
done
mkdir sticky; chmod 1777 sticky
mkfifo fifo; ln -s f0 link
ls -l f4755 f4644 f2755 f2644 f1777 f1776 f6777 f0 | awk '{print $1, $9}'
ls -ld sticky fifo link | awk '{print $1, $9}'
ls -ld /tmp | awk '{print $1, $9}'
