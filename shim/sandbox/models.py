"""The JSON bodies of ``kiln serve``'s API, as pydantic models (they make /openapi.json too).

Unknown fields are refused (``extra="forbid"``), so a misspelt limit is a 422
naming the field rather than a silently bigger sandbox. Every bound the server
enforces beyond these types (the largest memory, the longest timeout) is
checked in shim/sandbox/manager.py against its configuration.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CreateSandbox", "SandboxInfo", "TimeoutBody", "ExecBody", "ExecResult",
           "BackgroundStarted", "ProcessInfo", "SignalBody", "StdinBody", "CodeBody",
           "CodeResult", "FileEntry", "FileList", "SnapshotInfo", "ErrorBody", "KillAllBody"]

_ENV_KEY = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_env(env: dict[str, str] | None) -> dict[str, str] | None:
    import re
    for k, v in (env or {}).items():
        if not re.match(_ENV_KEY, k):
            raise ValueError(f"environment variable name {k!r} is not a valid name")
        if "\0" in v:
            raise ValueError(f"the value of {k} contains a NUL byte")
    return env


class CreateSandbox(_Strict):
    """``POST /v1/sandboxes``."""
    image: str | None = Field(None, description="An image the server serves (--image NAME=...); "
                              "default: the first one. Ignored with from_snapshot.",
                              max_length=200)
    timeout_s: float | None = Field(None, gt=0, description="Seconds until the sandbox is "
                                    "killed and removed (POST .../timeout resets the clock).")
    env: dict[str, str] | None = Field(None, description="Added to every exec's environment.")
    memory_mb: int | None = Field(None, gt=0, description="Memory of the whole sandbox (MiB).")
    pids: int | None = Field(None, gt=0, description="Processes the sandbox may have at once.")
    cpu_s: float | None = Field(None, gt=0, description="CPU seconds the sandbox may use in all.")
    allow_net: bool | list[str] = Field(False, description="Network policy: false (default) "
                                        "for none; a list of DEST[:PORT] (host name, address or "
                                        "CIDR, as kiln run --allow-net) the sandbox may connect "
                                        "to, through a loopback of its own.")
    metadata: dict[str, str] | None = Field(None, description="Free-form labels, returned as given.")
    from_snapshot: str | None = Field(None, description="Restore this snapshot into the new "
                                      "sandbox: it starts as the saved sandbox was.", max_length=100)

    _env = field_validator("env")(classmethod(lambda cls, v: _check_env(v)))


class SandboxInfo(BaseModel):
    id: str
    image: str
    state: str
    created: float
    age_s: float
    timeout_s: float
    expires_in_s: float
    memory_mb: int
    pids: int
    cpu_s: float | None
    allow_net: bool | list[str]
    metadata: dict[str, str]
    env: dict[str, str]
    acquire_ms: float | None = None
    acquired_from: str | None = None
    memory_used_bytes: int | None = None
    cpu_used_s: float | None = None
    from_snapshot: str | None = None
    owner: str | None = None


class TimeoutBody(_Strict):
    timeout_s: float = Field(..., gt=0)


class ExecBody(_Strict):
    """``POST /v1/sandboxes/{id}/exec``: argv, or cmd (run by ``/bin/sh -c``)."""
    argv: list[str] | None = Field(None, min_length=1)
    cmd: str | None = None
    stdin: str | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    timeout_s: float | None = Field(None, gt=0)
    encoding: Literal["utf-8", "base64"] = "utf-8"
    background: bool = False

    _env = field_validator("env")(classmethod(lambda cls, v: _check_env(v)))

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any("\0" in a for a in v):
            raise ValueError("an argument contains a NUL byte")
        return v

    def command(self) -> list[str]:
        if (self.argv is None) == (self.cmd is None):
            raise ValueError("give exactly one of argv and cmd")
        if self.cmd is not None:
            if "\0" in self.cmd:
                raise ValueError("cmd contains a NUL byte")
            return ["/bin/sh", "-c", self.cmd]
        return list(self.argv or ())


class ExecResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: float
    encoding: str = "utf-8"
    signal: int = 0
    truncated: bool = False


class BackgroundStarted(BaseModel):
    pid: int


class ProcessInfo(BaseModel):
    pid: int
    argv: list[str]
    running: bool
    exit_code: int | None = None
    signal: int = 0
    background: bool = False
    started: float | None = None
    stdout: str | None = None
    stderr: str | None = None
    encoding: str = "utf-8"
    rss_kb: int | None = None


class SignalBody(_Strict):
    signal: str | int = Field("TERM", description="A name (TERM, KILL, INT...) or a number.")
    group: bool = Field(True, description="Signal the process's whole group.")


class StdinBody(_Strict):
    data: str = ""
    encoding: Literal["utf-8", "base64"] = "utf-8"
    eof: bool = False


class CodeBody(_Strict):
    """``POST /v1/sandboxes/{id}/code``."""
    language: Literal["python", "bash", "sh"]
    code: str = Field(..., max_length=4 << 20)
    timeout_s: float | None = Field(None, gt=0)


class CodeResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: float
    language: str
    interpreter: str
    restarted: bool = False


class FileEntry(BaseModel):
    name: str
    type: str
    size: int
    mode: int
    mtime: float


class FileList(BaseModel):
    path: str
    entries: list[FileEntry]
    truncated: bool = False


class SnapshotInfo(BaseModel):
    snapshot_id: str
    sandbox_id: str | None = None
    image: str
    created: float
    size_bytes: int
    sessions: list[str]
    took_ms: float


class KillAllBody(_Strict):
    refuse_new: bool = Field(False, description="Also refuse new sandboxes until the server "
                             "restarts or POST /v1/admin/accept.")


class ErrorBody(BaseModel):
    error: str
    hint: str | None = None
    detail: Any = None
