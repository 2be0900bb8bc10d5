"""The trust policy (``/etc/kiln/policy.json``): which megabinaries may start a run, and its check.

``kiln run`` (and ``kiln-oci``, before it creates a container) calls
:func:`load_policy` then :func:`check_megabinary` before anything of the run
exists; a refusal is an audit record and a :class:`TrustRefused` that says what
to do. The accepted digest is then pinned in ``RunSpec.megabinary_digest`` so
the run cannot open a different file than the one checked.

The policy file is JSON (docs/threat-model.md, "Trust policy", is the
reference; ``kiln run --help`` summarises it)::

    {"version": 1,
     "require_signature": true,
     "trusted_keys": [{"name": "ci", "path": "keys/ci.pub"},
                      {"name": "release", "public_key": "<base64 of the raw key>"}],
     "allow": ["blake3:<64 hex>", ...], "deny": ["blake3:<64 hex>", ...],
     "kill_switch": false,
     "audit_log": "/var/log/kiln/audit.jsonl"}

Where it is read from: ``--policy PATH``, else ``$KILN_POLICY``, else
:data:`DEFAULT_POLICY_PATH`. A missing default file means no policy (every
megabinary may run, signatures are not read: Kiln's behaviour without one); a
named file that is missing, and any file that is unreadable or malformed, is an
error. ``cryptography`` is imported only when a signature is verified (or a
trusted key is given as a PEM file).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from formats.errors import KilnError
from vkernel.audit import AuditLog

if TYPE_CHECKING:
    from formats.keys import PublicKey
    from formats.signature import Signature

__all__ = ["DEFAULT_POLICY_PATH", "POLICY_ENV", "POLICY_VERSION", "TrustPolicy", "TrustDecision",
           "PolicyError", "TrustRefused", "load_policy", "parse_policy", "check_megabinary"]

DEFAULT_POLICY_PATH = "/etc/kiln/policy.json"
POLICY_ENV = "KILN_POLICY"
"""Environment variable naming the policy file (``--policy`` wins over it)."""
POLICY_VERSION = 1
_MAX_POLICY = 1 << 20
_KEYS = ("version", "require_signature", "trusted_keys", "allow", "deny", "kill_switch",
         "audit_log")
_HINT_POLICY = ("fix the policy file: its keys are described in `kiln run --help` and "
                "docs/threat-model.md (\"Trust policy\")")


class PolicyError(KilnError):
    """The policy file cannot be read, or breaks its schema."""


class TrustRefused(KilnError):
    """The policy refuses this megabinary. ``reason`` is the audit record's reason code."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


@dataclass(frozen=True)
class TrustPolicy:
    """A parsed policy; ``TrustPolicy()`` is "no policy" (nothing checked)."""
    path: str | None = None
    """The file it came from; None when there is none."""
    require_signature: bool = False
    trusted_keys: tuple[PublicKey, ...] = ()
    allow: frozenset[str] = field(default_factory=frozenset)
    """Megabinary digests that may run; empty: any not denied."""
    deny: frozenset[str] = field(default_factory=frozenset)
    kill_switch: bool = False
    """Refuse every new run."""
    audit_log: str | None = None
    """Where runs append audit records when no --audit-log is given."""

    @property
    def active(self) -> bool:
        return self.path is not None

    def key(self, key_id: str) -> PublicKey | None:
        """The trusted key with this id, if any."""
        return next((k for k in self.trusted_keys if k.key_id == key_id), None)


@dataclass(frozen=True)
class TrustDecision:
    """An accepted megabinary."""
    digest: str
    """Its digest (empty when there is no policy and nothing was opened)."""
    signed_by: str = ""
    """The id of the trusted key whose signature verified; empty when it was not checked."""
    key_name: str = ""
    policy: str | None = None


def _policy_path(explicit: str | os.PathLike[str] | None,
                 environ: dict[str, str] | os._Environ) -> tuple[str, bool]:
    """(path, whether it was named: a named policy must exist)."""
    if explicit is not None:
        return os.fspath(explicit), True
    env = environ.get(POLICY_ENV, "")
    if env:
        return env, True
    return DEFAULT_POLICY_PATH, False


def load_policy(explicit: str | os.PathLike[str] | None = None, *,
                environ: dict[str, str] | None = None) -> TrustPolicy:
    """The policy in force: ``explicit`` (``--policy``), else ``$KILN_POLICY``, else
    /etc/kiln/policy.json; ``TrustPolicy()`` when the default file does not exist."""
    path, named = _policy_path(explicit, os.environ if environ is None else environ)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not named:
            return TrustPolicy()
        raise PolicyError(f"the policy file {path} does not exist",
                          hint=f"check --policy / ${POLICY_ENV}; without either, Kiln reads "
                               f"{DEFAULT_POLICY_PATH} when it exists") from None
    except OSError as e:
        raise PolicyError(f"cannot read the policy file {path}: {e.strerror or e}",
                          hint="the policy is never skipped: make it readable to the user "
                               "running kiln, or fix --policy") from None
    try:
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_mode & 0o002:
                raise PolicyError(f"the policy file {path} is writable by every user, who could "
                                  "switch it off", hint=f"chmod o-w {path}")
            data = f.read(_MAX_POLICY + 1)
    except OSError as e:
        raise PolicyError(f"cannot read the policy file {path}: {e.strerror or e}",
                          hint="a policy is a JSON file; see docs/threat-model.md") from None
    return parse_policy(data, os.path.abspath(path))


