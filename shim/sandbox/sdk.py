"""Python SDK for ``kiln serve``: sandboxes as objects, mirroring the HTTP API.

::

    from shim.sandbox.sdk import Sandbox

    with Sandbox.create(image="busybox", timeout=60) as sb:      # deleted on exit
        r = sb.exec(["sh", "-c", "echo hi; echo oops >&2; exit 3"])
        assert (r.exit_code, r.stdout) == (3, "hi\\n")
        sb.exec("ls /", on_stdout=print)                          # streamed as it comes
        sb.run_code("x=41", language="bash")
        print(sb.run_code("echo $((x + 1))", language="bash").stdout)   # 42
        sb.files.write("/tmp/a.txt", b"data")
        print(sb.files.read("/tmp/a.txt"))                        # b'data'

The server and token come from arguments or ``$KILN_URL`` (default
``http://127.0.0.1:8700``) and ``$KILN_TOKEN``. Errors are typed:
:class:`AuthError` (401/403), :class:`NotFound` (404), :class:`Conflict` (409),
:class:`QuotaExceeded` (429), :class:`BadRequest` (other 4xx), :class:`ServerError`
(5xx), all :class:`SandboxError`, with the server's message and hint.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import httpx

__all__ = ["Sandbox", "Client", "ExecResult", "CodeResult", "Process", "Files", "Snapshot",
           "SandboxError", "AuthError", "NotFound", "Conflict", "QuotaExceeded", "BadRequest",
           "ServerError", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8700"


class SandboxError(Exception):
    """An error answered by kiln serve (or the server could not be reached: status 0)."""

    def __init__(self, status: int, message: str, hint: str | None = None,
                 detail: Any = None) -> None:
        super().__init__(message if not hint else f"{message} (hint: {hint})")
        self.status, self.message, self.hint, self.detail = status, message, hint, detail


class AuthError(SandboxError):
    """401 or 403: no token, a wrong one, or one without the right."""


class NotFound(SandboxError):
    """404: no such sandbox, process, file or snapshot (or it has ended)."""


class Conflict(SandboxError):
    """409: the sandbox is busy (code running), or a process's stdin is closed."""


class QuotaExceeded(SandboxError):
    """429: the token's quota is used up."""


class BadRequest(SandboxError):
    """Another 4xx: the request was malformed or out of bounds."""


class ServerError(SandboxError):
    """5xx, or the server cannot be reached."""


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        message, hint, detail = body.get("error", resp.text), body.get("hint"), body.get("detail")
    except (ValueError, AttributeError):
        message, hint, detail = resp.text or resp.reason_phrase, None, None
    kind = (AuthError if resp.status_code in (401, 403) else
            NotFound if resp.status_code == 404 else
            Conflict if resp.status_code == 409 else
            QuotaExceeded if resp.status_code == 429 else
            BadRequest if resp.status_code < 500 else ServerError)
    raise kind(resp.status_code, message, hint, detail)


class Client:
    """One connection pool to a server, with its token."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 600.0) -> None:
        self.url = (url or os.environ.get("KILN_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("KILN_TOKEN")
        if not token:
            raise AuthError(0, "no token given", hint="pass token=... or set KILN_TOKEN")
        self.http = httpx.Client(base_url=self.url, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ServerError(0, f"cannot reach kiln serve at {self.url}: {e}",
                              hint="is the server running? (kiln serve; or set KILN_URL)") from None
        _raise_for(resp)
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, **kw).json()

    def snapshots(self) -> list[Snapshot]:
        """The token's snapshots."""
        return [Snapshot(r["snapshot_id"], r["image"], r["size_bytes"], tuple(r["sessions"]),
                         r["took_ms"]) for r in self.json("GET", "/v1/snapshots")["snapshots"]]

    def delete_snapshot(self, snapshot: "Snapshot | str") -> None:
        sid = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        self.json("DELETE", f"/v1/snapshots/{sid}")

    def stream(self, method: str, path: str, **kw: Any) -> Iterator[tuple[str, dict]]:
        """Server-sent events of a request: (event, data) pairs."""
        try:
            with self.http.stream(method, path, **kw) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for(resp)
                event, data = "message", []
                for line in resp.iter_lines():
                    if not line:
                        if data:
                            yield event, json.loads("\n".join(data))
                        event, data = "message", []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
        except httpx.TransportError as e:
            raise ServerError(0, f"cannot reach kiln serve at {self.url}: {e}") from None

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: float
    signal: int = 0
    truncated: bool = False
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""


