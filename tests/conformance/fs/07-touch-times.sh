#!/bin/sh
# touch -d sets times; date -r reads them; find -newer compares them.
set -e
export TZ=UTC
touch -d '2001-02-03 04:05:06' old
touch -d '2011-12-13 14:15:16' new
touch -d '2005-05-05 05:05:05' mid
date -r old '+%Y-%m-%d %H:%M:%S'
date -r new '+%s'
stat -c '%n %Y' old mid new
find . -newer mid -type f | sort
ls -t old mid new
ls -tr old mid new
touch -r old copy
stat -c '%Y' copy
ls -l --full-time old | sed 's/^.* 2001/2001/'
