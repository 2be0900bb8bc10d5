#!/bin/sh
# Here-documents: expansion in unquoted ones, none in quoted ones, <<- tab stripping, several in one command.
name=kiln
cat <<EOF2
hello $name, $((6 * 7)) and $(echo substituted)
escaped \$name and \`backticks\`
EOF2
cat <<'EOF2'
literal $name $((1 + 1)) `date`
EOF2
cat <<-EOF2
	tab-indented lines
		lose their leading tabs
	EOF2
cat <<"EOF2" | tr a-z A-Z
piped heredoc $name
EOF2
while read -r a; do echo "got $a"; done <<EOF2
$name
two
EOF2
cat <<EOF2 > out
written to a file
EOF2
cat out
f() { cat; }
f <<EOF2
into a function
EOF2
n=$(cat <<EOF2
$((6 * 7))
EOF2
)
[ "$n" = 42 ]
