"""Only signed code runs: kiln keygen, recompile --sign, the trust policy of kiln run, refusals.

Real keys (``kiln keygen`` and OpenSSL), real recompiles of tiny musl programs
signed by the real ``recompile --sign``, and real ``kiln run`` under policies
written as a user would. A signature file is also read here independently of
Kiln (cbor2 and the cryptography package, following docs/formats.md §9).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import cbor2
import pytest

from formats.container import SECTION_ENTRY_SIZE
from formats.megabinary import SectionKind, read_megabinary
from test_vkernel_guestc import compile_c

BIN = Path(sys.executable).parent
KILN = [str(BIN / "kiln")]
RECOMPILE = [str(BIN / "recompile")]
PROGRAMS = {"a": 'int main(void){puts("hello from A");return 0;}',
            "b": 'int main(void){puts("hello from B");return 3;}'}


def _tool(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)


@dataclass(frozen=True)
class World:
    """Two keys, and recompiled images of programs a and b, signed or not."""
    base: Path
    keys: Path
    images: dict[str, Path]     # "a-signed", "a-unsigned", "a-stranger", "b-signed"
    digests: dict[str, str]     # image name -> megabinary digest (recompile --json)
    native: dict[str, subprocess.CompletedProcess]
    extra_images: list[Path] = field(default_factory=list)   # made by single tests

    def policy(self, name: str = "policy.json", **fields) -> Path:
        body = {"version": 1, "require_signature": True,
                "trusted_keys": [{"name": "ci", "path": str(self.keys / "trusted.pub")}]}
        body.update(fields)
        path = self.base / name
        path.write_text(json.dumps(body))
        return path

    def bundle(self, image: str) -> Path:
        """The unpacked rootfs `kiln run IMAGE` runs over (megabinary and signature included)."""
        from recompiler.bundle import prepare_bundle
        return prepare_bundle(self.images[image]) / "rootfs"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("signing")
    keys = base / "keys"
    for name in ("trusted", "stranger"):
        got = _tool([*KILN, "keygen", "-o", str(keys), "--name", name])
        assert got.returncode == 0, got.stderr
    images, digests, native = {}, {}, {}
    for prog, body in PROGRAMS.items():
        root = base / f"root-{prog}"
        (root / "bin").mkdir(parents=True)
        compile_c("#include <stdio.h>\n" + body, root / "bin" / prog)
        native[prog] = subprocess.run([str(root / "bin" / prog)], capture_output=True)
        signers = {"a": (("signed", "trusted"), ("unsigned", None), ("stranger", "stranger")),
                   "b": (("signed", "trusted"),)}[prog]
        for label, key in signers:
            name = f"{prog}-{label}"
            sign = ["--sign", str(keys / f"{key}.key")] if key else []
            got = _tool([*RECOMPILE, str(root), "-o", str(base / name), *sign, "--json"])
            assert got.returncode == 0, got.stderr
            report = json.loads(got.stdout)
            assert report["signed_by"] == (_key_id(keys / f"{key}.pub") if key else None)
            images[name], digests[name] = base / name, report["megabinary_digest"]
    w = World(base, keys, images, digests, native)
    yield w
    _remove_bundles([*images.values(), *w.extra_images])


def _remove_bundles(images: list[Path]) -> None:
    """Keep the cache trimmed: every session signs with new keys, so its images (and the
    bundles `kiln run IMAGE` unpacked from them) are new each time."""
    from recompiler.bundle import prepare_bundle
    for image in images:
        if image.exists():
            shutil.rmtree(prepare_bundle(image), ignore_errors=True)


def _key_id(pub_pem: Path) -> str:
    """A key's id as docs/formats.md §9.1 defines it, computed with cryptography and blake3."""
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_public_key(pub_pem.read_bytes())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return blake3.blake3(raw).hexdigest()


