"""The sandboxes of one ``kiln serve``: images and zygotes, pools, life cycle, limits, quotas.

- **Images.** Each ``--image NAME=PATH`` gets a zygote (shim/sandbox/zygotes.py)
  when the server starts; ``--pool NAME=N`` keeps N sandboxes of it ready.
- **Create.** The trust policy is checked (its ``kill_switch`` refuses, as for
  ``kiln run``), then the token's quotas and the server's bounds; a sandbox
  comes from the pool when one is ready, else from a fork of the zygote.
- **End.** ``DELETE``, the sandbox's timeout, its CPU budget, ``kill-all``, or
  its first process dying (out of memory): the zygote kills it and removes its
  cgroup and state; the server forgets it and remembers why (a later call on
  its id is a 404 that says so).
- **Restart.** Each live sandbox has a record under ``STATE/sandboxes``. A
  server that starts and finds records of a previous one (which crashed or was
  killed) kills what is left of those sandboxes (by pid and start time, so a
  reused pid is never hit), removes their cgroups, writes an audit record per
  sandbox and lists them in ``/healthz`` (``lost``): none is lost silently.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal as hsignal
import sys
import time
from pathlib import Path
from typing import Any

from formats.errors import KilnError
from shim.sandbox.config import MiB, ServerConfig
from shim.sandbox.errors import ApiError, bad_request, not_found, quota, unavailable
from shim.sandbox.images import ServedImage
from shim.sandbox.observe import Observer
from shim.sandbox.sandboxes import Sandbox
from shim.sandbox.tokens import Token
from shim.sandbox.zygotes import Pool, SandboxError, Spawned, ZygoteHandle

__all__ = ["Manager"]

_ENDED_KEPT = 4096
"""Ended sandboxes whose end reason is remembered (for the 404 of a later call)."""
_TICK = 0.2


def new_sandbox_id() -> str:
    return "sb-" + secrets.token_hex(8)


class Manager:
    def __init__(self, cfg: ServerConfig, tokens: tuple[Token, ...], images: list[ServedImage],
                 observer: Observer) -> None:
        self.cfg = cfg
        self.tokens = tokens
        self.images = {i.name: i for i in images}
        self.default_image = images[0].name if images else None
        self.obs = observer
        self.zygotes: dict[str, ZygoteHandle] = {}
        self.pools: dict[str, Pool] = {}
        self.sandboxes: dict[str, Sandbox] = {}
        self.ended: dict[str, str] = {}
        self.lost: list[dict] = []
        self.refuse_new = False
        self._tick_task: asyncio.Task | None = None
        self._starting: dict[str, int] = {}       # token name -> creates in flight
        self.records = cfg.state / "sandboxes"
        self.snapshots = None                      # shim.sandbox.snapshots.Snapshots

    # -- start and stop ---------------------------------------------------------------------
    async def start(self) -> None:
        from shim.sandbox.snapshots import Snapshots
        self.records.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._reap_previous()
        self.snapshots = Snapshots(self.cfg.state / "snapshots", self)
        for name, image in self.images.items():
            digest = self.trust_check(image)
            z = ZygoteHandle(image, digest, str(self.cfg.state), str(self.cfg.audit_path),
                             self._zygote_ended)
            await z.start()
            self.zygotes[name] = z
            self.obs.event("zygote", "started", image=name, load_ms=round(z.load_ms, 2),
                           start_ms=round(z.started_ms, 2), pid=z.proc.pid if z.proc else 0)
        for name, size in self.cfg.pools:
            pool = Pool(self.zygotes[name], size, self.cfg.default_memory_mb * MiB,
                        self.cfg.default_pids, self.cfg.disk_mb * MiB, new_sandbox_id)
            pool.start()
            self.pools[name] = pool
        self._tick_task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        for sb in list(self.sandboxes.values()):
            await self.delete(sb.id, "the server stopped", audit=True)
        for pool in self.pools.values():
            await pool.close()
        for z in self.zygotes.values():
            await z.stop()

    def trust_check(self, image: ServedImage) -> str:
        """The trust policy's verdict on an image (KilnError when refused): its digest."""
        from vkernel.audit import AuditLog
        from vkernel.trust import check_megabinary, load_policy
        policy = load_policy(self.cfg.policy)
        if not policy.active:
            return ""
        audit = AuditLog(policy.audit_log or self.cfg.audit_path)
        try:
            return check_megabinary(policy, image.megabinary, audit,
                                    subject=f"sandbox of {image.name}").digest
        finally:
            audit.close()

    # -- records (server restarts) ----------------------------------------------------------
    def _record(self, sb: Sandbox) -> None:
        data = {"id": sb.id, "image": sb.image, "owner": sb.owner, "created": sb.created,
                "pid": sb.sp.pid, "start": sb.sp.start, "cgroup": sb.sp.cgroup,
                "cpu": sb.sp.cpu, "run": sb.sp.run, "server": os.getpid()}
        tmp = self.records / f".{sb.id}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.records / f"{sb.id}.json")

    def _unrecord(self, sid: str) -> None:
        try:
            os.unlink(self.records / f"{sid}.json")
        except FileNotFoundError:
            pass

    def _reap_previous(self) -> None:
        from vkernel.containers import _start_time
        for path in sorted(self.records.glob("*.json")):
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            pid, start = int(rec.get("pid", 0)), int(rec.get("start", 0))
            alive = pid > 0 and _start_time(pid) == start
            if alive:
                try:
                    os.kill(pid, hsignal.SIGKILL)
                except ProcessLookupError:
                    pass
                for _ in range(200):
                    if _start_time(pid) != start:
                        break
                    time.sleep(0.01)
            for d in [*rec.get("cgroup", []), rec.get("cpu") or ""]:
                if not d:
                    continue
                try:
                    for p in Path(d, "cgroup.procs").read_text().split():
                        os.kill(int(p), hsignal.SIGKILL)
                except (OSError, ValueError):
                    pass
                for _ in range(100):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.01)
            lost = {"id": rec.get("id"), "image": rec.get("image"), "owner": rec.get("owner"),
                    "created": rec.get("created"), "was_running": alive,
                    "reason": "the server restarted: the sandbox was killed and removed"}
            self.lost.append(lost)
            self.ended[str(rec.get("id"))] = lost["reason"]
            self.obs.event("sandbox", "lost", sandbox=rec.get("id"), who=rec.get("owner"),
                           image=rec.get("image"), was_running=alive)
            print(f"kiln serve: sandbox {rec.get('id')} of the previous server was "
                  f"{'killed and ' if alive else ''}removed", file=sys.stderr, flush=True)
            path.unlink(missing_ok=True)

    # -- create -----------------------------------------------------------------------------
    def _limits(self, token: Token, body: Any, snap: Any = None) -> tuple[int, int, float]:
        """The limits a create asks for; a restore's default to its snapshot's sandbox's."""
        cfg = self.cfg
        memory_mb = body.memory_mb or (snap.memory_mb if snap else 0) or cfg.default_memory_mb
        pids = body.pids or (snap.pids if snap else 0) or cfg.default_pids
        timeout = body.timeout_s or cfg.default_timeout_s
        if memory_mb > cfg.max_memory_mb:
            raise bad_request(f"memory_mb {memory_mb} is more than this server allows "
                              f"({cfg.max_memory_mb})", hint=f"ask for at most {cfg.max_memory_mb}")
        if memory_mb < 64:
            raise bad_request(f"memory_mb {memory_mb} is too small to start a sandbox",
                              hint="ask for at least 64")
        if pids > cfg.max_pids:
            raise bad_request(f"pids {pids} is more than this server allows ({cfg.max_pids})")
        if timeout > cfg.max_timeout_s:
            raise bad_request(f"timeout_s {timeout:g} is more than this server allows "
                              f"({cfg.max_timeout_s:g})")
        return memory_mb, pids, timeout

    def _check_quota(self, token: Token, memory_mb: int) -> None:
        mine = [s for s in self.sandboxes.values() if s.owner == token.name]
        starting = self._starting.get(token.name, 0)
        if len(mine) + starting >= token.sandboxes:
            raise quota(f"token {token.name} has {len(mine)} sandboxes, its quota is "
                        f"{token.sandboxes}", hint="delete sandboxes you no longer need")
        if token.memory_mb and sum(s.memory_mb for s in mine) + memory_mb > token.memory_mb:
            raise quota(f"token {token.name} would use more than its {token.memory_mb} MiB of "
                        "sandbox memory", hint="delete sandboxes or ask for less memory_mb")
        if len(self.sandboxes) + sum(self._starting.values()) >= self.cfg.max_sandboxes:
            raise unavailable(f"the server holds its maximum of {self.cfg.max_sandboxes} sandboxes",
                              hint="try again later")

    async def create(self, token: Token, body: Any) -> Sandbox:
        if self.refuse_new:
            raise unavailable("the server refuses new sandboxes (kill switch)",
                              hint="an administrator must POST /v1/admin/accept")
        allow = self._allow_net(body.allow_net)
        snap = None
        if body.from_snapshot:
            snap = self.snapshots.get(body.from_snapshot, token)
            image_name = snap.image
        else:
            image_name = body.image or self.default_image
        image = self.images.get(image_name or "")
        if image is None:
            raise bad_request(f"this server serves no image {image_name!r}",
                              hint=f"images: {', '.join(sorted(self.images)) or 'none'}")
        try:
            self.trust_check(image)
        except KilnError as e:
            raise ApiError(403, e.message, e.hint) from None
        memory_mb, pids, timeout = self._limits(token, body, snap)
        self._check_quota(token, memory_mb)
        self._starting[token.name] = self._starting.get(token.name, 0) + 1
        try:
            t0 = time.perf_counter()
            sp, source = await self._acquire(image_name, memory_mb, pids, allow)
            env = {**(snap.env if snap is not None else {}), **(body.env or {})}
            sb = Sandbox(sp, image_name, token.name, timeout, memory_mb, pids, body.cpu_s,
                         body.allow_net, dict(body.metadata or {}), env,
                         self.cfg.output_cap_mb * MiB)
            self.sandboxes[sb.id] = sb
            self._record(sb)
            if snap is not None:
                try:
                    await self.snapshots.restore_into(snap, sb)
                except BaseException:
                    await self.delete(sb.id, "its snapshot could not be restored")
                    raise
                sb.from_snapshot = snap.id
                source = "snapshot+" + source
            sb.acquire_ms = (time.perf_counter() - t0) * 1000
            sb.acquired_from = source
            self.obs.acquired(image_name, source, sb.acquire_ms)
            return sb
        finally:
            self._starting[token.name] -= 1

    @staticmethod
    def _allow_net(value: Any) -> tuple[str, ...]:
        """``allow_net`` as the destinations it lets the sandbox reach (``kiln run
        --allow-net``'s DEST[:PORT], checked now); () for a sandbox with no network."""
        from vkernel.netpolicy import parse_allow
        if value in (False, None, []):
            return ()
        if value is True:
            raise bad_request("allow_net: true does not say where to: give a list of "
                              "destinations", hint='"allow_net": ["pypi.org:443", '
                              '"10.0.0.0/8"] (DEST[:PORT], as kiln run --allow-net)')
        for text in value:
            try:
                parse_allow(text)
            except KilnError as e:
                raise bad_request(f"allow_net: {e.message}", hint=e.hint) from None
        return tuple(value)

    async def _acquire(self, image: str, memory_mb: int, pids: int,
                       allow: tuple[str, ...] = ()) -> tuple[Spawned, str]:
        pool = self.pools.get(image)
        sp = pool.take() if pool is not None and not allow else None   # pools have no network
        if sp is not None:
            if sp.memory != memory_mb * MiB or sp.pids != pids:
                await self._set_limits(sp, memory_mb, pids)
            return sp, "pool"
        try:
            sp = await self.zygotes[image].spawn(new_sandbox_id(), memory_mb * MiB, pids,
                                                 self.cfg.disk_mb * MiB, allow)
        except SandboxError as e:
            raise unavailable(e.message, e.hint) from None
        return sp, "zygote"

    async def _set_limits(self, sp: Spawned, memory_mb: int, pids: int) -> None:
        from vkernel.supervisor import TASKS_PER_PROCESS
        for d in sp.cgroup:
            for name, value in (("memory.limit_in_bytes", memory_mb * MiB),
                                ("memory.memsw.limit_in_bytes", memory_mb * MiB),
                                ("memory.max", memory_mb * MiB),
                                ("pids.max", TASKS_PER_PROCESS * pids + 16)):
                p = os.path.join(d, name)
                if os.path.exists(p):
                    try:
                        with open(p, "w", encoding="ascii") as f:
                            f.write(str(value))
                    except OSError:
                        pass
        reply, _ = await sp.channel.request({"op": "limits", "memory": memory_mb * MiB,
                                             "pids": pids}, timeout=10)
        sp.memory, sp.pids = memory_mb * MiB, pids

    # -- lookup, delete ---------------------------------------------------------------------
    def get(self, sid: str, token: Token) -> Sandbox:
        sb = self.sandboxes.get(sid)
        if sb is None or (sb.owner != token.name and not token.admin):
            why = self.ended.get(sid)
            if why is not None and (sb is None):
                raise not_found(f"sandbox {sid} has ended: {why}", hint="create a new sandbox")
            raise not_found(f"no sandbox {sid}", hint="GET /v1/sandboxes lists yours")
        if sb.state != "running":
            raise not_found(f"sandbox {sid} has ended: {sb.end_reason}",
                            hint="create a new sandbox")
        return sb

    def visible(self, token: Token) -> list[Sandbox]:
        return [s for s in self.sandboxes.values() if token.admin or s.owner == token.name]

    async def delete(self, sid: str, reason: str, audit: bool = False) -> None:
        sb = self.sandboxes.pop(sid, None)
        if sb is None:
            return
        self._remember_end(sid, reason)
        if sb.end_reason == "":
            sb.end_reason = reason
        for s in sb.sessions.values():
            s.close()
        if not sb.sp.channel.closed:
            sb.sp.channel.close()
        sb.mark_ended(reason)
        z = self.zygotes.get(sb.image)
        if z is not None:
            await z.kill(sb.sp.pid)
        self._unrecord(sid)
        self.obs.ended(sb.image, reason)
        if audit:
            self.obs.event("sandbox", "ended", sandbox=sid, who=sb.owner, reason=reason)

    def _remember_end(self, sid: str, reason: str) -> None:
        self.ended[sid] = reason
        while len(self.ended) > _ENDED_KEPT:
            del self.ended[next(iter(self.ended))]

    def _zygote_ended(self, sid: str, pid: int, status: int) -> None:
        sb = self.sandboxes.get(sid)
        if sb is None or sb.sp.pid != pid:
            return
        why = "its first process ended"
        if status == -hsignal.SIGKILL:
            why = "it was killed (out of memory, or by the host)"
        loop = asyncio.get_running_loop()
        loop.create_task(self.delete(sid, why, audit=True))

    async def kill_all(self, reason: str) -> int:
        ids = list(self.sandboxes)
        for sid in ids:
            await self.delete(sid, reason, audit=True)
        return len(ids)

    # -- clocks -----------------------------------------------------------------------------
    async def _tick(self) -> None:
        from shim.sandbox.cpuacct import cpu_seconds
        n = 0
        while True:
            await asyncio.sleep(_TICK)
            n += 1
            now = time.monotonic()
            for sb in list(self.sandboxes.values()):
                if now >= sb.deadline:
                    await self.delete(sb.id, f"its timeout of {sb.timeout_s:g} s passed", audit=True)
                    continue
                if sb.cpu_s and n % 5 == 0:
                    path = sb.cpu_path()
                    used = cpu_seconds(path) if path else None
                    sb.cpu_used = used
                    if used is not None and used > sb.cpu_s:
                        await self.delete(sb.id, f"it used {used:.2f} s of CPU, more than its "
                                          f"cpu_s of {sb.cpu_s:g}", audit=True)

    def reset_timeout(self, sb: Sandbox, timeout_s: float) -> None:
        if timeout_s > self.cfg.max_timeout_s:
            raise bad_request(f"timeout_s {timeout_s:g} is more than this server allows "
                              f"({self.cfg.max_timeout_s:g})")
        sb.timeout_s = timeout_s
        sb.deadline = time.monotonic() + timeout_s

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if all(not z.dead for z in self.zygotes.values()) else "degraded",
            "sandboxes": len(self.sandboxes),
            "refusing_new": self.refuse_new,
            "images": {name: {"zygote": (not z.dead), "load_ms": round(z.load_ms, 2),
                              "pool": ({"size": self.pools[name].size,
                                        "ready": len(self.pools[name].ready)}
                                       if name in self.pools else None)}
                       for name, z in self.zygotes.items()},
            "lost": self.lost,
        }
