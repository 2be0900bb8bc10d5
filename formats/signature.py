"""The megabinary signature file (``megabinary.sig``): its statement, writing, reading, checking.

A signature sits next to the megabinary it signs (``/.kiln/megabinary.sig`` in
a recompiled image) rather than inside it: a signature inside the file would
change the checksum it signs. It signs a small **statement** naming the
megabinary by its digest (docs/formats.md §1.4, which covers the header, the
section table and so every section's BLAKE3), its INDEX section's BLAKE3
and its source image. docs/formats.md §9 is the normative description.

Reading (:func:`read_signature`) checks the file's shape and raises one typed
:class:`SignatureFormatError` subclass per problem; checking it against a
megabinary (:meth:`Signature.check_describes`) and verifying the Ed25519
signature (:meth:`Signature.verify`) are separate steps, so a runtime can
refuse a signature of another megabinary without loading any cryptography.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from formats.errors import FormatError
from formats.index import CborError, canonical_cbor, decode_canonical_cbor
from formats.keys import ALGORITHM, PublicKey, SigningKey

if TYPE_CHECKING:
    from formats.megabinary import Megabinary

__all__ = [
    "SIGNATURE_VERSION", "SIGNATURE_SUFFIX", "SIGNING_CONTEXT", "MAX_SIGNATURE_FILE",
    "MegabinaryIdentity", "Statement", "Signature", "SignatureFormatError", "MalformedSignature",
    "UnsupportedSignature", "SignatureMismatch", "BadSignature", "identity_of",
    "make_signature", "read_signature", "read_signature_file", "signature_path_for",
]

SIGNATURE_VERSION = 1
"""The ``version`` of the signature files this module writes and reads."""
SIGNATURE_SUFFIX = ".sig"
"""A megabinary ``X.kmb`` is signed by ``X.sig`` beside it (:func:`signature_path_for`)."""
SIGNING_CONTEXT = b"kiln megabinary signature 1\x00"
"""Prefixed to the statement bytes before signing: a Kiln key's signature of a statement
can never be read as a signature of anything else (and the reverse)."""
MAX_SIGNATURE_FILE = 64 << 10
"""Largest signature file a reader accepts (a real one is about 300 bytes)."""
_DIGEST_SIZE = 32
_SIGNATURE_SIZE = 64
_HINT_RESIGN = "sign the megabinary again: recompile IMAGE -o OUT --sign KEY"


class SignatureFormatError(FormatError):
    """A signature file is malformed or describes another megabinary."""


class MalformedSignature(SignatureFormatError):
    """Not a signature file: empty, too large, not one canonical CBOR item, or breaks the schema.

    ``where`` names the element (``signature``, ``statement.key_id``, ...)."""

    def __init__(self, message: str, *, where: str = "", path: str | None = None,
                 hint: str | None = _HINT_RESIGN) -> None:
        super().__init__(f"{where}: {message}" if where else message, path=path, hint=hint)
        self.where = where


class UnsupportedSignature(SignatureFormatError):
    """A well-formed signature file of a version or algorithm this reader does not know."""


class SignatureMismatch(SignatureFormatError):
    """The statement describes another megabinary (another digest, index or source image)."""


class BadSignature(SignatureFormatError):
    """The Ed25519 signature does not verify with the key the statement names."""


@dataclass(frozen=True)
class MegabinaryIdentity:
    """What a statement says about the megabinary it signs."""
    format: str
    """The megabinary's format version, ``"<major>.<minor>"``."""
    digest: str
    """The megabinary digest, ``blake3:<64 hex>`` (docs/formats.md §1.4)."""
    index_blake3: bytes
    """BLAKE3 of its INDEX section."""
    source_image: str
    """Its META ``source_image`` (empty when unknown)."""