def run(world: World, image: str | Path | None, *argv: str, policy: Path | None = None,
        audit: Path | None = None, rootfs: Path | None = None, megabinary: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    opts = [] if policy is None else ["--policy", str(policy)]
    if audit is not None:
        opts += ["--audit-log", str(audit)]
    if rootfs is not None:
        opts += ["--rootfs", str(rootfs), "--megabinary", str(megabinary)]
    target = [] if image is None else [str(image if isinstance(image, Path) else
                                           world.images[image])]
    return subprocess.run([*KILN, "run", *opts, *target, "--", *argv], capture_output=True,
                          timeout=120, env=env)


def records(audit: Path) -> list[dict]:
    return [json.loads(line) for line in audit.read_text().splitlines()]


def assert_refused(got: subprocess.CompletedProcess, *fragments: str) -> str:
    err = got.stderr.decode()
    assert got.returncode == 2, err
    assert got.stdout == b""
    assert "error: refusing to run" in err and "\nhint: " in err, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err
    return err


# -- keys -----------------------------------------------------------------------------------------
def test_keygen_makes_a_private_key_only_its_owner_reads_and_never_replaces_one(world: World):
    private, public = world.keys / "trusted.key", world.keys / "trusted.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    before = private.read_bytes()
    got = _tool([*KILN, "keygen", "-o", str(world.keys), "--name", "trusted"])
    assert got.returncode == 2 and "already exists" in got.stderr and "Traceback" not in got.stderr
    assert private.read_bytes() == before
    # The printed key id is the BLAKE3 of the raw public key; OpenSSL reads both files.
    made = json.loads(_tool([*KILN, "keygen", "-o", str(world.base / "k2"), "--json"]).stdout)
    assert made["key_id"] == _key_id(Path(made["public_key"]))
    if shutil.which("openssl"):
        out = _tool(["openssl", "pkey", "-in", made["private_key"], "-pubout"])
        assert out.returncode == 0 and out.stdout == Path(made["public_key"]).read_text()


def test_the_signature_file_verifies_independently_of_kiln(world: World):
    """/.kiln/megabinary.sig read with cbor2 and checked with cryptography, as §9 says."""
    from cryptography.hazmat.primitives import serialization
    root = world.bundle("a-signed")
    sig = cbor2.loads((root / ".kiln/megabinary.sig").read_bytes())
    assert sig["version"] == 1 and len(sig["signature"]) == 64
    statement = cbor2.loads(sig["statement"])
    mb = read_megabinary(root / ".kiln/megabinary.kmb")
    index = next(s for s in mb.sections if s.kind == SectionKind.INDEX)
    raw_index = (root / ".kiln/megabinary.kmb").read_bytes()[index.offset:index.end]
    assert statement == {
        "megabinary_format": "2.0", "megabinary_digest": world.digests["a-signed"],
        "index_blake3": blake3.blake3(raw_index).digest(),
        "source_image": mb.metadata.source_image, "algorithm": "ed25519",
        "key_id": _key_id(world.keys / "trusted.pub")}
    key = serialization.load_pem_public_key((world.keys / "trusted.pub").read_bytes())
    key.verify(sig["signature"], b"kiln megabinary signature 1\x00" + sig["statement"])
    # Signing changes only the image, never the megabinary: the unsigned one is identical.
    assert world.digests["a-signed"] == world.digests["a-unsigned"]


# -- runs the policy accepts -------------------------------------------------------------------
def test_a_signed_image_runs_under_a_policy_requiring_signatures(world: World, tmp_path: Path):
    audit = tmp_path / "audit.jsonl"
    for prog in PROGRAMS:
        got = run(world, f"{prog}-signed", f"/bin/{prog}", policy=world.policy(), audit=audit)
        assert (got.stdout, got.returncode) == (world.native[prog].stdout,
                                                world.native[prog].returncode), got.stderr
    allowed = records(audit)
    assert [r["decision"] for r in allowed] == ["allowed", "allowed"]
    assert {r["key_id"] for r in allowed} == {_key_id(world.keys / "trusted.pub")}
    assert [r["digest"] for r in allowed] == [world.digests["a-signed"], world.digests["b-signed"]]


def test_an_openssl_key_signs_and_an_inline_key_is_trusted(world: World, tmp_path: Path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    key, pub = tmp_path / "ossl.key", tmp_path / "ossl.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    got = _tool([*RECOMPILE, str(world.base / "root-a"), "-o", str(tmp_path / "img"),
                 "--sign", str(key)])
    assert got.returncode == 0, got.stderr
    world.extra_images.append(tmp_path / "img")
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    import base64
    inline = base64.b64encode(der[-32:]).decode()      # the raw key ends the SPKI
    policy = world.policy("inline.json", trusted_keys=[{"name": "ossl", "public_key": inline}])
    got = run(world, tmp_path / "img", "/bin/a", policy=policy)
    assert got.stdout == world.native["a"].stdout, got.stderr
    assert_refused(run(world, "a-signed", "/bin/a", policy=policy), "does not trust")


