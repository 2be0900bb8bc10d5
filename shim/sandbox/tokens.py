"""Bearer tokens of ``kiln serve``: the token file, constant-time lookup and per-token quotas.

The file (``--token-file``) has one token per line; ``#`` starts a comment::

    # name    token                                   quotas (all optional)
    agent-1   3q2+7w...at-least-16-characters...       sandboxes=50 memory_mb=16384 snapshots=20
    ops       another-long-random-token                admin

``name`` is who the audit log and the sandboxes' ``owner`` name. ``sandboxes``
bounds the sandboxes a token has alive at once, ``memory_mb`` the sum of their
memory, ``snapshots`` the snapshots it keeps; ``admin`` may call
``/v1/admin/...`` and sees every sandbox. The file must not be readable by
other users (the server refuses it otherwise), and ``kiln serve`` reads it
once at start.

Lookup compares the presented token with every configured one using
``hmac.compare_digest`` (constant time per comparison, and all are compared), so
neither a token's value nor which prefix matched leaks through timing.
"""
from __future__ import annotations

import hmac
import os
import stat as st
from dataclasses import dataclass
from pathlib import Path

from formats.errors import KilnError

__all__ = ["Token", "TokenError", "load_tokens", "find_token", "MIN_TOKEN_LENGTH"]

MIN_TOKEN_LENGTH = 16
_QUOTAS = ("sandboxes", "memory_mb", "snapshots")


class TokenError(KilnError):
    """The token file cannot be used."""


@dataclass(frozen=True)
class Token:
    name: str
    secret: str
    sandboxes: int = 100
    memory_mb: int = 0            # 0: only the server's own limits
    snapshots: int = 100
    admin: bool = False


def load_tokens(path: Path) -> tuple[Token, ...]:
    """Parse the token file; TokenError naming the file and line for anything wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise TokenError(f"cannot read the token file {path}: {e.strerror}",
                         hint="give --token-file FILE with one 'NAME TOKEN' per line") from None
    try:
        info = os.fstat(fd)
        if info.st_mode & 0o077:
            raise TokenError(f"the token file {path} is readable by other users (mode "
                             f"{st.S_IMODE(info.st_mode):04o})", hint=f"chmod 600 {path}")
        with os.fdopen(fd, encoding="utf-8", closefd=False) as f:
            text = f.read()
    except UnicodeDecodeError:
        raise TokenError(f"the token file {path} is not UTF-8 text") from None
    finally:
        os.close(fd)
    tokens: list[Token] = []
    names: set[str] = set()
    secrets: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path}:{n}"
        if len(words) < 2:
            raise TokenError(f"{where}: a line needs a name and a token",
                             hint="write 'NAME TOKEN [sandboxes=N] [memory_mb=M] [admin]'")
        name, secret, *opts = words
        if len(secret) < MIN_TOKEN_LENGTH:
            raise TokenError(f"{where}: the token of {name} is shorter than "
                             f"{MIN_TOKEN_LENGTH} characters",
                             hint="make one with: python3 -c 'import secrets; "
                                  "print(secrets.token_urlsafe(32))'")
        if name in names:
            raise TokenError(f"{where}: the name {name} is given twice")
        if secret in secrets:
            raise TokenError(f"{where}: the token of {name} is also another name's")
        fields: dict[str, int | bool] = {}
        for opt in opts:
            key, eq, value = opt.partition("=")
            if key == "admin" and not eq:
                fields["admin"] = True
            elif key in _QUOTAS and eq and value.isdigit():
                fields[key] = int(value)
            else:
                raise TokenError(f"{where}: unknown or malformed option {opt!r}",
                                 hint="options are sandboxes=N, memory_mb=M, snapshots=N, admin")
        names.add(name)
        secrets.add(secret)
        tokens.append(Token(name, secret, **fields))  # type: ignore[arg-type]
    if not tokens:
        raise TokenError(f"the token file {path} holds no token",
                         hint="add a line 'NAME TOKEN' (the token at least 16 characters)")
    return tuple(tokens)


def find_token(tokens: tuple[Token, ...], presented: str) -> Token | None:
    """The token whose secret is ``presented``, comparing with all in constant time each."""
    given = presented.encode("utf-8", "surrogateescape")
    found = None
    for t in tokens:
        if hmac.compare_digest(t.secret.encode("utf-8"), given):
            found = t
    return found
