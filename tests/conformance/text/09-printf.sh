#!/bin/sh
# printf: integer, float, string, char formats with widths, precision, flags; escapes; argument reuse.
set -e
printf '%d|%5d|%-5d|%05d|%+d\n' 42 42 42 42 42
printf '%x|%X|%o|%#x|%#o\n' 255 255 8 255 8
printf '%.2f|%8.3f|%-8.1f|%e|%g|%g\n' 3.14159 2.71828 1.5 12345.678 0.0001 1000000
printf '%s|%10s|%-10s|%.3s\n' hello hello hello hello
printf '%c%c%c\n' A B C
printf '%b\n' 'tab:\there' 'nl:\\n' 'oct:\101'
printf 'a\tb\\c\n'
printf '\101\102\x43\n'
printf '%s-%s\n' 1 2 3 4 5
printf '%d%%\n' 50
printf '%d\n' -9223372036854775808 9223372036854775807
printf '%i %d\n' 0x1F 010
printf '[%*d]\n' 6 7
status=0; printf '%d\n' abc 2>/tmp/err || status=$?
echo "bad number: status $status: $(cat /tmp/err)"
