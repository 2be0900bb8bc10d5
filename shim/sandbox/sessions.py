"""run_code: an interpreter per sandbox and language that keeps its state between calls.

The first ``POST .../code`` for a language starts its interpreter as a guest
process of the sandbox whose stdin the server keeps (a *session*); each call
sends one cell and reads the cell's output up to a marker the interpreter
prints when the cell is done. Variables, functions, the working directory
and imported modules stay, as in a notebook kernel.

- **bash / sh**: ``bash`` when the image has it, else ``sh`` (busybox). A cell
  runs as ``command eval '<cell>' </dev/null``: through ``command``, a syntax
  error is status 2 instead of ending a non-interactive shell, and the cell
  reads no stdin (so it cannot eat the next cell). The markers carry a fresh
  random nonce per cell and the cell's status: ``\\x1eKILN-<nonce>-<status>\\x1e``
  on stdout, ``\\x1eKILN-<nonce>\\x1e`` on stderr.
- **python**: ``python3 -u -c DRIVER``: the driver below reads
  ``<nonce> <length>\\n<code>`` cells, runs each with ``exec`` in one
  ``__main__`` namespace (the value of a last expression is printed, as in a
  REPL), prints a traceback for an exception (status 1) and then the same
  markers. Under Kiln it needs a recompiled image with python3 (a dynamically
  linked program).

A cell that times out kills the interpreter (its state is lost; the next call
starts a fresh one and says ``restarted``). A cell that ends the interpreter
(``exit``) is answered with the interpreter's status, and the next call
restarts it too.
"""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import TYPE_CHECKING

from shim.sandbox.errors import bad_request, conflict

if TYPE_CHECKING:
    from shim.sandbox.procs import GuestProcess
    from shim.sandbox.sandboxes import Sandbox

__all__ = ["Session", "PY_DRIVER", "shell_quote", "INTERPRETERS"]

INTERPRETERS = {"bash": ("bash", "sh"), "sh": ("sh",), "python": ("python3", "python")}

PY_DRIVER = r'''
import ast, os, sys, traceback
def _kiln_main():
    inp = sys.stdin.buffer
    sys.stdin = open(os.devnull)
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    while True:
        head = inp.readline()
        if not head:
            return
        nonce, size = head.split()
        code = inp.read(int(size)).decode("utf-8", "replace")
        status = 0
        try:
            tree = ast.parse(code, "<cell>", "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, "<cell>", "exec"), g)
            if last is not None:
                value = eval(compile(last, "<cell>", "eval"), g)
                if value is not None:
                    print(repr(value))
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except BaseException:
            status = 1
            kind, value, tb = sys.exc_info()
            traceback.print_exception(kind, value, tb.tb_next)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, b"\x1eKILN-" + nonce + b"-" + str(status).encode() + b"\x1e")
        os.write(2, b"\x1eKILN-" + nonce + b"\x1e")
_kiln_main()
'''


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


class _Cell:
    """Output of one cell, collected until both markers are seen."""

    def __init__(self, nonce: str) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.status: int | None = None
        self.err_done = False
        self.out_mark = re.compile(rb"\x1eKILN-" + nonce.encode() + rb"-(-?\d+)\x1e")
        self.err_mark = b"\x1eKILN-" + nonce.encode() + b"\x1e"
        self.done = asyncio.get_running_loop().create_future()

    def on_out(self, chunk: bytes | None) -> None:
        if chunk is None or self.status is not None:
            return self._check()
        self.out += chunk
        m = self.out_mark.search(self.out)
        if m:
            self.status = int(m.group(1))
            del self.out[m.start():]
        self._check()

    def on_err(self, chunk: bytes | None) -> None:
        if chunk is None or self.err_done:
            return self._check()
        self.err += chunk
        at = self.err.find(self.err_mark)
        if at >= 0:
            self.err_done = True
            del self.err[at:]
        self._check()

    def _check(self) -> None:
        if self.status is not None and self.err_done and not self.done.done():
            self.done.set_result(None)


