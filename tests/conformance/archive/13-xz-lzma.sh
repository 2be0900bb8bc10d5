#!/bin/sh
# xz and lzma streams (made by liblzma) decompress with unxz/xzcat/unlzma/lzcat; corrupt ones fail.
set -e
base64 -d > sample.xz <<'B64'
/Td6WFoAAATm1rRGAgAhARYAAAB0L+Wj4BPjASldADYaSh8IoCuxbQad+LKlrLX1BYZ8z/pkIqyz
BWYT9NbWh8yMz3xFkehF1ypbVZLi/hQIsBpygsIvXZiNzWYtB/yhiqpPduNZnzUa712RADV2UKy8
Ul+++GbhoGbtnq+SSeckBDuT8WynIq0k+uK5xj0zFYh51jVQWvAPXP5byq0eryeQIvfHAkjp05ME
Z+sbgltSslxAFeXydzvYAOC5u2XW+ZCwYGFhqZvbpdd3qZZUOG8XsdPPxXIDeZ1mQJ2Am+zWc0To
TZ1spOZ1Eay8PT2ZIiaaTJxeMIfW4JqfZ1QF9nno80/bovdujslvSwg13Xn+QGVnZ8dRXAPHgrZB
PcMlHsffNlXeaaanBueHRVPD6b7b3pt2i35s9DWU5u7Z8eVoplEwlqMAAAAAAABLfEFAjpXXswAB
xQLkJwAAsI6vnLHEZ/sCAAAAAARZWg==
B64
base64 -d > sample.lzma <<'B64'
XQAAgAD//////////wA2GkofCKArsW0Gnfiypay19QWGfM/6ZCKsswVmE/TW1ofMjM98RZHoRdcq
W1WS4v4UCLAacoLCL12Yjc1mLQf8oYqqT3bjWZ81Gu9dkQA1dlCsvFJfvvhm4aBm7Z6vkknnJAQ7
k/FspyKtJPriucY9MxWIedY1UFrwD1z+W8qtHq8nkCL3xwJI6dOTBGfrG4JbUrJcQBXl8nc72ADg
ubtl1vmQsGBhYamb26XXd6mWVDhvF7HTz8VyA3mdZkCdgJvs1nNE6E2dbKTmdRGsvD09mSImmkyc
XjCH1uCan2dUBfZ56PNP26L3bo7Jb0sINd15/kBlZ2fHUVwDx4K2QT3DJR7H3zZV3mmmpwbnh0VT
w+m+296bdot+bPQ1lObu2fHlaKZRMRhBar//4iNdGQ==
B64
xzcat sample.xz | md5sum
xzcat sample.xz | sed -n '1p;$p'
unxz -c sample.xz | wc -l
lzcat sample.lzma | md5sum
unlzma -c sample.lzma | tail -n 1
xzcat sample.xz | cmp - "$(unlzma -c sample.lzma > plain; echo plain)" && echo "xz and lzma agree"
unxz sample.xz && test -f sample && ! test -e sample.xz && echo "unxz replaced the file"
head -c 100 sample.lzma > cut.lzma
status=0; lzcat cut.lzma > /dev/null 2>/tmp/err || status=$?
echo "truncated lzma: status $status: $(cat /tmp/err)"
printf 'garbage' > bad.xz
status=0; xzcat bad.xz > /dev/null 2>/tmp/err || status=$?
echo "xzcat of garbage: status $status: $(cat /tmp/err)"
[ "$(wc -l < sample)" -eq 200 ]
