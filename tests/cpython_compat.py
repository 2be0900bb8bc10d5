"""CPython's own regression tests (Debian's libpython3.11-testsuite) under ``kiln run`` and natively.

Each module of :data:`MODULES` runs alone (``python3 -m test -v MODULE``) over
the Debian example's tree natively (a fresh overlay, tests/native_overlay.py)
and in the recompiled image (``kiln run``). The outcome compared is what
unittest reports: tests run, failures, errors, skips and the overall result.
Run as a script it writes the table of docs/compat.md::

    .venv/bin/python tests/cpython_compat.py --markdown docs/compat.md

(root; the Debian example tree and its recompiled image are built, or taken
from Kiln's cache, as the test suite builds them). tests/test_cpython_compat.py
runs a sample of the modules in the suite.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from native_overlay import run_native  # noqa: E402

MODULES = (
    "test_json", "test_re", "test_math", "test_cmath", "test_struct", "test_collections",
    "test_itertools", "test_functools", "test_operator", "test_hashlib", "test_hmac", "test_zlib",
    "test_bz2", "test_lzma", "test_binascii", "test_base64", "test_datetime", "test_time",
    "test_decimal", "test_fractions", "test_statistics", "test_random", "test_bisect", "test_heapq",
    "test_string", "test_textwrap", "test_difflib", "test_csv", "test_pickle", "test_copy",
    "test_enum", "test_dataclasses", "test_array", "test_ctypes", "test_subprocess", "test_os",
    "test_signal", "test_select", "test_fcntl", "test_tempfile", "test_shutil", "test_glob",
    "test_posixpath", "test_unicodedata", "test_long", "test_float", "test_threading", "test_pty",
)
"""The modules compared (the issue's list and more: pure Python, C extensions, processes).
Debian's libpython3.11-testsuite has no test_sqlite3 (regrtest finds no such module natively
either); sqlite3 is checked by tests/test_debian_programs.py instead."""

ENV = ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LC_ALL=C.UTF-8"]
TIMEOUT = 900
RUNC_CAPABILITIES = ("chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid",
                     "setuid", "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill",
                     "audit_write")
"""The capabilities runc's default spec (``runc spec``) gives a container's root."""
CONTAINER = ["setpriv", "--bounding-set", ",".join(["-all", *(f"+{c}" for c in RUNC_CAPABILITIES)]),
             "prlimit", "--nofile=1024:1024"]
"""The native side as runc's default spec runs a container (and as ``kiln run`` runs the
guest): root with runc's default capabilities only, and 1024 open files. Without CAP_SYS_TIME
(test_time would otherwise really set the host's clock back an hour) and CAP_SYS_ADMIN (a
guest sets ``user.*`` extended attributes, not ``trusted.*``: test_shutil's copyxattr tests);
test_subprocess's test_no_leaking needs to reach the file limit, and the host's may be higher.
The image's own util-linux does both."""
_RAN = re.compile(rb"^Ran (\d+) tests? in ", re.M)
_RESULT = re.compile(rb"^(OK|FAILED)(?: \(([^)]*)\))?\s*$", re.M)
_SUMMARY = re.compile(rb"^== Tests result: ([A-Z ,]+) ==", re.M)
_NOT_PASSED = re.compile(rb"^(?:FAIL|ERROR): \w+ \(([\w.]+)\)", re.M)


@dataclass(frozen=True)
class Outcome:
    """What unittest reported for one module."""
    result: str           # regrtest's "Tests result" (SUCCESS, FAILURE, ...), or "crashed"/"timeout"
    ran: int
    failures: int
    errors: int
    skipped: int
    seconds: float
    not_passed: tuple[str, ...] = ()
    """The tests that failed or had an error, as Class.test_name: equal counts are not enough
    (a native failure and a different Kiln failure once made test_shutil look the same)."""

    def same_as(self, other: "Outcome") -> bool:
        return (self.result, self.ran, self.failures, self.errors, self.skipped, self.not_passed) == \
            (other.result, other.ran, other.failures, other.errors, other.skipped, other.not_passed)

    def brief(self) -> str:
        extra = ", ".join(f"{n} {k}" for k, n in (("failures", self.failures), ("errors", self.errors),
                                                   ("skipped", self.skipped)) if n)
        names = f" ({', '.join(self.not_passed)})" if self.not_passed else ""
        return f"{self.result}: {self.ran} run" + (f", {extra}" if extra else "") + names


def parse(returncode: int, out: bytes) -> Outcome:
    """The outcome of ``python3 -m test -v MODULE`` from its output."""
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    ran = sum(int(m.group(1)) for m in _RAN.finditer(out))
    for m in _RESULT.finditer(out):
        for part in (m.group(2) or b"").split(b","):
            key, _, n = part.strip().partition(b"=")
            if key.decode() in counts and n.isdigit():
                counts[key.decode()] += int(n)
    summary = _SUMMARY.findall(out)
    result = summary[-1].decode() if summary else ("timeout" if returncode == -1 else "crashed")
    not_passed = sorted({".".join(m.decode().split(".")[-2:]) for m in _NOT_PASSED.findall(out)})
    return Outcome(result, ran, counts["failures"], counts["errors"], counts["skipped"], 0.0,
                   tuple(not_passed))


def _command(module: str) -> list[str]:
    return [*ENV, "python3", "-m", "test", "-v", module]


def native(tree: Path, module: str) -> tuple[Outcome, bytes]:
    start = time.monotonic()
    try:
        p = run_native(tree, [*CONTAINER, *_command(module)], timeout=TIMEOUT)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, out = -1, b""
    o = parse(rc, out)
    return Outcome(**{**asdict(o), "seconds": round(time.monotonic() - start, 1)}), out


def kiln(image: Path, module: str) -> tuple[Outcome, bytes]:
    cmd = [str(Path(sys.executable).with_name("kiln")), "run", str(image), "--", *_command(module)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        rc = -1
    o = parse(rc, out)
    return Outcome(**{**asdict(o), "seconds": round(time.monotonic() - start, 1)}), out


def markdown(rows: list[tuple[str, Outcome, Outcome]]) -> str:
    same = sum(a.same_as(b) for _, a, b in rows)
    lines = [f"{same} of {len(rows)} modules have the same outcome under Kiln as natively.", "",
             "| module | native | kiln | same | native s | kiln s |", "|---|---|---|---|---:|---:|"]
    for m, a, b in rows:
        lines.append(f"| {m} | {a.brief()} | {b.brief()} | {'yes' if a.same_as(b) else '**no**'} "
                     f"| {a.seconds} | {b.seconds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, help="the Debian example tree (default: build or take it from the cache)")
    ap.add_argument("--image", type=Path, help="the recompiled Debian example image (default: recompile it)")
    ap.add_argument("--markdown", type=Path, help="write the table here (between the markers of docs/compat.md)")
    ap.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    ap.add_argument("modules", nargs="*", default=list(MODULES))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.debian.build import build_debian_image, debootstrap_rootfs
    tree = args.tree or debootstrap_rootfs("bookworm")
    image = args.image
    if image is None:
        work = Path(os.environ.get("TMPDIR", "/tmp")) / f"kiln-compat-{os.getpid()}"
        src = build_debian_image(work / "img")
        image = work / "recompiled"
        subprocess.run([sys.executable, "-m", "recompiler.cli", str(src), "-o", str(image)], check=True)
    rows = []
    for m in args.modules:
        a, _ = native(tree, m)
        b, _ = kiln(image, m)
        rows.append((m, a, b))
        print(f"{m}: native {a.brief()} ({a.seconds} s); kiln {b.brief()} ({b.seconds} s)"
              f"{'' if a.same_as(b) else '  DIFFERENT'}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([{"module": m, "native": asdict(a), "kiln": asdict(b)} for m, a, b in rows], indent=1))
    if args.markdown:
        text = args.markdown.read_text() if args.markdown.exists() else ""
        begin, end = "<!-- cpython-compat:begin -->\n", "<!-- cpython-compat:end -->\n"
        table = begin + markdown(rows) + end
        if begin in text and end in text:
            text = text[:text.index(begin)] + table + text[text.index(end) + len(end):]
        else:
            text += "\n" + table
        args.markdown.write_text(text)
    return 0 if all(a.same_as(b) for _, a, b in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
