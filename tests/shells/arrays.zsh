# arrays (1-based), associative arrays, parameter expansion flags, extended glob matching
setopt extendedglob
arr=(pear apple "fig tree" banana)
arr+=(cherry)
print "count=${#arr} first=$arr[1] last=$arr[-1] slice=${arr[2,3]}"
print -l -- ${(o)arr}
print -- ${(j:,:)${(O)arr}}
typeset -A h
h=(one 1 two 2 three 3)
h[four]=4
for k in ${(ko)h}; do print "$k=$h[$k]"; done
s="Hello, World of Kiln"
print -- ${(U)s} ${(L)s} ${s[8,12]} ${s/World/Planet} ${#s} ${s//o/0}
print -- ${(s:,:)s}
words=(${=s})
print "words=${#words} ${(C)words}"
print $(( 17 * 23 % 7 )) $(( 2**40 )) $(( -7 / 2 )) $(( 1.5 * 2.25 )) $(( 10.0 / 4 ))
printf '%5.2f|%-6s|%x|%o|%e\n' 3.14159 ab 255 8 12345.678
integer x=10; while (( x > 0 )); do (( x -= 3 )); done; print "x=$x"
[[ abc123 = (#b)([a-z]##)([0-9]##) ]] && print "glob match: $match[1] $match[2]"
print -- ${(l:8::0:)x} ${(r:6::.:)arr[1]}