def test_without_a_required_signature_unsigned_runs_and_a_bad_one_still_does_not(world, tmp_path):
    policy = world.policy("open.json", require_signature=False)
    assert run(world, "a-unsigned", "/bin/a", policy=policy).stdout == world.native["a"].stdout
    assert run(world, "a-stranger", "/bin/a", policy=policy).stdout == world.native["a"].stdout
    mb, _ = _copy(world, "a-signed", tmp_path)
    sig = mb.with_suffix(".sig")
    top = cbor2.loads(sig.read_bytes())
    top["signature"] = bytes([top["signature"][0] ^ 1]) + top["signature"][1:]
    sig.write_bytes(cbor2.dumps(top, canonical=True))
    got = run(world, None, "/bin/a", policy=policy, rootfs=world.bundle("a-signed"),
              megabinary=mb)
    assert_refused(got, "does not verify")


# -- refusals ------------------------------------------------------------------------------------
def test_an_unsigned_megabinary_is_refused_when_signatures_are_required(world, tmp_path):
    audit = tmp_path / "audit.jsonl"
    err = assert_refused(run(world, "a-unsigned", "/bin/a", policy=world.policy(), audit=audit),
                         "not signed", "--sign KEY")
    assert str(world.images["a-unsigned"]) in err
    (rec,) = records(audit)
    assert (rec["event"], rec["decision"], rec["reason"]) == ("run", "refused", "unsigned")
    assert rec["digest"] == world.digests["a-unsigned"]


def test_a_signature_by_an_untrusted_key_is_refused(world, tmp_path):
    audit = tmp_path / "audit.jsonl"
    assert_refused(run(world, "a-stranger", "/bin/a", policy=world.policy(), audit=audit),
                   _key_id(world.keys / "stranger.pub"), "does not trust", "trusted_keys")
    assert records(audit)[0]["reason"] == "untrusted-key"


def _copy(world: World, image: str, tmp: Path) -> tuple[Path, Path]:
    """The image's megabinary and signature copied to ``tmp`` (mb.kmb, mb.sig)."""
    root = world.bundle(image)
    mb = tmp / "mb.kmb"
    shutil.copyfile(root / ".kiln/megabinary.kmb", mb)
    if (root / ".kiln/megabinary.sig").exists():
        shutil.copyfile(root / ".kiln/megabinary.sig", tmp / "mb.sig")
    return mb, tmp / "mb.sig"


def _reseal(raw: bytearray, number: int) -> None:
    """Make a changed section consistent again, as an attacker would: its BLAKE3 in the
    section table, then the header checksum over header, table and names (§1.2 rule 5)."""
    import struct
    header_size, count, names = struct.unpack_from("<I4xII", raw, 12)
    at = header_size + SECTION_ENTRY_SIZE * number
    _, _, off, length = struct.unpack_from("<IIQQ", raw, at)
    raw[at + 32:at + 64] = blake3.blake3(bytes(raw[off:off + length])).digest()
    end = header_size + SECTION_ENTRY_SIZE * count + names
    raw[40:72] = bytes(32)
    raw[40:72] = blake3.blake3(bytes(raw[:end])).digest()