class Session:
    """One interpreter of one sandbox."""

    def __init__(self, sb: "Sandbox", language: str) -> None:
        self.sb = sb
        self.language = language
        self.proc: "GuestProcess | None" = None
        self.interpreter = ""
        self.lock = asyncio.Lock()
        self.busy = False
        self.cells = 0

    async def _start(self) -> None:
        names = INTERPRETERS[self.language]
        found = await self._which(names)
        if found is None:
            raise bad_request(f"the image {self.sb.image} has no {' or '.join(names)} for "
                              f"{self.language} code",
                              hint="python needs an image with python3 (dynamically linked "
                                   "programs)" if self.language == "python" else None)
        if self.language == "python":
            argv = [found, "-u", "-c", PY_DRIVER]
        else:
            argv = [found]
        self.interpreter = found
        self.proc = await self.sb.start(argv, {"PS1": "", "PS2": ""}, None, stdin=True,
                                        op="session", cap=0, cpu_s=None)
        self.proc.stdout.listeners.append(self._route_out)
        self.proc.stderr.listeners.append(self._route_err)
        self._cell: _Cell | None = None

    def attach(self, proc: "GuestProcess", interpreter: str) -> None:
        """A session restored from a snapshot: its interpreter is already running."""
        self.proc = proc
        self.interpreter = interpreter
        self._cell = None
        proc.stdout.listeners.append(self._route_out)
        proc.stderr.listeners.append(self._route_err)

    async def _which(self, names: tuple[str, ...]) -> str | None:
        reply, _ = await self.sb.request({"op": "which", "names": list(names)})
        return reply.get("path")

    def _route_out(self, chunk: bytes | None) -> None:
        if self._cell is not None:
            self._cell.on_out(chunk)

    def _route_err(self, chunk: bytes | None) -> None:
        if self._cell is not None:
            self._cell.on_err(chunk)

    def _payload(self, code: str, nonce: str) -> bytes:
        if self.language == "python":
            data = code.encode("utf-8", "surrogatepass")
            return f"{nonce} {len(data)}\n".encode() + data
        if "\0" in code:
            raise bad_request("shell code cannot contain NUL bytes")
        return (f"command eval {shell_quote(code)} </dev/null\n"
                f"__kiln_s=$?; printf '\\036KILN-%s-%s\\036' {nonce} \"$__kiln_s\"; "
                f"printf '\\036KILN-%s\\036' {nonce} >&2\n").encode("utf-8", "surrogateescape")

    async def run(self, code: str, timeout: float) -> dict:
        if self.lock.locked():
            raise conflict(f"sandbox {self.sb.id} is already running {self.language} code",
                           hint="wait for the call before, or use another sandbox")
        async with self.lock:
            self.busy = True
            try:
                return await self._run(code, timeout)
            finally:
                self.busy = False

    async def _run(self, code: str, timeout: float) -> dict:
        restarted = False
        if self.proc is None or not self.proc.running:
            restarted = self.proc is not None
            await self._start()
        assert self.proc is not None
        nonce = secrets.token_hex(8)
        cell = _Cell(nonce)
        self._cell = cell
        t0 = time.perf_counter()
        timed_out = False
        try:
            await self.proc.write_stdin(self._payload(code, nonce))
            waiter = asyncio.ensure_future(cell.done)
            ended = asyncio.ensure_future(self.proc.exited)
            done, _ = await asyncio.wait({waiter, ended}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                timed_out = True
                await self.sb.kill_process(self.proc)
                await asyncio.wait({ended}, timeout=5)
            waiter.cancel()
        except BrokenPipeError:
            await asyncio.wait({asyncio.ensure_future(self.proc.exited)}, timeout=5)
        finally:
            self._cell = None
        self.cells += 1
        if cell.status is not None:
            status = cell.status
        elif self.proc.status is not None:
            await self.proc.finish()
            status = self.proc.status
        else:
            status = 137
        return {"exit_code": status, "stdout": cell.out.decode("utf-8", "replace"),
                "stderr": cell.err.decode("utf-8", "replace"), "timed_out": timed_out,
                "duration_ms": (time.perf_counter() - t0) * 1000, "language": self.language,
                "interpreter": self.interpreter, "restarted": restarted}

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close_pipes()
