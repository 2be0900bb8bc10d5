#!/bin/sh
# awk number handling: float formatting, integer limits, string/number conversion, srand/rand sequence.
set -e
awk 'BEGIN {
  printf "%.17g %.17g %.17g\n", 0.1, 1/3, 2/3
  printf "%.3e %.0f %.1f %.2f\n", 6.02214076e23, 2.5, 0.05, 1.005
  printf "%d %d %d\n", 2147483647 * 2, -2147483648 * 2, 9007199254740993
  printf "%g %g %g %g\n", 1e100, 1e-100, 123456789, 0.000012345
  print 1e300 * 1e10, -1e300 * 1e10, 7 / 2, int(7 / 2), 017, "0x1A" + 0
  print "3abc" + 1, " 12 " + 0, ".5" + 0, "1e3" + 0, "abc" + 0, -"-4"
  print (1 == 1.0), ("1" == "1.0"), (0.1 + 0.2 == 0.3), (10 < 9), ("10" < "9")
  x = 0; for (i = 0; i < 1000; i++) x += 0.001; printf "%.15f\n", x
  srand(42); a = rand(); b = rand(); srand(42); c = rand()
  print (a == c), (a != b), (a >= 0 && a < 1)
  CONVFMT = "%.2g"; y = 3.14159; z = y ""; print z
  OFMT = "%.3f"; print 3.14159, 42
}'
echo '1.5 2.25 abc 4' | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s, NF }'
seq 1 5 | awk '{ p = p ? p * $1 : $1 } END { print p }'
