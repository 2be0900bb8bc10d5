"""Programs of the Debian example image, recompiled, against the same programs run natively.

Every case runs twice over the Debian example's tree (tests/conftest.py builds
and recompiles it once per session): natively in a fresh overlay of the tree
with its own pid namespace (tests/native_overlay.py; root, as in CI), and under
``kiln run IMAGE``. stdout, stderr and the exit status must be identical byte
for byte. Both sides get the same small environment (``env -i``), so the
programs' output depends only on the image.

The cases are what these programs are used for in containers: bash (arrays,
process substitution, job control, traps), coreutils, grep (-P: PCRE2, whose
JIT must fall back), sed, gawk, mawk, tar with gzip/xz/bzip2, perl with XS
modules, sqlite3, jq, bc, lua, file (libmagic), dpkg-query, id/getent (NSS
modules loaded by dlopen), ldd (ld.so --list) and python3: json, re, hashlib
(OpenSSL), zlib/bz2/lzma, sqlite3, decimal, ctypes calls into libc and a
callback from qsort (libffi's closure trampoline, vkernel/closures.py),
subprocess and os.fork; script and python3's pty (a devpts of the run's own); setpriv and capsh (capabilities, securebits, no_new_privs:
the native side holds a container's capabilities for that case).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from native_overlay import run_native
from sessionrun import run_in_session

KILN = [str(Path(sys.executable).with_name("kiln"))]
TIMEOUT = 300
ENV = ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root", "LC_ALL=C.UTF-8"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs root (overlay, unshare)")]

BASH = r"""
a=(zero one two three); a+=(four); echo "${#a[@]} ${a[2]} ${a[@]:1:2} ${!a[*]}"
declare -A m=([apple]=red [lime]=green); for k in $(printf '%s\n' "${!m[@]}" | sort); do echo "$k=${m[$k]}"; done
s="Hello, World"; echo "${s,,} ${s^^} ${s/World/Kiln} ${#s} ${s:7}"
diff <(printf 'a\nb\n') <(printf 'a\nc\n'); echo "diff: $?"
while read -r line; do echo "got $line"; done < <(seq 3)
trap 'echo USR1 caught' USR1; kill -USR1 $$
trap 'echo ERR at $LINENO' ERR; false; trap - ERR
f() { local x=$1; (( x <= 1 )) && { echo 1; return; }; echo $(( x * $(f $((x - 1))) )); }; echo "fact: $(f 10)"
set -m; sleep 5 & pid=$!; jobs -l | sed "s/$pid/PID/"; kill %1; wait $pid; echo "killed: $?"
(exit 7) & wait $!; echo "bg status: $?"
{ echo out; echo err >&2; } 2>&1 | cat
printf '%05.2f|%-4s|%x\n' 3.14159 ab 255
cat <<EOF
here ${a[1]} $((6 * 7))
EOF
"""

COREUTILS = r"""
seq 1 20 | sort -rn | head -3 | tr '\n' ' '; echo
printf '%s\n' pear apple pear fig apple pear | sort | uniq -c
echo 'The quick brown fox' | tee /tmp/t | wc; sha256sum /tmp/t; md5sum /tmp/t; b2sum -l 128 /tmp/t
cut -d: -f1,7 /etc/passwd | head -3; paste -d, <(seq 3) <(seq 4 6)
date -u -d @86400 '+%F %T %A'; expr 6 \* 7; factor 360 1001
stat -c '%n %a %s %F %U:%G' /etc/debian_version /bin; stat -c '%n %a %F %U:%G' /usr/bin
ls -l --time-style=+%Y /etc/debian_version | cut -d' ' -f1,3-
mkdir -p /tmp/d/e && touch /tmp/d/e/f && ln -s e/f /tmp/d/link && ls -R /tmp/d && readlink -f /tmp/d/link
split -l 2 <(seq 5) /tmp/part. && ls /tmp/part.* && cat /tmp/part.ab
od -An -tx1 -N8 /bin/true; base64 /etc/debian_version | base64 -d; numfmt --to=iec 1048576
for p in /etc/passwd /usr/lib /bin/true /tmp; do [ -w $p ] && echo "writable $p" || echo "not writable $p"; done
sort -t: -k3,3n /etc/group | head -3; nl -ba /etc/debian_version; rev <<< abc; tac <(seq 3)
"""

TEXT = r"""
printf 'alpha 1\nbeta 22\ngamma 333\n' > /tmp/x
grep -E 'a [0-9]{2,}' /tmp/x; grep -c a /tmp/x; grep -P '\d{3}' /tmp/x; grep -oP '(?<=beta )\d+' /tmp/x
sed -E 's/([a-z]+) ([0-9]+)/\2:\1/; 2d' /tmp/x; sed -n '$=' /tmp/x
gawk '{ s += $2; n[$1] = length($1) } END { printf "%d %.3f\n", s, s / NR; PROCINFO["sorted_in"] = "@ind_str_asc"; for (k in n) print k, n[k] }' /tmp/x
mawk 'BEGIN { srand(1); for (i = 1; i <= 3; i++) printf "%s ", i * 1.5; print "" } { print toupper($1) }' /tmp/x
gawk 'BEGIN { print strftime("%Y", 0, 1), 2^53 + 1, sprintf("%c", 65), gensub(/(b+)/, "<\\1>", "g", "abbbc") }'
"""

ARCHIVES = r"""
mkdir -p /tmp/a/sub && seq 1000 > /tmp/a/sub/n && printf hi > /tmp/a/h && touch -d @1000000000 /tmp/a /tmp/a/sub /tmp/a/sub/n /tmp/a/h
cd /tmp && for z in gzip xz bzip2; do tar --sort=name --owner=0 --group=0 --numeric-owner -cf - a | $z -c > a.$z; $z -dc a.$z | tar -tvf -; $z -dc a.$z | sha256sum; done
gzip -9 -c /tmp/a/sub/n | gzip -dc | tail -1; xz -T1 -c /tmp/a/sub/n > /tmp/n.xz && xz -l /tmp/n.xz | tail -1
mkdir /tmp/b && cd /tmp/b && tar -xf <(xz -dc /tmp/a.xz) && find . | sort && cmp a/sub/n /tmp/a/sub/n && echo same
"""

PERL = r"""
use strict; use warnings;
use List::Util qw(sum max reduce shuffle); use POSIX qw(floor ceil strftime); use Digest::MD5 qw(md5_hex);
use Data::Dumper; $Data::Dumper::Sortkeys = 1; $Data::Dumper::Indent = 1;
use Storable qw(freeze thaw); use Time::HiRes; use Encode qw(encode decode); use Fcntl qw(:mode);
print sum(1..100), " ", max(3, 9, 4), " ", (reduce { $a * $b } 1..10), "\n";
printf "%d %d %s\n", floor(-2.5), ceil(2.1), strftime("%Y-%m-%d", gmtime(0));
print md5_hex("kiln"), "\n", Dumper({a => [1, 2], b => {c => undef}});
my $t = thaw(freeze({x => [1 .. 3]})); print scalar(@{$t->{x}}), "\n";
print length(encode("UTF-8", "\x{263a}x")), " ", decode("UTF-8", "\xe2\x98\xba") eq "\x{263a}" ? "ok" : "bad", "\n";
my %h; $h{$_}++ for split //, "mississippi"; print join(",", map { "$_=$h{$_}" } sort keys %h), "\n";
my @s = sort { $a <=> $b } map { $_ ** 2 } grep { $_ % 3 } 1..10; print "@s\n";
(my $r = "a.b.c") =~ s/\./::/g; print "$r ", S_ISDIR((stat "/")[2]) ? "dir" : "?", "\n";
open(my $fh, "-|", "echo", "from a pipe") or die; print scalar <$fh>; close $fh; print "status $?\n";
"""

OTHERS = r"""
sqlite3 :memory: "create table t(k text primary key, v real); insert into t values ('a', 1.5), ('b', 2.25), ('c', null);
  select k, v, typeof(v) from t order by k; select count(*), sum(v), avg(v), group_concat(k, '-') from t;
  with recursive f(n, x) as (select 1, 1 union all select n + 1, x * (n + 1) from f where n < 10) select max(x) from f;
  select json_object('k', 1, 'v', json_array(1, 2)), printf('%.3e', 12345.678), length(randomblob(16)), upper('kiln');"
