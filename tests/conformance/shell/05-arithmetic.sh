#!/bin/sh
# $((...)): precedence, division and modulo signs, bases, bit operations, comparisons, ternary, assignment ops, 64-bit wrap.
echo $((1 + 2 * 3)) $(((1 + 2) * 3)) $((7 / 2)) $((-7 / 2)) $((7 % 3)) $((-7 % 3))
echo $((0x1f)) $((010)) $((2#1011)) $((36#zz))
echo $((5 & 3)) $((5 | 3)) $((5 ^ 3)) $((~5)) $((1 << 10)) $((1024 >> 3))
echo $((3 < 5)) $((3 > 5)) $((3 == 3)) $((3 != 3)) $((!0)) $((!7)) $((1 && 0)) $((1 || 0))
echo $((5 > 3 ? 10 : 20))
x=5
: $((x += 3)); echo $x
: $((x *= 2)); echo $x
: $((x -= 1)); echo $x
: $((x %= 4)); echo $x
echo $((x++)) $x $((++x)) $((x--)) $x
echo $((9223372036854775807 + 1))
echo $((-9223372036854775807 - 1))
y=12; echo $((y * y)) $(( y ))
unset z; echo $((z + 1))
v="3 + 4"; echo $((v))
(echo $((1 / 0))) 2>/tmp/err
echo "division by zero: status $?"
sed 's/^[^:]*: //' /tmp/err
[ $((7 / 2 + -7 % 3 + 2#1011)) -eq 13 ] && [ $((9223372036854775807 + 1)) -lt 0 ]
