"""Snapshots of sandboxes: taken on request, kept on disk under the server's state, restored
into new sandboxes any number of times.

A snapshot (``STATE/snapshots/snap-<hex>/``) is

- ``upper.tar``: the sandbox's upper layer (its files; the image's own are the
  lower layer, shared);
- ``proc-<pid>.img``: one image per run_code interpreter (vkernel/checkpoint.py:
  its memory, CPU state, code map, fd table, credentials, signal state), so
  a variable defined before the snapshot is defined after every restore;
- ``manifest.json``: owner, image, the sandbox it came from, and each file's
  BLAKE3 and size.

Taking one asks the sandbox's first process (shim/sandbox/freeze.py) while
every interpreter's lock is held (no cell runs); a sandbox with anything else
running is refused with 409 and what runs. Restoring checks every file
against the manifest first: a truncated or modified snapshot is refused
(409) and the new sandbox removed. Snapshots belong to the token that took
them (another token's is a 404; an admin sees all), count toward its
``snapshots=N`` quota and the server's ``snapshot_keep``, are listed and
deleted through ``/v1/snapshots``, and outlive a server restart.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from shim.sandbox.errors import ApiError, conflict, not_found, quota

if TYPE_CHECKING:
    from shim.sandbox.manager import Manager
    from shim.sandbox.sandboxes import Sandbox
    from shim.sandbox.tokens import Token

__all__ = ["Snapshots", "Snapshot", "SavedFile", "SavedSession"]

_MANIFEST = "manifest.json"
_DAMAGED_HINT = "the snapshot is damaged: delete it (DELETE /v1/snapshots/ID) and take a new one"


@dataclass(frozen=True)
class SavedFile:
    name: str
    blake3: str
    bytes: int


@dataclass(frozen=True)
class SavedSession:
    language: str
    interpreter: str
    pid: int
    file: SavedFile
    memory_bytes: int


@dataclass(frozen=True)
class Snapshot:
    id: str
    owner: str
    image: str
    sandbox_id: str
    created: float
    took_ms: float
    upper: SavedFile
    sessions: tuple[SavedSession, ...]
    env: dict[str, str]
    memory_mb: int = 0                  # the saved sandbox's limits: a restore's defaults
    pids: int = 0

    @property
    def size_bytes(self) -> int:
        return self.upper.bytes + sum(s.file.bytes for s in self.sessions)

    def info(self) -> dict[str, Any]:
        return {"snapshot_id": self.id, "sandbox_id": self.sandbox_id, "image": self.image,
                "created": self.created, "size_bytes": self.size_bytes,
                "sessions": [s.language for s in self.sessions], "took_ms": self.took_ms,
                "owner": self.owner}

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "format": 1}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Snapshot":
        sessions = tuple(SavedSession(s["language"], s["interpreter"], int(s["pid"]),
                                      SavedFile(**s["file"]), int(s["memory_bytes"]))
                         for s in data["sessions"])
        return cls(str(data["id"]), str(data["owner"]), str(data["image"]),
                   str(data["sandbox_id"]), float(data["created"]), float(data["took_ms"]),
                   SavedFile(**data["upper"]), sessions, dict(data.get("env") or {}),
                   int(data.get("memory_mb") or 0), int(data.get("pids") or 0))


def _digest(path: Path) -> tuple[str, int]:
    h = blake3.blake3()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


class Snapshots:
    """The snapshot store of one server."""

    def __init__(self, root: Path, manager: "Manager") -> None:
        self.root = root
        self.manager = manager
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.snaps: dict[str, Snapshot] = {}
        for d in sorted(self.root.iterdir()):
            if d.name.startswith("."):            # a snapshot the last server did not finish
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                snap = Snapshot.from_json(json.loads((d / _MANIFEST).read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue                          # kept for a human to look at, never served
            if snap.id == d.name:
                self.snaps[snap.id] = snap

    # -- lookup -----------------------------------------------------------------------------
    def visible(self, token: "Token") -> list[Snapshot]:
        return [s for s in self.snaps.values() if token.admin or s.owner == token.name]

    def get(self, snap_id: str, token: "Token") -> Snapshot:
        snap = self.snaps.get(snap_id)
        if snap is None or (snap.owner != token.name and not token.admin):
            raise not_found(f"no snapshot {snap_id}", hint="GET /v1/snapshots lists yours")
        return snap

    def remove(self, snap_id: str, token: "Token") -> None:
        snap = self.get(snap_id, token)
        del self.snaps[snap.id]
        shutil.rmtree(self.root / snap.id, ignore_errors=True)

    # -- taking -----------------------------------------------------------------------------
    def _check_quota(self, token: "Token") -> None:
        mine = sum(1 for s in self.snaps.values() if s.owner == token.name)
        if mine >= token.snapshots:
            raise quota(f"token {token.name} keeps {mine} snapshots, its quota is "
                        f"{token.snapshots}", hint="delete snapshots you no longer need")
        if len(self.snaps) >= self.manager.cfg.snapshot_keep:
            raise quota(f"the server keeps its maximum of {self.manager.cfg.snapshot_keep} "
                        "snapshots", hint="delete snapshots you no longer need")

    async def take(self, sb: "Sandbox", token: "Token") -> Snapshot:
        self._check_quota(token)
        t0 = time.perf_counter()
        sessions = [s for s in sb.sessions.values() if s.proc is not None and s.proc.running]
        locked = []
        try:
            for s in sessions:
                if s.lock.locked():
                    raise conflict(f"sandbox {sb.id} is running {s.language} code",
                                   hint="snapshot it between two calls")
                await s.lock.acquire()
                locked.append(s)
            return await self._take(sb, token, sorted(sessions, key=lambda s: s.proc.pid), t0)
        finally:
            for s in locked:
                s.lock.release()

    async def _take(self, sb: "Sandbox", token: "Token", sessions: list, t0: float) -> Snapshot:
        snap_id = "snap-" + secrets.token_hex(8)
        work = self.root / f".{snap_id}"
        work.mkdir(mode=0o700)
        try:
            names = ["upper.tar", *(f"proc-{s.proc.pid}.img" for s in sessions)]
            fds = [os.open(work / n, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                   for n in names]
            try:
                reply, _ = await sb.request({"op": "snapshot",
                                             "pids": [s.proc.pid for s in sessions]}, fds,
                                            timeout=300)
            finally:
                for fd in fds:
                    os.close(fd)
            loop = asyncio.get_running_loop()
            sums = await loop.run_in_executor(None, lambda: [_digest(work / n) for n in names])
            files = [SavedFile(n, d, size) for n, (d, size) in zip(names, sums)]
            by_pid = {int(r["pid"]): r for r in reply.get("sessions", [])}
            saved = tuple(SavedSession(s.language, s.interpreter, s.proc.pid, f,
                                       int(by_pid.get(s.proc.pid, {}).get("memory_bytes", 0)))
                          for s, f in zip(sessions, files[1:]))
            snap = Snapshot(snap_id, token.name, sb.image, sb.id, time.time(),
                            round((time.perf_counter() - t0) * 1000, 2), files[0], saved,
                            dict(sb.env), sb.memory_mb, sb.pids)
            (work / _MANIFEST).write_text(json.dumps(snap.to_json(), indent=1))
            os.replace(work, self.root / snap_id)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        self.snaps[snap_id] = snap
        self.manager.obs.event("snapshot", "taken", snapshot=snap_id, sandbox=sb.id,
                               who=token.name, bytes=snap.size_bytes, took_ms=snap.took_ms)
        return snap

    # -- restoring --------------------------------------------------------------------------
    async def restore_into(self, snap: Snapshot, sb: "Sandbox") -> None:
        from shim.sandbox.sessions import Session
        d = self.root / snap.id
        loop = asyncio.get_running_loop()
        files = [snap.upper, *(s.file for s in snap.sessions)]

        def check() -> str | None:
            for f in files:
                try:
                    got, size = _digest(d / f.name)
                except OSError as e:
                    return f"{f.name}: {e.strerror}"
                if (got, size) != (f.blake3, f.bytes):
                    return (f"{f.name} is {size} bytes with BLAKE3 {got[:16]}…, the manifest "
                            f"says {f.bytes} bytes with {f.blake3[:16]}… (truncated or "
                            "modified)")
            return None
        damage = await loop.run_in_executor(None, check)
        if damage is not None:
            raise conflict(f"snapshot {snap.id} is damaged: {damage}", hint=_DAMAGED_HINT)
        fd = os.open(d / snap.upper.name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            await sb.request({"op": "restore_files"}, [fd], timeout=300)
        finally:
            os.close(fd)
        for s in snap.sessions:                   # by pid, lowest first (reach_pid)
            fd = os.open(d / s.file.name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                proc = await sb.restore_process([s.interpreter], s.pid, fd)
            except ApiError as e:
                raise ApiError(409 if e.status < 500 else e.status,
                               f"snapshot {snap.id}: its {s.language} interpreter cannot be "
                               f"restored: {e.message}", e.hint or _DAMAGED_HINT) from None
            finally:
                os.close(fd)
            session = Session(sb, s.language)
            session.attach(proc, s.interpreter)
            sb.sessions[s.language] = session
        await sb.request({"op": "restore_go",
                          "pids": [s.proc.pid for s in sb.sessions.values() if s.proc]})