def identity_of(mb: "Megabinary") -> MegabinaryIdentity:
    """The identity of an open megabinary (all of it checked when the file was opened)."""
    major, minor = mb.version
    return MegabinaryIdentity(f"{major}.{minor}", mb.digest, bytes(mb.index_blake3),
                              mb.metadata.source_image)


@dataclass(frozen=True)
class Statement:
    """The signed statement: which megabinary, by which key, with which algorithm."""
    megabinary: MegabinaryIdentity
    key_id: str
    algorithm: str = ALGORITHM

    def to_obj(self) -> dict[str, Any]:
        m = self.megabinary
        return {"megabinary_format": m.format, "megabinary_digest": m.digest,
                "index_blake3": m.index_blake3, "source_image": m.source_image,
                "key_id": self.key_id, "algorithm": self.algorithm}


@dataclass(frozen=True)
class Signature:
    """A decoded signature file."""
    statement: Statement
    statement_bytes: bytes
    """The canonical CBOR of the statement, exactly as signed."""
    signature: bytes
    path: str | None = None

    @property
    def key_id(self) -> str:
        return self.statement.key_id

    def signed_message(self) -> bytes:
        return SIGNING_CONTEXT + self.statement_bytes

    def check_describes(self, identity: MegabinaryIdentity) -> None:
        """:class:`SignatureMismatch` unless the statement names exactly this megabinary."""
        got = self.statement.megabinary
        for name, mine, theirs in (("megabinary_digest", got.digest, identity.digest),
                                   ("index_blake3", got.index_blake3, identity.index_blake3),
                                   ("source_image", got.source_image, identity.source_image),
                                   ("megabinary_format", got.format, identity.format)):
            if mine != theirs:
                raise SignatureMismatch(
                    f"the signature is for another megabinary: its statement's {name} is "
                    f"{_show(mine)}, the megabinary's is {_show(theirs)}", path=self.path,
                    hint="the signature file was copied from another image, or the megabinary "
                         "changed after signing; " + _HINT_RESIGN)

    def verify(self, key: PublicKey) -> None:
        """:class:`BadSignature` unless ``key`` (whose id the statement names) signed it."""
        if key.key_id != self.key_id:
            raise BadSignature(f"the statement names key {self.key_id}, not {key.key_id}",
                               path=self.path)
        if not key.verify(self.signature, self.signed_message()):
            raise BadSignature(f"the Ed25519 signature by key {self.key_id} does not verify: "
                               "the signature file was altered", path=self.path,
                               hint=_HINT_RESIGN)


