"""Ed25519 signing keys: key files (PEM, as OpenSSL writes them), key ids, the policy's inline form.

A private key file is PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``, unencrypted),
a public key file SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``):
the files ``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout``
write, and those ``kiln keygen`` writes. A key's **id** is the hex name of the
BLAKE3 of its 32 raw public-key bytes (docs/formats.md §9). The ``cryptography``
package is imported only by the functions that need it, so a ``kiln run``
that checks no signature never loads it.
"""
from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from formats.errors import KilnError

__all__ = ["KeyFileError", "PublicKey", "SigningKey", "key_id", "generate_key",
           "load_signing_key", "load_public_key_file", "public_key_from_pem",
           "public_key_from_text", "PUBLIC_KEY_SIZE", "ALGORITHM"]

ALGORITHM = "ed25519"
"""The one signature algorithm of signature file version 1."""
PUBLIC_KEY_SIZE = 32
"""Bytes of a raw Ed25519 public key."""
_MAX_KEY_FILE = 64 << 10


class KeyFileError(KilnError):
    """A key file or inline key is missing, unreadable or not an Ed25519 key."""


def key_id(raw_public_key: bytes) -> str:
    """The key id: 64 lowercase hex digits of BLAKE3(raw 32-byte public key)."""
    return blake3.blake3(bytes(raw_public_key)).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """A public key as a trust policy holds it."""
    raw: bytes
    """The 32 raw Ed25519 public-key bytes (RFC 8032)."""
    name: str = ""
    """What the policy calls it (for messages)."""
    source: str = ""
    """Where it came from: a file path or ``inline``."""

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def text(self) -> str:
        """The inline form a policy file accepts: base64 of the raw key."""
        return base64.b64encode(self.raw).decode("ascii")


class SigningKey:
    """An Ed25519 private key loaded from a file (``recompile --sign KEY``)."""

    def __init__(self, private: Any, path: str) -> None:
        self._private = private           # cryptography's Ed25519PrivateKey
        self.path = path
        from cryptography.hazmat.primitives import serialization
        self.public = PublicKey(private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw), source=path)

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (deterministic, RFC 8032)."""
        return self._private.sign(message)


def _read_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyFileError(f"cannot read the {what} {p}: {e.strerror or e}",
                           hint="check the path; `kiln keygen` makes a key pair") from None
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{p} is not a {what}: larger than {_MAX_KEY_FILE} bytes",
                           hint="pass the PEM file `kiln keygen` wrote")
    return data


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """The Ed25519 private key in the PEM file at ``path`` (PKCS#8, unencrypted)."""
    data = _read_key_file(path, "private key file")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    if b"ENCRYPTED PRIVATE KEY" in data:
        raise KeyFileError(f"{path} is an encrypted private key; recompile --sign needs an "
                           "unencrypted one", hint="decrypt it into a file only you can read: "
                           "openssl pkey -in KEY -out PLAIN.key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{path} is not a PEM private key ({_first_line(e)})",
                           hint="pass the .key file `kiln keygen` wrote (or `openssl genpkey "
                                "-algorithm ed25519` output)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a key of type {type(key).__name__.removeprefix('_')}, "
                           "not Ed25519", hint="Kiln signs with Ed25519 only: `kiln keygen`")
    return SigningKey(key, os.fspath(path))


_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""DER of an Ed25519 SubjectPublicKeyInfo up to the key (RFC 8410 §4); DER has one encoding, so
every such key is these 12 bytes and its 32 raw bytes."""


def _raw_from_pem(data: bytes) -> bytes | None:
    """The raw key of a PEM Ed25519 public key in its one DER form, or None for anything else
    (left to cryptography's parser and its errors). Reading a policy's key files this way keeps
    cryptography out of a run that verifies no signature."""
    try:
        lines = data.decode("ascii").strip().splitlines()
    except UnicodeDecodeError:
        return None
    lines = [line.strip() for line in lines]
    if len(lines) < 3 or lines[0] != "-----BEGIN PUBLIC KEY-----" or \
            lines[-1] != "-----END PUBLIC KEY-----":
        return None
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(der) == len(_SPKI_PREFIX) + PUBLIC_KEY_SIZE and der.startswith(_SPKI_PREFIX):
        return der[len(_SPKI_PREFIX):]
    return None


def public_key_from_pem(data: bytes, *, source: str, name: str = "") -> PublicKey:
    """The Ed25519 public key in PEM ``data`` (SubjectPublicKeyInfo), named ``source`` in errors."""
    raw = _raw_from_pem(data)
    if raw is not None:
        return PublicKey(raw, name=name, source=source)
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{source} is not a PEM public key ({_first_line(e)})",
                           hint="give the .pub file `kiln keygen` wrote (or `openssl pkey "
                                "-pubout` output)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source} holds a key of type {type(key).__name__.removeprefix('_')}, "
                           "not Ed25519", hint="Kiln verifies Ed25519 signatures only")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw, name=name, source=source)


def load_public_key_file(path: str | os.PathLike[str], *, name: str = "") -> PublicKey:
    """The Ed25519 public key in the PEM file at ``path``."""
    return public_key_from_pem(_read_key_file(path, "public key file"),
                               source=os.fspath(path), name=name)


def public_key_from_text(text: str, *, source: str = "inline", name: str = "") -> PublicKey:
    """A public key written inline: the base64 of its 32 raw bytes (what keygen prints)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != PUBLIC_KEY_SIZE:
        raise KeyFileError(f"{source}: {text[:60]!r} is not an Ed25519 public key (expected the "
                           f"base64 of {PUBLIC_KEY_SIZE} bytes)",
                           hint="copy the 'public key' line `kiln keygen` printed, or name the "
                                ".pub file with \"path\"")
    return PublicKey(raw, name=name, source=source)


def generate_key() -> tuple[bytes, bytes, PublicKey]:
    """A new key pair: (private PEM, public PEM, the public key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    pub = key.public_key()
    public_pem = pub.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_pem, public_pem, PublicKey(raw)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