echo '{"a":[3,1,2],"b":{"c":"x"},"n":null}' | jq -c '.a |= sort | .b.c |= ascii_upcase | [paths] | length, (.[0])'
echo '{"a":[3,1,2]}' | jq '.a | map(. * 10) | add'
echo 'scale=20; 4*a(1); 2^100; sqrt(2)' | bc -l
lua5.4 -e 'local t = {} for i = 1, 10 do t[#t + 1] = i * i end print(table.concat(t, ","), string.format("%5.2f", math.pi), ("kiln"):rep(2, "-"), utf8.char(9786))'
file /bin/bash /etc/debian_version /usr/lib/x86_64-linux-gnu/libc.so.6 /usr/share/perl5 /tmp
dpkg-query -W -f='${Package} ${Status}\n' bash python3 libc6 sqlite3 | sort
id; id -un nobody; getent passwd root nobody; getent group root adm; getent hosts localhost
ldd /usr/bin/python3.11 | sed -e 's/ (0x[0-9a-f]*)//' | grep -v linux-vdso   # no vDSO under vkernel
"""

RUNC_CAPABILITIES = ("chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid",
                     "setuid", "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill",
                     "audit_write")
"""The capabilities runc's default spec gives a container's root (what a guest starts with)."""
AS_CONTAINER = ["setpriv", "--bounding-set", ",".join(["-all", *(f"+{c}" for c in RUNC_CAPABILITIES)]),
                "--inh-caps=-all", "--clear-groups"]
"""Natively: root with a container's capabilities (under Kiln the same call changes nothing)."""