@dataclass(frozen=True)
class CodeResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: float
    language: str
    interpreter: str
    restarted: bool = False


@dataclass(frozen=True)
class Snapshot:
    id: str
    image: str
    size_bytes: int
    sessions: tuple[str, ...]
    took_ms: float


@dataclass
class Process:
    """A background process (``exec(..., background=True)``)."""
    sandbox: "Sandbox"
    pid: int

    def info(self) -> dict:
        return self.sandbox.client.json("GET", f"{self.sandbox.path}/processes/{self.pid}")

    def signal(self, sig: str | int = "TERM", group: bool = True) -> None:
        self.sandbox.client.json("POST", f"{self.sandbox.path}/processes/{self.pid}/signal",
                                 json={"signal": sig, "group": group})

    def write(self, data: str | bytes, eof: bool = False) -> None:
        body = {"data": base64.b64encode(data).decode(), "encoding": "base64", "eof": eof} \
            if isinstance(data, bytes) else {"data": data, "eof": eof}
        self.sandbox.client.json("POST", f"{self.sandbox.path}/processes/{self.pid}/stdin",
                                 json=body)

    def kill(self) -> None:
        self.sandbox.client.json("DELETE", f"{self.sandbox.path}/processes/{self.pid}")


@dataclass
class Files:
    """``sb.files``: the sandbox's file system (paths stay inside it)."""
    sandbox: "Sandbox"

    def write(self, path: str, data: bytes | str, mode: int = 0o644) -> int:
        raw = data.encode() if isinstance(data, str) else data
        r = self.sandbox.client.json("PUT", f"{self.sandbox.path}/files",
                                     params={"path": path, "mode": f"{mode:o}"}, content=raw)
        return int(r["size"])

    def read(self, path: str) -> bytes:
        return self.sandbox.client.call("GET", f"{self.sandbox.path}/files",
                                        params={"path": path}).content

    def list(self, path: str = "/") -> list[dict]:
        return self.sandbox.client.json("GET", f"{self.sandbox.path}/files",
                                        params={"path": path, "list": 1})["entries"]

    def remove(self, path: str, recursive: bool = False) -> None:
        self.sandbox.client.json("DELETE", f"{self.sandbox.path}/files",
                                 params={"path": path, "recursive": int(recursive)})