def _show(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


def make_signature(identity: MegabinaryIdentity, key: SigningKey) -> bytes:
    """The signature file's bytes: ``key`` signs the statement about ``identity``."""
    statement = Statement(identity, key.key_id)
    statement_bytes = canonical_cbor(statement.to_obj())
    signature = key.sign(SIGNING_CONTEXT + statement_bytes)
    data = canonical_cbor({"version": SIGNATURE_VERSION, "statement": statement_bytes,
                           "signature": signature})
    read_signature(data)                      # what we write, we read back
    return data


_CBOR_TYPE = {int: "an integer", str: "a text string", bytes: "a byte string"}


def _field(obj: Mapping, key: str, kind: type, where: str, path: str | None) -> Any:
    if key not in obj:
        raise MalformedSignature(f"missing required key {key!r}", where=where, path=path)
    value = obj[key]
    if type(value) is not kind:
        got = _CBOR_TYPE.get(type(value), type(value).__name__)
        raise MalformedSignature(f"expected {_CBOR_TYPE[kind]}, got {got}",
                                 where=f"{where}.{key}", path=path)
    return value


def _hex64(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _cbor(payload: bytes, what: str, where: str, path: str | None) -> Any:
    try:
        return decode_canonical_cbor(payload, what=what)
    except CborError as e:
        raise MalformedSignature(e.message, where=where, path=path) from None


def read_signature(data: bytes, *, path: str | None = None) -> Signature:
    """Decode and check a signature file's bytes (docs/formats.md §9.2).

    Raises :class:`MalformedSignature` or :class:`UnsupportedSignature`; does not
    look at any megabinary or verify the signature.
    """
    data = bytes(data)
    if not data:
        raise MalformedSignature("empty file, not a signature", path=path)
    if len(data) > MAX_SIGNATURE_FILE:
        raise MalformedSignature(f"{len(data)} bytes, more than a signature file may have "
                                 f"({MAX_SIGNATURE_FILE})", path=path)
    top = _cbor(data, "the signature file", "signature", path)
    if not isinstance(top, Mapping):
        raise MalformedSignature(f"expected a map, got {type(top).__name__}", where="signature",
                                 path=path)
    version = _field(top, "version", int, "signature", path)
    if version != SIGNATURE_VERSION:
        raise UnsupportedSignature(f"signature file version {version}; this Kiln reads version "
                                   f"{SIGNATURE_VERSION}", path=path,
                                   hint="use the Kiln release that signed it, or sign again with "
                                        "this one")
    statement_bytes = _field(top, "statement", bytes, "signature", path)
    signature = _field(top, "signature", bytes, "signature", path)
    st = _cbor(statement_bytes, "the statement", "signature.statement", path)
    if not isinstance(st, Mapping):
        raise MalformedSignature(f"expected a map, got {type(st).__name__}",
                                 where="signature.statement", path=path)
    where = "signature.statement"
    algorithm = _field(st, "algorithm", str, where, path)
    if algorithm != ALGORITHM:
        raise UnsupportedSignature(f"signature algorithm {algorithm[:40]!r}; this Kiln verifies "
                                   f"{ALGORITHM} only", path=path, hint=_HINT_RESIGN)
    if len(signature) != _SIGNATURE_SIZE:
        raise MalformedSignature(f"{len(signature)} bytes, an Ed25519 signature has "
                                 f"{_SIGNATURE_SIZE}", where="signature.signature", path=path)
    fmt = _field(st, "megabinary_format", str, where, path)
    digest = _field(st, "megabinary_digest", str, where, path)
    index_blake3 = _field(st, "index_blake3", bytes, where, path)
    source_image = _field(st, "source_image", str, where, path)
    kid = _field(st, "key_id", str, where, path)
    if not (digest.startswith("blake3:") and _hex64(digest[7:])):
        raise MalformedSignature(f"{digest[:80]!r} is not a megabinary digest (blake3: and 64 "
                                 "lowercase hex digits)", where=f"{where}.megabinary_digest",
                                 path=path)
    if len(index_blake3) != _DIGEST_SIZE:
        raise MalformedSignature(f"{len(index_blake3)} bytes, a BLAKE3 digest has {_DIGEST_SIZE}",
                                 where=f"{where}.index_blake3", path=path)
    if not _hex64(kid):
        raise MalformedSignature(f"{kid[:80]!r} is not a key id (64 lowercase hex digits)",
                                 where=f"{where}.key_id", path=path)
    identity = MegabinaryIdentity(fmt, digest, index_blake3, source_image)
    return Signature(Statement(identity, kid, algorithm), statement_bytes, signature, path)


def read_signature_file(path: str | os.PathLike[str]) -> Signature | None:
    """The signature file at ``path``, or None when there is none; malformed ones raise."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_SIGNATURE_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise MalformedSignature(f"cannot read the signature file: {e.strerror or e}", path=p,
                                 hint="check the file's permissions") from None
    return read_signature(data, path=p)


def signature_path_for(megabinary_path: str | os.PathLike[str]) -> str:
    """Where the signature of the megabinary at ``megabinary_path`` lives: the same path with
    ``.sig`` for its ``.kmb`` suffix (``.sig`` appended when it has none)."""
    p = os.fspath(megabinary_path)
    return (p[:-4] if p.endswith(".kmb") else p) + SIGNATURE_SUFFIX
