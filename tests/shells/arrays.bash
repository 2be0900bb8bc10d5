# arrays, associative arrays, strings, arithmetic
declare -a a=(zeta alpha "two words" beta)
a+=(gamma)
echo "count=${#a[@]} first=${a[0]} last=${a[-1]}"
for i in "${!a[@]}"; do printf '%d:[%s]\n' "$i" "${a[i]}"; done
declare -A h=([one]=1 [two]=2 [three]=3)
h[four]=4
for k in $(printf '%s\n' "${!h[@]}" | { while read -r k; do echo "$k"; done; }); do :; done
keys=("${!h[@]}"); IFS=$'\n' sorted=($(printf '%s\n' "${keys[@]}" | { mapfile -t x; for ((i=0;i<${#x[@]};i++)); do for ((j=i+1;j<${#x[@]};j++)); do if [[ ${x[j]} < ${x[i]} ]]; then t=${x[i]}; x[i]=${x[j]}; x[j]=$t; fi; done; done; printf '%s\n' "${x[@]}"; })); unset IFS
for k in "${sorted[@]}"; do echo "$k=${h[$k]}"; done
s="Hello, World of Kiln"
echo "${s,,} ${s^^} ${s:7:5} ${s/World/Planet} ${#s} ${s//o/0}"
echo $(( (17 * 23) % 7 )) $(( 2**40 )) $(( -7 / 2 )) $(( 0x7fffffffffffffff + 1 ))
printf '%5.2f|%-6s|%x|%o|%e\n' 3.14159 ab 255 8 12345.678
x=10; while (( x > 0 )); do (( x -= 3 )); done; echo "x=$x"
case "$s" in *Kiln) echo matched;; *) echo nope;; esac
[[ "abc123" =~ ^([a-z]+)([0-9]+)$ ]] && echo "re: ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