def test_a_megabinary_with_one_changed_byte_is_refused(world, tmp_path):
    """A byte of the program's compiled code: the hash checks refuse it; the same change with
    every hash fixed up (a valid megabinary, another digest): the signature refuses it."""
    from vkernel.engine import engine_fingerprint
    mb, _ = _copy(world, "a-signed", tmp_path)
    opened = read_megabinary(mb)
    unit = opened.index.units[0].blake3.hex()
    section = opened.aot_section(engine_fingerprint(), unit)
    opened.close()
    raw = bytearray(mb.read_bytes())
    raw[section.offset + section.length // 2] ^= 0x20
    mb.write_bytes(bytes(raw))
    root = world.bundle("a-signed")
    audit = tmp_path / "audit.jsonl"
    got = run(world, None, "/bin/a", policy=world.policy(), rootfs=root, megabinary=mb,
              audit=audit)
    assert got.returncode != 0 and got.stdout == b"" and b"BLAKE3" in got.stderr
    _reseal(raw, section.number)
    mb.write_bytes(bytes(raw))
    assert read_megabinary(mb).digest != world.digests["a-signed"]
    got = run(world, None, "/bin/a", policy=world.policy(), rootfs=root, megabinary=mb,
              audit=audit)
    assert_refused(got, "another megabinary", "megabinary_digest")
    assert records(audit)[-1]["reason"] == "signature-mismatch"


def test_a_signature_swapped_in_from_another_image_is_refused(world, tmp_path):
    mb, sig = _copy(world, "a-signed", tmp_path)
    shutil.copyfile(world.bundle("b-signed") / ".kiln/megabinary.sig", sig)
    got = run(world, None, "/bin/a", policy=world.policy(), rootfs=world.bundle("a-signed"),
              megabinary=mb)
    assert_refused(got, "the signature is for another megabinary",
                   world.digests["b-signed"], world.digests["a-signed"])


def test_deny_allow_and_the_kill_switch_refuse_with_an_audit_record(world, tmp_path):
    audit = tmp_path / "audit.jsonl"
    deny = world.policy("deny.json", deny=[world.digests["a-signed"]])
    assert_refused(run(world, "a-signed", "/bin/a", policy=deny, audit=audit), "deny list")
    assert run(world, "b-signed", "/bin/b", policy=deny).stdout == world.native["b"].stdout
    allow = world.policy("allow.json", allow=[world.digests["b-signed"]])
    assert_refused(run(world, "a-signed", "/bin/a", policy=allow, audit=audit), "allow list")
    kill = world.policy("kill.json", kill_switch=True)
    assert_refused(run(world, "b-signed", "/bin/b", policy=kill, audit=audit), "kill switch")
    # The same refusals through $KILN_POLICY and the policy's own audit log.
    own = tmp_path / "policy-audit.jsonl"
    kill_logged = world.policy("kill2.json", kill_switch=True, audit_log=str(own))
    env = dict(os.environ, KILN_POLICY=str(kill_logged))
    assert_refused(run(world, "a-signed", "/bin/a", env=env), "kill switch")
    got = [(r["decision"], r["reason"]) for r in records(audit) + records(own)]
    assert got == [("refused", "denied"), ("refused", "not-allowed"),
                   ("refused", "kill-switch"), ("refused", "kill-switch")]
    ok = subprocess.run([*KILN, "audit", "verify", str(audit)], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout.split(" (")[0]) == (0, "ok, 3 records")


BAD_POLICIES = [
    ("{not json", "not JSON"),
    ('{"version": 1, "require_signatures": true}', "require_signatures: unknown key"),
    ('{"version": 2}', "version: must be 1"),
    ('{"version": 1, "kill_switch": "yes"}', "kill_switch: expected true or false"),
    ('{"version": 1, "require_signature": true}', "trusted_keys is empty"),
    ('{"version": 1, "deny": ["sha256:abc"]}', "deny[0]"),
    ('{"version": 1, "kill_switch": false, "kill_switch": true}', "appears twice"),
    ('{"version": 1, "trusted_keys": [{"path": "missing.pub"}]}', "cannot read the public key"),
    ('{"version": 1, "trusted_keys": [{"public_key": "c2hvcnQ="}]}', "not an Ed25519 public key"),
    ('{"version": 1, "trusted_keys": [{"path": "trusted.key"}]}', "not a PEM public key"),
    ('[1, 2]', "expected a JSON object"),
]


def test_malformed_policies_are_clear_errors(world, tmp_path):
    for text, fragment in BAD_POLICIES:
        path = world.keys / "bad.json"                 # beside the keys: relative paths resolve
        path.write_text(text)
        got = run(world, "a-signed", "/bin/a", policy=path)
        err = got.stderr.decode()
        assert got.returncode == 2 and got.stdout == b"", (text, err)
        assert err.startswith(f"error: policy {path}") and fragment in err, (text, err)
        assert "\nhint: " in err and "Traceback" not in err, (text, err)
    got = run(world, "a-signed", "/bin/a", policy=tmp_path / "nowhere.json")
    assert got.returncode == 2 and b"does not exist" in got.stderr
    shared = world.policy("shared.json")
    shared.chmod(0o666)
    got = run(world, "a-signed", "/bin/a", policy=shared)
    assert got.returncode == 2 and b"writable by every user" in got.stderr
    assert b"hint: chmod o-w" in got.stderr


def _c(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


BAD_SIGNATURES = [
    (b"", "empty file"),
    (b"\x1c", "not valid CBOR"),
    (b"\x00" * 10, "bytes after its CBOR item"),
    (_c([1, 2]), "expected a map"),
    (_c({"version": 2, "statement": b"", "signature": b""}), "version 2"),
    (_c({"version": 1, "statement": _c({"algorithm": "rsa"}), "signature": bytes(64)}),
     "algorithm 'rsa'"),
    (_c({"version": 1, "statement": _c({}), "signature": bytes(64)}),
     "missing required key 'algorithm'"),
    (_c({"version": 1, "statement": _c({"algorithm": "ed25519"}), "signature": bytes(8)}),
     "an Ed25519 signature has 64"),
    (cbor2.dumps({"signature": bytes(64), "version": 1, "statement": b"\xa0"}), "not canonical"),
    (b"x" * 70000, "more than a signature file may have"),
]


def test_malformed_signature_files_are_clear_errors(world, tmp_path):
    audit = tmp_path / "audit.jsonl"
    mb, sig = _copy(world, "a-signed", tmp_path)
    for data, fragment in BAD_SIGNATURES:
        sig.write_bytes(data)
        got = run(world, None, "/bin/a", policy=world.policy(), rootfs=world.bundle("a-signed"),
                  megabinary=mb, audit=audit)
        assert_refused(got, str(sig), fragment)
    assert {r["reason"] for r in records(audit)} == {"signature-malformed"}
    assert len(records(audit)) == len(BAD_SIGNATURES)


def test_signature_reader_errors_are_typed(world):
    from formats.signature import MalformedSignature, UnsupportedSignature, read_signature
    good = (world.bundle("a-signed") / ".kiln/megabinary.sig").read_bytes()
    top = cbor2.loads(good)
    statement = cbor2.loads(top["statement"])
    with pytest.raises(MalformedSignature) as e:
        read_signature(cbor2.dumps(dict(top, statement=cbor2.dumps(
            dict(statement, key_id="ABC"), canonical=True)), canonical=True))
    assert e.value.where == "signature.statement.key_id"
    with pytest.raises(MalformedSignature) as e:
        read_signature(cbor2.dumps(dict(top, signature=b"short"), canonical=True))
    assert e.value.where == "signature.signature"
    with pytest.raises(UnsupportedSignature):
        read_signature(cbor2.dumps(dict(top, version=7), canonical=True))
    assert read_signature(good).statement.megabinary.digest == world.digests["a-signed"]


def test_cryptography_is_loaded_only_to_verify_a_signature_not_seen_before(world, tmp_path):
    if os.path.exists("/etc/kiln/policy.json"):
        pytest.skip("this machine has a policy in /etc/kiln")
    env = {k: v for k, v in os.environ.items() if k != "KILN_POLICY"}

    def imported(*opts: str, image: str = "a-stranger") -> set[str]:
        got = subprocess.run([sys.executable, "-X", "importtime", *KILN, "run", *opts,
                              str(world.images[image]), "--", "/bin/a"],
                             capture_output=True, timeout=120, env=env)
        assert got.returncode == 0 and got.stdout == world.native["a"].stdout, got.stderr[-500:]
        return {line.split("|")[-1].strip() for line in got.stderr.decode().splitlines()
                if line.startswith("import time:")}

    plain = imported()
    assert "vkernel.runtime" in plain and not any(m.startswith("cryptography") for m in plain)
    # A policy that trusts no key of this image: the signature is not verified either.
    open_policy = world.policy("open2.json", require_signature=False)
    assert not any(m.startswith("cryptography") for m in imported("--policy", str(open_policy)))
    # A signature by a trusted key is verified once; later runs find it in the private cache.
    env["KILN_CACHE"] = str(tmp_path / "cache")
    policy = ("--policy", str(world.policy()))
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in imported(*policy, image="a-signed")
    assert not any(m.startswith("cryptography") for m in imported(*policy, image="a-signed"))
    kept = [p.name for p in (tmp_path / "cache/verified").iterdir() if p.name.startswith("sig-")]
    assert len(kept) == 1


def test_the_run_opens_only_the_megabinary_the_policy_accepted(world, tmp_path):
    """check_megabinary (what kiln run and kiln-oci call) gives the digest; a run pinned to it
    refuses a megabinary that was replaced after the check."""
    from vkernel.audit import AuditLog
    from vkernel.errors import VkernelError
    from vkernel.runtime import RunSpec, Runtime
    from vkernel.trust import check_megabinary, load_policy
    mb, _ = _copy(world, "a-signed", tmp_path)
    audit = AuditLog(tmp_path / "audit.jsonl")
    decision = check_megabinary(load_policy(world.policy()), mb, audit)
    audit.close()
    assert decision.digest == world.digests["a-signed"]
    assert decision.signed_by == _key_id(world.keys / "trusted.pub") and decision.key_name == "ci"
    shutil.copyfile(world.bundle("b-signed") / ".kiln/megabinary.kmb", mb)   # swapped after
    spec = RunSpec(rootfs=world.bundle("a-signed"), megabinary=mb, argv=("/bin/a",),
                   megabinary_digest=decision.digest)
    with pytest.raises(VkernelError, match="changed after the trust check"):
        Runtime(spec)