@dataclass
class Sandbox:
    client: Client
    id: str
    info: dict = field(default_factory=dict)
    owns_client: bool = False

    # -- life cycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, image: str | None = None, timeout: float | None = None, *,
               snapshot: "Snapshot | str | None" = None, env: dict[str, str] | None = None,
               memory_mb: int | None = None, pids: int | None = None,
               cpu_s: float | None = None, metadata: dict[str, str] | None = None,
               url: str | None = None, token: str | None = None,
               client: Client | None = None) -> "Sandbox":
        own = client is None
        client = client or Client(url, token)
        body: dict[str, Any] = {"image": image, "timeout_s": timeout, "env": env,
                                "memory_mb": memory_mb, "pids": pids, "cpu_s": cpu_s,
                                "metadata": metadata}
        if snapshot is not None:
            body["from_snapshot"] = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        try:
            info = client.json("POST", "/v1/sandboxes",
                               json={k: v for k, v in body.items() if v is not None})
        except BaseException:
            if own:
                client.close()
            raise
        return cls(client, info["id"], info, own)

    @classmethod
    def connect(cls, sandbox_id: str, url: str | None = None, token: str | None = None,
                client: Client | None = None) -> "Sandbox":
        own = client is None
        client = client or Client(url, token)
        return cls(client, sandbox_id, client.json("GET", f"/v1/sandboxes/{sandbox_id}"), own)

    @classmethod
    def list(cls, url: str | None = None, token: str | None = None,
             client: Client | None = None) -> list[dict]:
        c = client or Client(url, token)
        try:
            return c.json("GET", "/v1/sandboxes")["sandboxes"]
        finally:
            if client is None:
                c.close()

    @property
    def path(self) -> str:
        return f"/v1/sandboxes/{self.id}"

    @property
    def files(self) -> Files:
        return Files(self)

    def refresh(self) -> dict:
        self.info = self.client.json("GET", self.path)
        return self.info

    def set_timeout(self, seconds: float) -> None:
        self.info = self.client.json("POST", f"{self.path}/timeout", json={"timeout_s": seconds})

    def kill(self) -> None:
        """Kill and remove the sandbox (an ended one is not an error)."""
        try:
            self.client.json("DELETE", self.path)
        except NotFound:
            pass

    def close(self) -> None:
        self.kill()
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running ----------------------------------------------------------------------------
    def exec(self, command: list[str] | str, *, stdin: str | None = None,
             env: dict[str, str] | None = None, cwd: str | None = None,
             timeout: float | None = None, binary: bool = False,
             on_stdout: Callable[[str], None] | None = None,
             on_stderr: Callable[[str], None] | None = None) -> ExecResult:
        """Run ``command`` (argv list, or a shell line for /bin/sh -c). With ``on_stdout`` /
        ``on_stderr`` the output streams to the callbacks as it comes (server-sent events)."""
        body = self._exec_body(command, stdin, env, cwd, timeout, binary)
        if on_stdout is None and on_stderr is None:
            r = self.client.json("POST", f"{self.path}/exec", json=body)
            return self._result(r, binary)
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        end: dict = {}
        for event, data in self.client.stream("POST", f"{self.path}/exec", json=body,
                                              headers={"Accept": "text/event-stream"}):
            if event in out:
                raw = base64.b64decode(data["data"]) if binary else data["data"].encode()
                out[event].append(raw)
                cb = on_stdout if event == "stdout" else on_stderr
                if cb is not None:
                    cb(data["data"])
            elif event == "exit":
                end = data
        so, se = b"".join(out["stdout"]), b"".join(out["stderr"])
        return ExecResult(end.get("exit_code", -1), so.decode("utf-8", "replace"),
                          se.decode("utf-8", "replace"), end.get("timed_out", False),
                          end.get("duration_ms", 0.0), end.get("signal", 0),
                          end.get("truncated", False), so, se)

    def _exec_body(self, command: list[str] | str, stdin: str | None, env: dict | None,
                   cwd: str | None, timeout: float | None, binary: bool) -> dict:
        body: dict[str, Any] = {"cmd": command} if isinstance(command, str) else \
            {"argv": list(command)}
        for k, v in (("stdin", stdin), ("env", env), ("cwd", cwd), ("timeout_s", timeout)):
            if v is not None:
                body[k] = v
        if binary:
            body["encoding"] = "base64"
        return body

    @staticmethod
    def _result(r: dict, binary: bool) -> ExecResult:
        if binary:
            so, se = base64.b64decode(r["stdout"]), base64.b64decode(r["stderr"])
        else:
            so, se = r["stdout"].encode(), r["stderr"].encode()
        return ExecResult(r["exit_code"], so.decode("utf-8", "replace"),
                          se.decode("utf-8", "replace"), r["timed_out"], r["duration_ms"],
                          r.get("signal", 0), r.get("truncated", False), so, se)

    def spawn(self, command: list[str] | str, *, env: dict[str, str] | None = None,
              cwd: str | None = None) -> Process:
        """Start ``command`` in the background; feed, signal and read it through the Process."""
        body = self._exec_body(command, None, env, cwd, None, False)
        body["background"] = True
        r = self.client.json("POST", f"{self.path}/exec", json=body)
        return Process(self, int(r["pid"]))

    def run_code(self, code: str, language: str = "python",
                 timeout: float | None = None) -> CodeResult:
        """Run ``code`` in the sandbox's interpreter for ``language`` (``python``, ``bash``),
        which keeps its state (variables, functions, cwd) between calls."""
        body: dict[str, Any] = {"language": language, "code": code}
        if timeout is not None:
            body["timeout_s"] = timeout
        r = self.client.json("POST", f"{self.path}/code", json=body)
        return CodeResult(**{k: r[k] for k in CodeResult.__dataclass_fields__ if k in r})

    def processes(self) -> list[dict]:
        return self.client.json("GET", f"{self.path}/processes")["processes"]

    # -- snapshots --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Save the sandbox: its files and its run_code interpreters' state, restorable any
        number of times with ``Sandbox.create(snapshot=...)``. :class:`Conflict` (409) when
        something else runs in it, with what (docs/sandboxes.md, 'Snapshots')."""
        r = self.client.json("POST", f"{self.path}/snapshot")
        return Snapshot(r["snapshot_id"], r["image"], r["size_bytes"], tuple(r["sessions"]),
                        r["took_ms"])
