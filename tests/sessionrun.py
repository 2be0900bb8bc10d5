"""Run a command in a session of its own and kill whatever it leaves behind."""
from __future__ import annotations

import os
import signal
import subprocess


def run_in_session(cmd: list[str], stdin: bytes, timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` with ``stdin``, stdout and stderr captured; after ``timeout`` seconds, or once it
    has ended, its whole session is killed (a guest's leftover processes too). A timed-out run
    has returncode -1 and a note at the end of its stderr."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(cmd, -1, out, err + f"<killed after {timeout} s>".encode())
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
