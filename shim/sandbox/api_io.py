"""``kiln serve`` routes that move data in and out of a sandbox: exec (plain, streamed with
server-sent events, or in the background), processes, run_code, files and snapshots."""
from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import json
import os
import signal as hsignal
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from shim.sandbox.config import ServerConfig
from shim.sandbox.errors import ApiError, bad_request
from shim.sandbox.manager import Manager
from shim.sandbox.models import (BackgroundStarted, CodeBody, CodeResult, ExecBody, ExecResult,
                                 FileList, ProcessInfo, SignalBody, SnapshotInfo, StdinBody)
from shim.sandbox.procs import GuestProcess, encode_output
from shim.sandbox.sandboxes import Sandbox, signal_number
from shim.sandbox.tokens import Token

__all__ = ["io_routes", "check_path"]

PATH_MAX = 4096
_CHUNK = 1 << 20


def check_path(path: str | None) -> str:
    """A files-API path: absolute, no NUL, not too long. It is resolved inside the sandbox's
    root by the sandbox itself (``..`` and symlinks never leave it)."""
    if not path:
        raise bad_request("give ?path=/absolute/path/in/the/sandbox")
    if "\0" in path or len(path) > PATH_MAX:
        raise bad_request("path contains a NUL byte or is too long")
    if not path.startswith("/"):
        raise bad_request(f"path {path!r} is not absolute",
                          hint="paths are absolute paths inside the sandbox, e.g. /tmp/data.txt")
    return path


def _decode(data: str | None, encoding: str) -> bytes:
    if data is None:
        return b""
    if encoding == "base64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("stdin is not valid base64") from None
    return data.encode("utf-8", "surrogatepass")