def _fail(path: str, where: str, message: str) -> PolicyError:
    return PolicyError(f"policy {path}: {where}: {message}" if where else
                       f"policy {path}: {message}", hint=_HINT_POLICY)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice in one object")
        out[k] = v
    return out


def _digests(path: str, where: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        raise _fail(path, where, "expected a list of megabinary digests")
    for i, d in enumerate(value):
        if not (isinstance(d, str) and d.startswith("blake3:") and len(d) == 71
                and all(c in "0123456789abcdef" for c in d[7:])):
            raise _fail(path, f"{where}[{i}]", f"{str(d)[:80]!r} is not a megabinary digest "
                        "(blake3: and 64 lowercase hex digits, as `recompile` prints)")
    return frozenset(value)


def _key(path: str, where: str, value: Any) -> PublicKey:
    from formats.keys import KeyFileError, load_public_key_file, public_key_from_text
    if not isinstance(value, dict):
        raise _fail(path, where, 'expected an object: {"name": ..., "path": FILE} or '
                    '{"name": ..., "public_key": BASE64}')
    unknown = set(value) - {"name", "path", "public_key"}
    if unknown:
        raise _fail(path, where, f"unknown key {sorted(unknown)[0]!r}")
    name = value.get("name", "")
    if not isinstance(name, str):
        raise _fail(path, f"{where}.name", "expected a string")
    if ("path" in value) == ("public_key" in value):
        raise _fail(path, where, 'give exactly one of "path" (a PEM public key file) and '
                    '"public_key" (the base64 of the raw key)')
    try:
        if "path" in value:
            if not isinstance(value["path"], str) or not value["path"]:
                raise _fail(path, f"{where}.path", "expected a file name")
            file = os.path.join(os.path.dirname(os.path.abspath(path)), value["path"])
            return load_public_key_file(file, name=name)
        if not isinstance(value["public_key"], str):
            raise _fail(path, f"{where}.public_key", "expected a base64 string")
        return public_key_from_text(value["public_key"], source=f"{path}: {where}", name=name)
    except KeyFileError as e:
        raise PolicyError(f"policy {path}: {where}: {e.message}", hint=e.hint) from None


def parse_policy(data: bytes, path: str) -> TrustPolicy:
    """Check the policy file's contents ``data`` (read from ``path``) and build the policy."""
    if len(data) > _MAX_POLICY:
        raise _fail(path, "", f"larger than {_MAX_POLICY} bytes")
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise _fail(path, "", "not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise _fail(path, "", f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:
        raise _fail(path, "", str(e)) from None
    if not isinstance(obj, dict):
        raise _fail(path, "", "expected a JSON object at the top")
    unknown = sorted(set(obj) - set(_KEYS))
    if unknown:
        raise _fail(path, unknown[0], f"unknown key (known: {', '.join(_KEYS)})")
    if obj.get("version") != POLICY_VERSION or type(obj.get("version")) is not int:
        raise _fail(path, "version", f"must be {POLICY_VERSION} (got {obj.get('version')!r})")
    for flag in ("require_signature", "kill_switch"):
        if type(obj.get(flag, False)) is not bool:
            raise _fail(path, flag, "expected true or false")
    keys_obj = obj.get("trusted_keys", [])
    if not isinstance(keys_obj, list):
        raise _fail(path, "trusted_keys", "expected a list of keys")
    keys = tuple(_key(path, f"trusted_keys[{i}]", k) for i, k in enumerate(keys_obj))
    if obj.get("require_signature", False) and not keys:
        raise _fail(path, "require_signature", "true, but trusted_keys is empty: no "
                    "megabinary could run (set kill_switch to refuse every run on purpose)")
    audit_log = obj.get("audit_log")
    if audit_log is not None:
        if not isinstance(audit_log, str) or not audit_log:
            raise _fail(path, "audit_log", "expected a file name")
        audit_log = os.path.join(os.path.dirname(os.path.abspath(path)), audit_log)
    allow = _digests(path, "allow", obj.get("allow", []))
    deny = _digests(path, "deny", obj.get("deny", []))
    return TrustPolicy(path=path, require_signature=obj.get("require_signature", False),
                       trusted_keys=keys, allow=allow, deny=deny,
                       kill_switch=obj.get("kill_switch", False), audit_log=audit_log)


def check_megabinary(policy: TrustPolicy, megabinary: str | os.PathLike[str],
                     audit: AuditLog | None = None, *,
                     signature: str | os.PathLike[str] | None = None,
                     subject: str | None = None) -> TrustDecision:
    """Whether ``policy`` lets the megabinary at ``megabinary`` start a run.

    The signature is read from ``signature`` (default: beside the megabinary,
    ``formats.signature.signature_path_for``). Every refusal is an audit record
    in ``audit`` (default: the policy's ``audit_log``, else a line on stderr),
    then :class:`TrustRefused`; with an audit file, an accepted run is recorded
    too. ``subject`` is what the user asked to run (an image), for messages and
    records (default: the megabinary's path). Without a policy nothing is opened.
    """
    if not policy.active:
        return TrustDecision("")
    from formats.megabinary import read_megabinary
    from formats.signature import (SignatureFormatError, SignatureMismatch, identity_of,
                                   read_signature_file, signature_path_for)
    mb_path = os.fspath(megabinary)
    sig_path = os.fspath(signature) if signature is not None else signature_path_for(mb_path)
    own_audit = audit is None
    log = AuditLog(policy.audit_log) if audit is None else audit
    name = subject or mb_path
    facts: dict[str, Any] = {"megabinary": mb_path, "signature": sig_path,
                             "policy": policy.path}
    if subject:
        facts["image"] = subject

    def refuse(reason: str, message: str, hint: str | None) -> TrustRefused:
        log.record("run", "refused", f"refused run of {name}: {message}", reason=reason,
                   **facts)
        return TrustRefused(f"refusing to run {name}: {message}", reason=reason, hint=hint)

    try:
        if policy.kill_switch:
            raise refuse("kill-switch", f"the kill switch of the policy {policy.path} is on: "
                         "no new run may start",
                         f'an administrator turns it off ("kill_switch": false in {policy.path})')
        try:
            with read_megabinary(mb_path, check_index=False) as mb:
                identity = identity_of(mb)
        except KilnError as e:
            raise refuse("bad-megabinary", e.message, e.hint) from None
        facts["digest"] = identity.digest
        if identity.digest in policy.deny:
            raise refuse("denied", f"its megabinary {identity.digest} is on the deny list of "
                         f"{policy.path}", "that megabinary was withdrawn: run an image "
                         "recompiled from a fixed source")
        if policy.allow and identity.digest not in policy.allow:
            raise refuse("not-allowed", f"its megabinary {identity.digest} is not on the allow "
                         f"list of {policy.path}", "run an allowed image, or have the digest "
                         f'added to "allow" in {policy.path}')
        try:
            sig = read_signature_file(sig_path)
            if sig is not None:
                facts["key_id"] = sig.key_id
                sig.check_describes(identity)
        except SignatureFormatError as e:
            reason = "signature-mismatch" if isinstance(e, SignatureMismatch) \
                else "signature-malformed"
            raise refuse(reason, e.message, e.hint) from None
        if sig is None:
            if policy.require_signature:
                raise refuse("unsigned", "its megabinary is not signed and the policy "
                             f"{policy.path} requires a signature",
                             "sign it with a key the policy trusts: recompile IMAGE -o OUT --sign "
                             "KEY (`kiln keygen` makes a key pair)")
            return _accepted(log, identity.digest, "", "", policy, facts)
        key = policy.key(sig.key_id)
        if key is None:
            if policy.require_signature:
                raise refuse("untrusted-key", f"it is signed by key {sig.key_id}, which the "
                             f"policy {policy.path} does not trust",
                             "sign it with a trusted key, or have that key's .pub file added to "
                             f'"trusted_keys" in {policy.path}')
            return _accepted(log, identity.digest, "", "", policy, facts)
        try:
            _verify(sig, key)
        except SignatureFormatError as e:
            raise refuse("bad-signature", e.message, e.hint) from None
        return _accepted(log, identity.digest, key.key_id, key.name, policy, facts)
    finally:
        if own_audit:
            log.close()


def _verify(sig: Signature, key: PublicKey) -> None:
    """``sig.verify(key)``, unless this very signature verified in an earlier run (the record
    kept in the private cache of vkernel/verified.py spares importing cryptography)."""
    from vkernel.verified import TrustDir, keep_signature_verified, signature_verified_before
    kept = TrustDir.open()
    try:
        message = sig.signed_message()
        if key.key_id == sig.key_id and \
                signature_verified_before(kept, key.raw, sig.signature, message):
            return
        sig.verify(key)
        keep_signature_verified(kept, key.raw, sig.signature, message)
    finally:
        if kept is not None:
            kept.close()


def _accepted(log: AuditLog, digest: str, key_id: str, key_name: str,
              policy: TrustPolicy, facts: dict[str, Any]) -> TrustDecision:
    if log.path is not None:                   # no line on stderr for every run that starts
        log.record("run", "allowed", f"allowed run of {facts.get('image', facts['megabinary'])}",
                   reason="signed" if key_id else "signature-not-required", **facts)
    return TrustDecision(digest, key_id, key_name, policy.path)
