"""Engine fingerprints: which Wasmtime build and configuration an AOT artifact is for."""
from __future__ import annotations

import functools

import enum
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from formats.container import MAX_NAME_LENGTH
from formats.errors import FormatError


class InvalidFingerprint(FormatError):
    """An engine fingerprint string is not in canonical form."""


_RE_ENGINE = re.compile(r"[a-z][a-z0-9_]*")
_RE_VERSION = re.compile(r"[0-9A-Za-z._+-]+")
_RE_TARGET = re.compile(r"[0-9A-Za-z._-]+")
_RE_KEY = re.compile(r"[a-z][a-z0-9_]*")
_RE_VALUE = re.compile(r"[0-9A-Za-z._+-]+")


def _setting_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return str(value)
    raise InvalidFingerprint(f"engine setting value {value!r} is not a bool, int or string")


@dataclass(frozen=True)
class EngineFingerprint:
    """Which engine build and configuration an AOT artifact is for.

    Canonical string: ``engine/version/target/key=value,key=value`` with the
    settings sorted by key, e.g.
    ``wasmtime/50.0.0/x86_64-unknown-linux-gnu/wasm_simd=true,wasm_tail_call=true``.
    An artifact is used only when the runtime's fingerprint string is equal.
    """
    engine: str
    version: str
    target: str
    settings: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        settings = tuple(sorted((str(k), _setting_text(v)) for k, v in self.settings))
        object.__setattr__(self, "settings", settings)
        for what, text, rx in (("engine", self.engine, _RE_ENGINE),
                               ("version", self.version, _RE_VERSION),
                               ("target", self.target, _RE_TARGET)):
            if not isinstance(text, str) or not rx.fullmatch(text):
                raise InvalidFingerprint(
                    f"engine fingerprint {what} {text!r} must match {rx.pattern}")
        for n, (k, v) in enumerate(settings):
            if not _RE_KEY.fullmatch(k) or not _RE_VALUE.fullmatch(v):
                raise InvalidFingerprint(f"engine setting {k}={v!r} must match "
                                         f"{_RE_KEY.pattern}={_RE_VALUE.pattern}")
            if n and settings[n - 1][0] == k:
                raise InvalidFingerprint(f"engine setting {k!r} given twice")
        if len(self.canonical.encode()) > MAX_NAME_LENGTH:
            raise InvalidFingerprint(f"engine fingerprint longer than {MAX_NAME_LENGTH} bytes")

    @classmethod
    def create(cls, version: str, target: str,
               settings: Mapping[str, object] | Iterable[tuple[str, object]] = (),
               *, engine: str = "wasmtime") -> "EngineFingerprint":
        """Build from an engine version, a target triple and (setting, value) pairs.

        ``settings`` is typically ``formats.abi.ENGINE_SETTINGS``: the config
        options that decide whether compiled code is loadable.
        """
        items = settings.items() if isinstance(settings, Mapping) else settings
        return cls(engine, version, target, tuple((k, _setting_text(v)) for k, v in items))

    @functools.cached_property
    def canonical(self) -> str:
        body = ",".join(f"{k}={v}" for k, v in self.settings)
        return f"{self.engine}/{self.version}/{self.target}/{body}"

    def __str__(self) -> str:
        return self.canonical

    @classmethod
    def parse(cls, text: str) -> "EngineFingerprint":
        """The fingerprint whose canonical string is exactly ``text``. Each distinct text is
        checked once per process: a megabinary names the same fingerprint in every one of its
        AOT sections (861 in the Debian image: 50 ms of every ``kiln run``, parsed anew)."""
        if cls is EngineFingerprint:
            return _parse_once(text)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> "EngineFingerprint":
        parts = text.split("/")
        if len(parts) != 4:
            raise InvalidFingerprint(f"engine fingerprint {text!r} must have the form "
                                     "engine/version/target/settings")
        pairs = []
        if parts[3]:
            for item in parts[3].split(","):
                key, eq, value = item.partition("=")
                if not eq:
                    raise InvalidFingerprint(f"engine setting {item!r} in {text!r} lacks '='")
                pairs.append((key, value))
        fp = cls(parts[0], parts[1], parts[2], tuple(pairs))
        if fp.canonical != text:
            raise InvalidFingerprint(f"engine fingerprint {text!r} is not canonical "
                                     f"(expected {fp.canonical!r})")
        return fp


@functools.lru_cache(maxsize=16)
def _parse_once(text: str) -> EngineFingerprint:
    return EngineFingerprint._parse(text)      # errors are raised each time, never cached


def _fingerprint_text(fp: EngineFingerprint | str) -> str:
    if isinstance(fp, EngineFingerprint):
        return fp.canonical
    if isinstance(fp, str):
        return EngineFingerprint.parse(fp).canonical
    raise InvalidFingerprint(
        f"expected an EngineFingerprint or its string, got {type(fp).__name__}")



def aot_name(module: str, fingerprint: "EngineFingerprint | str") -> str:
    """The name of an AOT section: the module's name, a colon, the engine fingerprint."""
    return f"{module}:{_fingerprint_text(fingerprint)}"