def io_routes(v1: APIRouter, manager: Manager, cfg: ServerConfig,
              auth: Callable[..., Any]) -> None:
    obs = manager.obs

    def sandbox(sid: str, token: Token) -> Sandbox:
        return manager.get(sid, token)

    # -- exec -------------------------------------------------------------------------------
    @v1.post("/sandboxes/{sid}/exec",
             responses={200: {"model": ExecResult,
                              "description": "The result; with Accept: text/event-stream, "
                                             "events stdout, stderr and exit instead"},
                        202: {"model": BackgroundStarted}},
             summary="Run a command in the sandbox (argv, or cmd through /bin/sh -c)")
    async def exec_(sid: str, body: ExecBody, request: Request,
                    token: Token = Depends(auth)) -> Any:
        sb = sandbox(sid, token)
        try:
            argv = body.command()
        except ValueError as e:
            raise bad_request(str(e), hint='{"argv": ["ls", "-l"]} or {"cmd": "ls -l | wc -l"}') \
                from None
        if body.cwd is not None and not body.cwd.startswith("/"):
            raise bad_request(f"cwd {body.cwd!r} is not an absolute path")
        stdin = _decode(body.stdin, "utf-8")
        timeout = body.timeout_s or cfg.exec_timeout_s
        p = await sb.start(argv, body.env, body.cwd, stdin=body.background or body.stdin is not None,
                           background=body.background)
        obs.execs.labels("background" if body.background else "exec").inc()
        if body.stdin is not None:
            asyncio.ensure_future(_feed(p, stdin))
        if body.background:
            return JSONResponse({"pid": p.pid}, status_code=202)
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(_stream(sb, p, timeout, body.encoding),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})
        await _wait(sb, p, timeout)
        obs.exec_seconds.observe(p.duration_ms() / 1000)
        sb.forget(p)
        return _result(p, body.encoding)

    async def _feed(p: GuestProcess, data: bytes) -> None:
        try:
            await p.write_stdin(data, eof=True)
        except (BrokenPipeError, OSError):
            p.close_stdin()

    async def _wait(sb: Sandbox, p: GuestProcess, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(p.exited), timeout)
        except asyncio.TimeoutError:
            p.timed_out = True
            await sb.kill_process(p)
            try:
                await asyncio.wait_for(asyncio.shield(p.exited), 10)
            except asyncio.TimeoutError:
                p.gone()
        await p.finish()

    def _result(p: GuestProcess, encoding: str) -> dict:
        return {"exit_code": p.status if p.status is not None else 137,
                "stdout": encode_output(bytes(p.stdout.data), encoding),
                "stderr": encode_output(bytes(p.stderr.data), encoding),
                "timed_out": p.timed_out, "duration_ms": round(p.duration_ms(), 3),
                "encoding": encoding, "signal": p.signal,
                "truncated": p.stdout.truncated or p.stderr.truncated}

    async def _stream(sb: Sandbox, p: GuestProcess, timeout: float,
                      encoding: str) -> AsyncIterator[bytes]:
        queue: asyncio.Queue = asyncio.Queue()
        for name, reader in (("stdout", p.stdout), ("stderr", p.stderr)):
            if reader.data:
                queue.put_nowait((name, bytes(reader.data)))
            reader.listeners.append(lambda chunk, n=name: queue.put_nowait((n, chunk)))
        waiter = asyncio.ensure_future(_wait(sb, p, timeout))
        waiter.add_done_callback(lambda _: queue.put_nowait(("done", None)))
        try:
            while True:
                name, chunk = await queue.get()
                if name == "done":
                    break
                if chunk:
                    yield _sse(name, {"data": encode_output(chunk, encoding),
                                      "encoding": encoding})
            result = _result(p, encoding)
            del result["stdout"], result["stderr"]
            yield _sse("exit", result)
        finally:
            if not waiter.done():
                waiter.cancel()
                await sb.kill_process(p)
            sb.forget(p)

    def _sse(event: str, data: dict) -> bytes:
        return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    # -- background processes ---------------------------------------------------------------
    @v1.get("/sandboxes/{sid}/processes", summary="The sandbox's processes")
    async def processes(sid: str, token: Token = Depends(auth)) -> dict:
        sb = sandbox(sid, token)
        listed = await sb.ps()
        out = []
        for item in listed:
            p = sb.procs.get(item["pid"])
            out.append({"pid": item["pid"], "ppid": item["ppid"], "argv": item["argv"],
                        "rss_kb": item["rss_kb"], "state": item["state"],
                        "started_by_api": p is not None,
                        "background": bool(p and p.background)})
        return {"processes": out,
                "ended": [_pinfo(p, "utf-8", False) for p in sb.procs.values() if not p.running]}

    def _pinfo(p: GuestProcess, encoding: str, output: bool = True) -> dict:
        out = {"pid": p.pid, "argv": p.argv, "running": p.running, "exit_code": p.status,
               "signal": p.signal, "background": p.background, "started": p.started,
               "encoding": encoding}
        if output:
            out["stdout"] = encode_output(bytes(p.stdout.data), encoding)
            out["stderr"] = encode_output(bytes(p.stderr.data), encoding)
        return out

    @v1.get("/sandboxes/{sid}/processes/{pid}", response_model=ProcessInfo,
            summary="A process started through the API: status and output so far")
    async def process(sid: str, pid: int, encoding: str = Query("utf-8",
                      pattern="^(utf-8|base64)$"), token: Token = Depends(auth)) -> dict:
        return _pinfo(sandbox(sid, token).process(pid), encoding)

    @v1.post("/sandboxes/{sid}/processes/{pid}/signal", summary="Signal a process (its group)")
    async def signal(sid: str, pid: int, body: SignalBody, token: Token = Depends(auth)) -> dict:
        sb = sandbox(sid, token)
        p = sb.process(pid)
        sig = signal_number(body.signal)
        if p.running:
            await sb.signal(pid, sig, body.group)
        return {"pid": pid, "signal": sig, "running": p.running}

    @v1.post("/sandboxes/{sid}/processes/{pid}/stdin", summary="Feed a process's stdin")
    async def stdin(sid: str, pid: int, body: StdinBody, token: Token = Depends(auth)) -> dict:
        sb = sandbox(sid, token)
        p = sb.process(pid)
        data = _decode(body.data, body.encoding)
        try:
            await p.write_stdin(data, eof=body.eof)
        except BrokenPipeError:
            raise ApiError(409, f"process {pid}'s stdin is closed",
                           hint="it has ended or closed its input") from None
        return {"pid": pid, "written": len(data), "eof": body.eof}

    @v1.delete("/sandboxes/{sid}/processes/{pid}", summary="Kill a process (SIGKILL, its group)")
    async def kill(sid: str, pid: int, token: Token = Depends(auth)) -> dict:
        sb = sandbox(sid, token)
        p = sb.process(pid)
        if p.running:
            await sb.signal(pid, hsignal.SIGKILL, True)
        return {"pid": pid, "killed": p.running}

    # -- run_code ---------------------------------------------------------------------------
    @v1.post("/sandboxes/{sid}/code", response_model=CodeResult,
             summary="Run code in an interpreter that keeps its state between calls")
    async def code(sid: str, body: CodeBody, token: Token = Depends(auth)) -> dict:
        from shim.sandbox.sessions import Session
        sb = sandbox(sid, token)
        lang = "bash" if body.language == "sh" else body.language
        session = sb.sessions.get(lang)
        if session is None:
            session = sb.sessions[lang] = Session(sb, lang)
        obs.execs.labels("code").inc()
        return await session.run(body.code, body.timeout_s or cfg.exec_timeout_s)

    # -- files ------------------------------------------------------------------------------
    @v1.put("/sandboxes/{sid}/files", summary="Write a file (the raw body), creating parents")
    async def put_file(sid: str, request: Request, path: str = Query(...),
                       mode: str = Query("644", pattern="^[0-7]{3,4}$"),
                       token: Token = Depends(auth)) -> dict:
        sb = sandbox(sid, token)
        fd, reply = await sb.open_file(check_path(path), write=True, mode=int(mode, 8))
        written = 0
        try:
            async for chunk in request.stream():
                view = memoryview(chunk)
                while view:
                    try:
                        n = os.write(fd, view)
                    except OSError as e:
                        if e.errno == errno.ENOSPC:
                            raise ApiError(507, f"{path}: the sandbox's disk quota is full after "
                                           f"{written} bytes", hint="remove files in the "
                                           "sandbox first") from None
                        raise ApiError(500, f"{path}: {e.strerror}") from None
                    view = view[n:]
                    written += n
        finally:
            os.close(fd)
        return {"path": reply.get("path", path), "size": written}

    @v1.get("/sandboxes/{sid}/files", summary="Read a file (raw bytes), or list a directory "
            "with list=1", responses={200: {"model": FileList, "description":
                                             "with list=1; else the file's bytes"}})
    async def get_file(sid: str, path: str = Query(...), list: bool = Query(False),
                       token: Token = Depends(auth)) -> Any:
        sb = sandbox(sid, token)
        path = check_path(path)
        if list:
            return await sb.list_dir(path)
        fd, reply = await sb.open_file(path, write=False)
        size = int(reply.get("size", 0))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    data = os.read(fd, _CHUNK)
                    if not data:
                        return
                    yield data
            finally:
                os.close(fd)
        return StreamingResponse(chunks(), media_type="application/octet-stream",
                                 headers={"Content-Length": str(size)})

    @v1.delete("/sandboxes/{sid}/files", summary="Remove a file, or a directory "
               "(recursive=1 for a non-empty one)")
    async def delete_file(sid: str, path: str = Query(...), recursive: bool = Query(False),
                          token: Token = Depends(auth)) -> dict:
        sb = sandbox(sid, token)
        await sb.remove(check_path(path), recursive)
        return {"path": path, "removed": True}

    # -- snapshots --------------------------------------------------------------------------
    @v1.post("/sandboxes/{sid}/snapshot", response_model=SnapshotInfo, status_code=201,
             summary="Save the sandbox: files, run_code interpreters (409: something else runs)")
    async def snapshot(sid: str, token: Token = Depends(auth)) -> dict:
        sb = sandbox(sid, token)
        snap = await manager.snapshots.take(sb, token)
        return snap.info()

    @v1.get("/snapshots", summary="Your snapshots")
    async def snapshots(token: Token = Depends(auth)) -> dict:
        return {"snapshots": [s.info() for s in manager.snapshots.visible(token)]}

    @v1.get("/snapshots/{snap_id}", response_model=SnapshotInfo, summary="One snapshot")
    async def show_snapshot(snap_id: str, token: Token = Depends(auth)) -> dict:
        return manager.snapshots.get(snap_id, token).info()

    @v1.delete("/snapshots/{snap_id}", summary="Remove a snapshot")
    async def delete_snapshot(snap_id: str, token: Token = Depends(auth)) -> dict:
        manager.snapshots.remove(snap_id, token)
        return {"snapshot_id": snap_id, "deleted": True}