CAPABILITIES = r"""
setpriv -d
setpriv --reuid=nobody --regid=nogroup --clear-groups -- id
setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=+net_bind_service \
    --ambient-caps=+net_bind_service -- grep -E '^(Cap|NoNewPrivs)' /proc/self/status
setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs -- setpriv -d
capsh --print | grep -v '^Current IAB'
capsh --drop=cap_chown -- -c 'touch /tmp/f; chown nobody /tmp/f; echo "chown without CAP_CHOWN: $?"'
capsh --caps=cap_setuid,cap_setgid+ep -- -c 'grep CapEff /proc/self/status'
setpriv --bounding-set=-net_raw -- grep CapBnd /proc/self/status
"""

TERMINALS = r"""
script -qec 'tty; stty size; stty -a | head -1 | cut -d";" -f1; echo in script' /dev/null | tr -d '\r'
python3 - <<'PY'
import os, pty, termios
pid, fd = pty.fork()
if pid == 0:
    print("child:", os.ttyname(0), os.isatty(1), os.getsid(0) == os.getpid(), flush=True)
    os._exit(5)
out = b""
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
print(out, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
m, s = os.openpty()
print(os.ttyname(s), termios.tcgetattr(s)[3] & termios.ECHO != 0)
PY
"""

PYTHON = r"""
import bz2, ctypes, ctypes.util, decimal, fractions, hashlib, itertools, json, lzma, math, os, re, sqlite3
import statistics, struct, subprocess, sys, zlib, collections, datetime
print(sys.version_info[:2], sys.platform, sys.byteorder, sys.maxsize)
d = json.loads('{"a": [1, 2.5, null, true], "b": {"c": "\\u263a"}}')
print(json.dumps(d, sort_keys=True), json.dumps(d, indent=1, ensure_ascii=False))
print(re.findall(r"(\w+)@(\w+)\.com", "a@b.com, c@d.com"), re.sub(r"(?i)KILN", "x", "kiln Kiln"))
for name in ("md5", "sha1", "sha256", "sha3_256", "blake2b"):
    print(name, hashlib.new(name, b"kiln").hexdigest())
print(hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1000).hex())
data = b"kiln " * 1000
for mod in (zlib, bz2, lzma):
    c = mod.compress(data)
    print(mod.__name__, len(data), mod.decompress(c) == data)
print(zlib.crc32(data), zlib.adler32(data))
con = sqlite3.connect(":memory:")
con.execute("create table t (x integer, y text)")
con.executemany("insert into t values (?, ?)", [(i, str(i) * i) for i in range(1, 6)])
print(con.execute("select sum(x), max(length(y)), group_concat(y, '|') from t").fetchone(), sqlite3.sqlite_version)
decimal.getcontext().prec = 50
print(decimal.Decimal(1) / decimal.Decimal(7), decimal.Decimal("1.1") + decimal.Decimal("2.2"))
print(fractions.Fraction(3, 4) + fractions.Fraction(1, 6), math.factorial(30), math.gcd(2**64, 6**20))
print(statistics.mean([1, 2, 3, 4.5]), statistics.median([5, 1, 3]), f"{math.pi:.15f}", 2**0.5, 1e300 * 1e10)
print(struct.pack("<iQd", -1, 2**63, 1.5).hex(), list(itertools.permutations("abc", 2))[:4])
libc = ctypes.CDLL(ctypes.util.find_library("c"))
buf = ctypes.create_string_buffer(16)
libc.snprintf(buf, 16, b"%d-%s", 42, b"kiln")
arr = (ctypes.c_int * 6)(5, 3, 9, 1, 7, 2)
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
libc.qsort(arr, len(arr), ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
print("ctypes:", list(arr), libc.strlen(b"kiln"), libc.abs(-5), buf.value, ctypes.util.find_library("m"))
r = subprocess.run(["sh", "-c", "echo from sh; echo to err >&2; exit 3"], capture_output=True, text=True)
print(r.returncode, repr(r.stdout), repr(r.stderr))
print(subprocess.check_output(["python3", "-c", "print(6 * 7)"]).decode().strip())
try:
    subprocess.run(["/nonexistent/program"])
except FileNotFoundError as e:
    print("FileNotFoundError", e.errno)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r); os.write(w, b"hello from the child"); os._exit(5)
os.close(w)
print(os.read(r, 100), os.waitpid(pid, 0)[1] >> 8)
print(collections.Counter("mississippi").most_common(2), datetime.datetime(2000, 1, 1) + datetime.timedelta(days=1000))
print(sorted(os.listdir("/usr/lib/python3.11/json")))
print(b"a b".split(), b"".split(), b"x,y".split(b","))      # (a cold part of bytes.split)
import resource
for who in (-1, 999999):
    try:
        resource.prlimit(who, resource.RLIMIT_AS)
    except ProcessLookupError:
        print("prlimit of no such process: ESRCH")
print(resource.prlimit(0, resource.RLIMIT_NOFILE) == resource.getrlimit(resource.RLIMIT_NOFILE))
probe = [("/etc/passwd", os.W_OK), ("/usr/lib", os.W_OK), ("/tmp", os.W_OK), ("/etc/shadow", os.R_OK),
         ("/usr/bin/ls", os.X_OK)]
print("root:", [os.access(p, m) for p, m in probe], flush=True)   # rootfs files: as after copy-up
pid = os.fork()
if pid == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    print("nobody:", [os.access(p, m) for p, m in probe], flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""

CASES: dict[str, tuple[list[str], bytes]] = {
    "bash": (["bash", "-c", BASH], b""),
    "coreutils": (["bash", "-c", COREUTILS], b""),
    "grep-sed-awk": (["bash", "-c", TEXT], b""),
    "tar-gzip-xz-bzip2": (["bash", "-c", ARCHIVES], b""),
    "perl": (["perl", "-"], PERL.encode()),
    "sqlite-jq-bc-lua-file-nss-ldd": (["bash", "-c", OTHERS], b""),
    "python3": (["python3", "-"], PYTHON.encode()),
    "setpriv-capsh": ([*AS_CONTAINER, "bash", "-c", CAPABILITIES], b""),
    "script-pty": (["bash", "-c", TERMINALS], b""),
}
"""Case -> (argv after ``env -i ...``, stdin)."""


def _kiln(image: Path, argv: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    """``kiln run IMAGE -- argv`` in its own session; whatever it leaves behind is killed."""
    return run_in_session([*KILN, "run", str(image), "--", *argv], stdin, TIMEOUT)


@pytest.mark.parametrize("case", sorted(CASES))
def test_program_matches_native(case: str, debian_tree: Path, debian_recompiled: tuple[Path, dict]) -> None:
    argv, stdin = CASES[case]
    want = run_native(debian_tree, [*ENV, *argv], stdin=stdin, timeout=TIMEOUT)
    assert want.returncode == 0, want.stderr.decode(errors="replace")
    got = _kiln(debian_recompiled[0], [*ENV, *argv], stdin)
    assert got.stderr.decode(errors="replace") == want.stderr.decode(errors="replace")
    assert got.stdout.decode(errors="replace") == want.stdout.decode(errors="replace")
    assert got.returncode == want.returncode
