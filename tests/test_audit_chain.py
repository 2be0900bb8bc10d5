"""The audit log is a hash chain: `kiln audit verify` finds an edited, deleted, inserted or
reordered record, and a log written by many guest processes at once verifies.

The logs come from real runs: a musl program forks guest processes that each
ask for executable anonymous memory many times (every refusal is a record),
all at the same time, into one --audit-log file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from test_vkernel_guestc import Guest, recompiled

BIN = Path(sys.executable).parent
KILN = [str(BIN / "kiln")]
CHILDREN, TRIES = 4, 250

FORKER = r"""
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int gate[2];
    char c;
    if (pipe(gate)) return 1;
    for (int n = 0; n < %d; n++) {
        if (fork() == 0) {
            int refused = 0;
            close(gate[1]);
            if (read(gate[0], &c, 1) != 0) _exit(100);   /* all start together: at EOF */
            for (int i = 0; i < %d; i++) {
                void *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) refused++;
            }
            _exit(refused);
        }
    }
    close(gate[1]);
    int total = 0, status;
    while (wait(&status) > 0)
        total += WIFEXITED(status) ? WEXITSTATUS(status) : 1000;
    printf("refused %%d\n", total);
    return 0;
}
""" % (CHILDREN, TRIES)


@pytest.fixture(scope="module")
def guest(tmp_path_factory) -> Guest:
    return recompiled(tmp_path_factory.mktemp("auditchain"), {"/bin/forker": FORKER})


@pytest.fixture(scope="module")
def log(guest: Guest, tmp_path_factory) -> Path:
    """An audit log written by CHILDREN guest processes at once, then a second run."""
    path = tmp_path_factory.mktemp("auditlog") / "audit.jsonl"
    for _ in range(2):
        got = subprocess.run([*KILN, "run", "--audit-log", str(path), str(guest.image), "--",
                              "/bin/forker"], capture_output=True, timeout=120)
        assert got.returncode == 0, got.stderr
        assert got.stdout == f"refused {CHILDREN * TRIES}\n".encode()
    return path


def verify(path: Path, *extra: str) -> tuple[int, dict]:
    got = subprocess.run([*KILN, "audit", "verify", str(path), "--json", *extra],
                         capture_output=True, text=True, timeout=60)
    assert "Traceback" not in got.stderr
    return got.returncode, json.loads(got.stdout)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_log_written_by_a_forking_guest_verifies(log: Path) -> None:
    recs = [json.loads(line) for line in lines(log)]
    assert len(recs) == 2 * CHILDREN * TRIES
    assert {(r["event"], r["decision"]) for r in recs} == {("mmap", "refused")}
    per_run = CHILDREN * TRIES
    for run in (recs[:per_run], recs[per_run:]):                  # every process wrote its own
        assert len({r["pid"] for r in run}) == CHILDREN
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    # Each record holds the BLAKE3 of the line before it (the first: the genesis value).
    prev = ["blake3:" + "0" * 64] + ["blake3:" + blake3.blake3(line.rstrip(b"\n")).hexdigest()
                                     for line in lines(log)[:-1]]
    assert [r["prev"] for r in recs] == prev
    status, report = verify(log)
    assert (status, report["ok"], report["records"]) == (0, True, len(recs))
    plain = subprocess.run([*KILN, "audit", "verify", str(log)], capture_output=True, text=True)
    assert plain.returncode == 0 and plain.stdout.startswith(f"ok, {len(recs)} records")


def _tampered(log: Path, tmp: Path, edit) -> Path:
    out = tmp / "tampered.jsonl"
    out.write_bytes(b"".join(edit(lines(log))))
    return out


def test_an_edited_record_is_found(log: Path, tmp_path: Path) -> None:
    def edit(ls: list[bytes]) -> list[bytes]:
        rec = json.loads(ls[9])
        rec["decision"] = "allowed"                   # a refusal rewritten as allowed
        ls[9] = json.dumps(rec, sort_keys=True).encode() + b"\n"
        return ls
    status, report = verify(_tampered(log, tmp_path, edit))
    assert (status, report["ok"], report["line"], report["records"]) == (1, False, 11, 10)
    assert "line 10 was edited" in report["problem"]


def test_a_deleted_record_is_found(log: Path, tmp_path: Path) -> None:
    status, report = verify(_tampered(log, tmp_path, lambda ls: ls[:20] + ls[21:]))
    assert (status, report["line"]) == (1, 21)
    assert "1 record(s) before this line were removed" in report["problem"]
    status, report = verify(_tampered(log, tmp_path, lambda ls: ls[3:]))
    assert (status, report["line"]) == (1, 1) and "3 record(s)" in report["problem"]


def test_reordered_and_inserted_records_are_found(log: Path, tmp_path: Path) -> None:
    status, report = verify(_tampered(log, tmp_path,
                                      lambda ls: ls[:30] + [ls[31], ls[30]] + ls[32:]))
    assert (status, report["line"]) == (1, 31) and "moved" in report["problem"]
    status, report = verify(_tampered(log, tmp_path, lambda ls: ls[:5] + [ls[2]] + ls[5:]))
    assert (status, report["line"]) == (1, 6) and "reordered" in report["problem"]
    forged = json.dumps({"event": "run", "decision": "allowed", "pid": 1}).encode() + b"\n"
    status, report = verify(_tampered(log, tmp_path, lambda ls: ls[:7] + [forged] + ls[7:]))
    assert (status, report["line"]) == (1, 8) and "not a chained audit record" in report["problem"]


def test_a_cut_log_is_found_against_a_kept_head(log: Path, tmp_path: Path) -> None:
    _, whole = verify(log)
    cut = _tampered(log, tmp_path, lambda ls: ls[:-3])
    status, report = verify(cut)
    assert status == 0 and report["records"] == whole["records"] - 3   # a chain alone cannot tell
    status, report = verify(cut, "--head", whole["head"])
    assert status == 1 and "cut short or rewritten" in report["problem"]
    half = _tampered(log, tmp_path, lambda ls: ls[:-1] + [ls[-1][:40]])
    status, report = verify(half)
    assert (status, report["line"]) == (1, len(lines(log))) and "incomplete" in report["problem"]


def test_a_run_appends_to_a_torn_log_and_verify_names_the_torn_line(guest: Guest,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq": 0, "prev": "blake3:' + b"0" * 64 + b'", "eve')   # cut mid-record
    got = subprocess.run([*KILN, "run", "--audit-log", str(path), str(guest.image), "--",
                          "/bin/forker"], capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert len(lines(path)) == 1 + CHILDREN * TRIES                 # nothing lost
    status, report = verify(path)
    assert (status, report["line"]) == (1, 1) and "not a JSON record" in report["problem"]


def test_verify_of_a_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    got = subprocess.run([*KILN, "audit", "verify", str(tmp_path / "none.jsonl")],
                         capture_output=True, text=True)
    assert got.returncode == 2 and got.stderr.startswith("error: cannot read the audit log")
    assert "hint:" in got.stderr and "Traceback" not in got.stderr
