"""The root of Kiln's exception tree and the format-level errors."""
from __future__ import annotations


class KilnError(Exception):
    """Every error Kiln reports to a user derives from this.

    ``message`` says what was wrong (and where); ``hint`` says what to do next.
    The CLIs print both and exit with status 2, never a traceback.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class FormatError(KilnError):
    """A Kiln file (megabinary, index) is malformed.

    ``offset`` is the byte offset in the file where the problem was found,
    when one is known.
    """

    def __init__(self, message: str, *, offset: int | None = None,
                 path: str | None = None, hint: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if offset is not None:
            where.append(f"offset {offset:#x}")
        full = f"{': '.join(where)}: {message}" if where else message
        super().__init__(full, hint=hint)
        self.offset = offset
        self.path = path


EXIT_BAD_INPUT = 2
"""Exit status of a Kiln command that stopped on a KilnError."""


def user_report(err: KilnError, *, as_json: bool = False) -> str:
    """The text a command prints on stderr for ``err``: what, then what to do."""
    if as_json:
        import json
        payload = {"error": err.message, "kind": type(err).__name__}
        if err.hint:
            payload["hint"] = err.hint
        return json.dumps(payload, sort_keys=True)
    lines = [f"error: {err.message}"]
    if err.hint:
        lines.append(f"hint: {err.hint}")
    return "\n".join(lines)
