"""Decode an image's untrusted JSON: bounded nesting, 64-bit numbers, errors naming the field.

Python's decoder recurses once per nesting level (RecursionError near a
thousand), refuses integers of more than 4,300 digits with a ValueError,
turns ``1e400`` into infinity, accepts ``NaN`` and lone surrogates
(``"\\ud800"``, which no UTF-8 encoder takes back). Every JSON document Kiln
reads from an image (``oci-layout``, ``index.json``, manifests, configs,
docker ``manifest.json``) goes through :func:`decode_json` instead, which
refuses all of those with a MalformedImageError naming the document and the
field (``manifests[0].size``).
"""
from __future__ import annotations

import json
import math
import re

from .errors import MalformedImageError

__all__ = ["MAX_DEPTH", "decode_json", "field_path", "shown", "listing"]

MAX_DEPTH = 100
"""Deepest nesting of arrays and objects accepted (image documents use about five)."""

_INT_RANGE = (-(1 << 63), (1 << 64) - 1)
"""Integers must fit in 64 bits, signed or unsigned (descriptor sizes are int64)."""
_MAX_INT_DIGITS = 20
_TOKEN = re.compile(r'["\[\]{},]')
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HINT = "the image is corrupt or was made to break JSON parsers; fetch or build it again"
_SYNTAX_HINT = "the image is corrupt; fetch or build it again"


def field_path(parts: list[str | int] | tuple[str | int, ...], limit: int = 8) -> str:
    """``["manifests", 0, "size"]`` → ``manifests[0].size`` (long paths cut with …)."""
    if not parts:
        return "the top level"
    out = []
    for i, part in enumerate(parts[:limit]):
        if isinstance(part, int):
            out.append(f"[{part}]")
            continue
        key = part if len(part) <= 40 else f"{part[:39]}…"
        if _IDENT.fullmatch(part):
            out.append(key if i == 0 else f".{key}")
        else:
            out.append(f"[{json.dumps(key)}]")
    return "".join(out) + ("…" if len(parts) > limit else "")


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters."""
    if isinstance(value, (dict, list)):
        text = json.dumps(value)[:limit + 1] if len(value) < limit else f"{type(value).__name__}…"
    else:
        text = repr(value if not isinstance(value, str) else value[:limit + 1])
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def listing(names: list[str], limit: int = 20) -> str:
    """Names an image supplied (tags, platforms), comma-separated, each and all cut short."""
    cut = [n if len(n) <= 80 else f"{n[:79]}…" for n in names[:limit]]
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(cut) + more if cut else "none"


class _Refused:
    """Stands in the decoded document for a number Kiln will not accept."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}…{text[-6:]}"


def _int(text: str) -> int | _Refused:
    digits = len(text) - text.startswith("-")
    if digits > _MAX_INT_DIGITS:
        return _Refused(f"an integer of {digits} digits is out of range (at most 64 bits)")
    value = int(text)
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return _Refused(f"integer {text} is out of range (at most 64 bits)")
    return value


def _float(text: str) -> float | _Refused:
    value = float(text)
    if not math.isfinite(value):
        return _Refused(f"number {_short(text)} is too large for a double")
    return value


def _constant(text: str) -> _Refused:
    return _Refused(f"{text} is not a JSON number")


def _check_nesting(text: str, where: str) -> None:
    """MalformedImageError if arrays and objects nest deeper than MAX_DEPTH.

    A scan over strings and brackets only (the decoder, which would recurse,
    runs afterwards); it tracks the key or index of every open container so
    the error can say where. Syntax errors are left for the decoder to report.
    """
    path: list[str | int] = []      # key or index inside each open container
    kinds: list[str] = []
    want_key = False
    pos = 0
    while (m := _TOKEN.search(text, pos)) is not None:
        ch = m.group()
        pos = m.end()
        if ch == '"':
            try:
                value, pos = json.decoder.scanstring(text, pos, False)
            except json.JSONDecodeError:
                return
            if want_key:
                path[-1] = value
                want_key = False
        elif ch in "[{":
            if len(kinds) >= MAX_DEPTH:
                line = text.count("\n", 0, m.start()) + 1
                raise MalformedImageError(
                    f"{where}: {field_path(path)}: arrays and objects nested more than "
                    f"{MAX_DEPTH} levels deep (line {line})", hint=_HINT)
            kinds.append(ch)
            path.append(0 if ch == "[" else "")
            want_key = ch == "{"
        elif ch == ",":
            if not kinds:
                return
            if kinds[-1] == "[":
                path[-1] = int(path[-1]) + 1
            else:
                want_key = True
        else:
            if not kinds:
                return
            kinds.pop()
            path.pop()
            want_key = False


def _check_values(doc: object, where: str) -> None:
    """MalformedImageError naming the first refused number, or string that is not valid
    Unicode (a lone surrogate, from ``\\ud800`` or raw bytes); the depth is bounded already."""
    stack: list[tuple[object, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        value, at = stack.pop()
        if isinstance(value, _Refused):
            raise MalformedImageError(f"{where}: {field_path(at)}: {value.why}", hint=_HINT)
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise MalformedImageError(f"{where}: {field_path(at)}: the string holds a lone "
                                          "UTF-16 surrogate; it is not valid Unicode",
                                          hint=_HINT)
        elif isinstance(value, dict):
            for k in value:
                if _SURROGATE.search(k):
                    raise MalformedImageError(f"{where}: {field_path(at)}: a key holds a lone "
                                              "UTF-16 surrogate; it is not valid Unicode",
                                              hint=_HINT)
            stack.extend((v, (*at, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, (*at, i)) for i, v in reversed(list(enumerate(value))))


def decode_json(data: bytes, where: str) -> object:
    """Decode the JSON document ``data`` (UTF-8, -16 or -32, as ``json.loads`` reads bytes).

    Raises MalformedImageError naming ``where``, and the field when there is
    one: not JSON, nesting deeper than MAX_DEPTH, an integer outside 64 bits,
    a number too large for a double, NaN or Infinity, a string that is not
    valid Unicode (it could not be written out again as UTF-8).
    """
    try:
        text = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
    except UnicodeDecodeError as err:
        raise MalformedImageError(f"{where}: not valid JSON ({err})",
                                  hint=_SYNTAX_HINT) from err
    _check_nesting(text, where)
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as err:
        raise MalformedImageError(f"{where}: not valid JSON ({err})",
                                  hint=_SYNTAX_HINT) from err
    _check_values(doc, where)
    return doc
