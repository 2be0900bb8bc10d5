"""Seeded mutation fuzzing of image intake: JSON documents and tar headers.

Mutants come from the busybox example image's own documents and from a small
layer, with digests, sizes and header checksums fixed up so that a mutation
gets past the blob checks to the code under test. Each mutant goes through
what ``kiln inspect`` and ``recompile`` do with an image (open, unpack, take
the inventory, write the output image): it must either work or fail with
Kiln's own error, naming the image, and a failed unpack must leave nothing.

The seeds are fixed, so a failure names the mutant that reproduces it. For a
longer run set KILN_FUZZ_JSON and KILN_FUZZ_TAR (default 3000 and 1500).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import random
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from examples.busybox.build import build_busybox_image
from formats.errors import KilnError
from recompiler.image import FORMATS, open_image, write_image
from formats.trees import remove_tree
from recompiler.inventory import take_inventory
from tests.ocitools import (DOCUMENTS, FIELDS, ImageDocs, base256, fix_checksum, header,
                            memory_scratch, pad, pax_block, pax_record, raw_tar, sha256,
                            tar_of, write_tar)

JSON_CASES = int(os.environ.get("KILN_FUZZ_JSON", 3000))
TAR_CASES = int(os.environ.get("KILN_FUZZ_TAR", 1500))


@pytest.fixture
def work(tmp_path) -> Iterator[Path]:
    """Where mutants are written and unpacked (see :func:`memory_scratch`): they are parsed,
    not kept, and on this project's disks unlink and rmdir took most of the time."""
    with memory_scratch(tmp_path, "kiln-fuzz-") as path:
        yield path


@pytest.fixture(scope="module")
def seed_docs(tmp_path_factory) -> ImageDocs:
    """The busybox example's config, manifest and index, over a small layer of every kind."""
    layout = build_busybox_image(tmp_path_factory.mktemp("bb") / "layout")
    index = json.loads((layout / "index.json").read_bytes())
    blob = lambda desc: json.loads(  # noqa: E731
        (layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes())
    manifest = blob(index["manifests"][0])
    config = blob(manifest["config"])
    docs = ImageDocs.of([seed_layer()], config)
    docs.manifest = {k: v for k, v in manifest.items() if k not in ("config", "layers")}
    docs.index = {k: v for k, v in index.items() if k != "manifests"}
    return docs


def seed_layer() -> bytes:
    """A layer with a directory, files, links, a device, a whiteout and pax records."""
    parts = [bytes(header("etc", tarfile.DIRTYPE, mode=b"0000755")),
             bytes(header("etc/passwd", length=5)), pad(b"root\n"),
             pax_block(pax_record("mtime", "1600000000.5") + pax_record("uid", "1000")),
             bytes(header("bin/busybox", length=4, mode=b"0004755")), pad(b"\x7fELF"),
             bytes(header("bin/sh", tarfile.SYMTYPE, target="busybox")),
             bytes(header("bin/ash", tarfile.LNKTYPE, target="bin/busybox")),
             bytes(header("dev/null", tarfile.CHRTYPE, devmajor=b"0000001", devminor=b"0000003")),
             bytes(header("tmp/.wh.gone")),
             pax_block(pax_record("path", "usr/share/" + "long-name-" * 20)),
             bytes(header("short", length=3)), pad(b"doc")]
    return raw_tar(*parts)


# -- JSON documents -------------------------------------------------------------

def raw_value(rng: random.Random) -> str:
    """JSON text (or near-JSON) that parsers have trouble with."""
    depth = rng.choice((2, 99, 100, 101, 1000, 5000, 50000))
    digits = rng.choice((19, 20, 21, 4300, 4301, 5000, 100000))
    return rng.choice([
        "[" * depth + "]" * depth, '{"k":' * depth + "0" + "}" * depth, "[" * depth,
        "9" * digits, "-" + "9" * digits, "0." + "1" * digits, "1" + "0" * digits + ".5",
        str(1 << 63), str((1 << 64) - 1), str(1 << 64), str(-(1 << 63) - 1),
        "1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "-0", "1.0", "2",
        "{}", "[]", "null", "true", "false", '""', '"x"', '"\\u0000"', '"\\ud800"',
        '"\\udfff\\ud800"', '"' + "a" * 100000 + '"', "[" + ",".join(["1"] * 2000) + "]",
        '"sha256:' + "0" * 64 + '"', '"../../etc/passwd"',
        '"application/vnd.oci.image.index.v1+json"', '{"mediaType": {}, "digest": [], "size": -1}',
    ])


def _nodes(doc: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, (*path, i))
    return out


def mutate_json(rng: random.Random, data: bytes) -> bytes:
    """One mutant of a JSON document: a value replaced, a key added or removed, or bytes."""
    if rng.random() < 0.2:                              # bytes: flip, overwrite, cut, insert
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(buf) + 1)
            op = rng.random()
            if op < 0.3 and pos < len(buf):
                buf[pos] ^= 1 << rng.randrange(8)
            elif op < 0.6 and pos < len(buf):
                buf[pos] = rng.choice(b'{}[]",:\\0-9e \x00\xff')
            elif op < 0.8:
                del buf[pos:]
            else:
                buf[pos:pos] = rng.choice((b"\xed\xa0\x80", b"\xff", b"[", b"{", b"\\u"))
        return bytes(buf)
    doc = json.loads(data)
    for _ in range(rng.randint(1, 2)):
        path = rng.choice(_nodes(doc))
        parent, key = None, None
        node = doc
        for step in path:
            parent, key, node = node, step, node[step]
        op = rng.random()
        if op < 0.15 and parent is not None:
            del parent[key]
        elif op < 0.3 and isinstance(node, dict):
            node[rng.choice(("mediaType", "size", "digest", "x", "schemaVersion", "Env"))] = \
                "@@RAW@@"
        elif parent is not None:
            parent[key] = "@@RAW@@"
        else:
            doc = "@@RAW@@"
    text = json.dumps(doc)
    while '"@@RAW@@"' in text:
        text = text.replace('"@@RAW@@"', raw_value(rng), 1)
    return text.encode("utf-8", "surrogatepass")


# -- tar headers ----------------------------------------------------------------

def _numeric(rng: random.Random, width: int) -> bytes:
    return rng.choice([
        base256(rng.choice((-1, -5, -(1 << 40), 1 << 40, 1 << 50)), width),
        base256((1 << (8 * width - 8)) - 1, width),       # the largest the field holds
        b"7" * (width - 1), b"-5", b"0" * width, b"9999", b" ", b"\x00", b"\xff" * width,
        bytes(rng.randrange(256) for _ in range(width)), b"",
    ])


PAX_KEYS = ("path", "linkpath", "size", "mtime", "atime", "uid", "gid", "uname", "gname",
            "GNU.sparse.size", "GNU.sparse.realsize", "GNU.sparse.map", "GNU.sparse.name",
            "hdrcharset", "comment")
PAX_VALUES = ("-5", "1e400", "-1e400", "nan", "inf", "0x10", "1.5", "", "9" * 5000, "a\0b",
              "/abs", "../escape", "x/" * 50 + "f", "\udcff", "18446744073709551616", "BINARY")


def mutate_tar(rng: random.Random, tar: bytes) -> bytes:
    """One mutant of a tar: header fields overwritten (checksum fixed, mostly), pax records
    added, extended headers chained, or bytes damaged."""
    data = bytearray(tar)
    heads = [m.offset for m in tarfile.open(fileobj=io.BytesIO(tar)).getmembers()]
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.5:                                    # one header field
            at = rng.choice(heads)
            name = rng.choice(list(FIELDS))
            off, width = FIELDS[name]
            if name in ("mode", "uid", "gid", "size", "mtime", "devmajor", "devminor"):
                raw = _numeric(rng, width)
            elif name == "typeflag":
                raw = bytes([rng.choice(b"0123456789xgLKSAV\x00")])
            else:
                raw = rng.choice((b"", b"\x00", b"a\x00b", b"../x", b"/abs", b"\xff\xfe",
                                  bytes(rng.randrange(256) for _ in range(width))))
            block = bytearray(data[at:at + 512])
            block[off:off + width] = raw.ljust(width, b"\0")[:width]
            if rng.random() < 0.9:
                fix_checksum(block)
            data[at:at + 512] = block
        elif op < 0.8:                                  # pax records before a member
            at = rng.choice(heads)
            records = b"".join(pax_record(rng.choice(PAX_KEYS), rng.choice(PAX_VALUES))
                               for _ in range(rng.randint(1, 3)))
            if rng.random() < 0.1:
                records = b"9" * rng.choice((20, 5000)) + b" comment=x\n"
            kind = tarfile.XGLTYPE if rng.random() < 0.1 else tarfile.XHDTYPE
            data[at:at] = pax_block(records, kind)
        elif op < 0.85:                                 # a chain of extended headers
            at = rng.choice(heads)
            block = pax_block(pax_record("comment", "x")) if rng.random() < 0.5 else \
                bytes(header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 2)) + pad(b"n\0")
            data[at:at] = block * rng.choice((10, 1200))        # 1200: past the recursion limit
        else:                                           # anywhere: bytes, or cut short
            pos = rng.randrange(len(data))
            if rng.random() < 0.3:
                del data[pos:]
            else:
                data[pos] = rng.randrange(256)
        heads = [h for h in heads if h < len(data)] or [0]
    return bytes(data)


# -- running a mutant -------------------------------------------------------------

def run_intake(image: Path, work: Path, fmt: str) -> str:
    """What kiln inspect and recompile do with ``image``; "ok" or the error's message."""
    dest, out = work / "rootfs", work / "out"
    unpacked = False
    try:
        with open_image(image) as src:
            src.unpack(dest)
            unpacked = True
            take_inventory(dest)
            write_image(src, out, fmt=fmt)
    except KilnError as err:
        message = str(err)
        assert message.startswith((f"{image}: ", f"{dest}: ", f"{out}: ")), message
        assert unpacked or not dest.exists(), f"a failed unpack left {dest}"
        assert not out.exists()
        return message
    finally:
        for path in (dest, out):
            if path.exists() or path.is_symlink():
                remove_tree(path)
    return "ok"


class Mutants:
    """Runs mutants one after another in one work directory, and tallies the outcomes."""

    def __init__(self, work: Path, kind: str, seed: int) -> None:
        self.work, self.kind, self.seed = work, kind, seed
        self.image_dir = work / "img"
        self.outcomes: dict[str, int] = {}
        self.start = time.monotonic()

    def run(self, i: int, write: Callable[[Path], Path], fmt: str) -> None:
        """Write mutant ``i`` with ``write(path)`` and put it through intake."""
        for name in ("index.json", "oci-layout", "blobs/sha256"):
            path = self.image_dir / name
            if path.is_dir():
                for blob in path.iterdir():
                    blob.unlink()
            elif path.exists():
                path.unlink()
        (self.work / "img.tar").unlink(missing_ok=True)
        image = write(self.image_dir)
        began = time.monotonic()
        try:
            message = run_intake(image, self.work, fmt)
        except Exception as err:                        # noqa: BLE001 - the test's verdict
            pytest.fail(f"{self.kind} mutant {i} of random.Random({self.seed}): "
                        f"{type(err).__name__}: {err}")
        took = time.monotonic() - began
        assert took < 10, f"{self.kind} mutant {i} of random.Random({self.seed}) took {took:.0f}s"
        outcome = "ok" if message == "ok" else _kind_of(message)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def report(self, count: int) -> dict[str, int]:
        print(f"{count} {self.kind} mutants in {time.monotonic() - self.start:.1f}s: "
              f"{dict(sorted(self.outcomes.items()))}")
        return self.outcomes


@pytest.mark.timeout(600)      # a mutant that hangs intake fails the test instead of stalling it
def test_json_documents_give_kiln_errors_only(seed_docs, work):
    seed = 20261205
    rng = random.Random(seed)
    runs = Mutants(work, "JSON", seed)
    for i in range(JSON_CASES):
        which = rng.choice(DOCUMENTS)
        edit = lambda doc, data: mutate_json(rng, data) if doc == which else data  # noqa: E731
        if which == "manifest.json":
            write = lambda d: write_tar(d.with_suffix(".tar"),  # noqa: E731
                                        seed_docs.docker_members(edit))
        else:
            write = lambda d: seed_docs.write_oci(d, edit)  # noqa: E731
        runs.run(i, write, rng.choice(FORMATS))
    outcomes = runs.report(JSON_CASES)
    # the mutants reach every defence, and some get through whole
    for needed in ("ok", "nested", "digits", "number", "surrogate", "not valid JSON", "type"):
        assert outcomes.get(needed, 0) >= 10, outcomes


@pytest.mark.timeout(600)
def test_tar_headers_give_kiln_errors_only(seed_docs, work):
    seed = 7130
    rng = random.Random(seed)
    runs = Mutants(work, "tar", seed)
    save = ImageDocs.of([seed_layer()], seed_docs.config).docker_members()
    for i in range(TAR_CASES):
        where = rng.random()
        if where < 0.2:                                 # the headers of a docker save itself
            data = mutate_tar(rng, tar_of(save))
            write = lambda d: write_bytes(d.with_suffix(".tar"), data)  # noqa: E731
        else:                                           # the headers of a layer
            tar = mutate_tar(rng, seed_layer())
            layer = gzip.compress(tar, mtime=0) if rng.random() < 0.2 else tar
            docs = ImageDocs.of([layer], seed_docs.config)
            docs.config["rootfs"]["diff_ids"] = [sha256(tar)]
            if where < 0.35:                            # in a docker save, read in place
                write = lambda d: write_tar(d.with_suffix(".tar"),  # noqa: E731
                                            docs.docker_members())
            else:
                write = docs.write_oci  # noqa: E731
        runs.run(i, write, rng.choice(FORMATS))
    outcomes = runs.report(TAR_CASES)
    for needed in ("ok", "size", "mtime", "NUL", "id", "sparse", "tar header", "corrupt tar",
                   "archive"):
        assert outcomes.get(needed, 0) >= 10, outcomes


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _kind_of(message: str) -> str:
    """Which defence an error message comes from (for the coverage check)."""
    for needle, kind in (("nested more than", "nested"), ("digits", "digits"),
                         ("surrogate", "surrogate"), ("number", "number"),
                         ("out of range", "number"),
                         ("not valid JSON", "not valid JSON"), ("must be", "type"),
                         ("got an", "type"), ("'size'", "size"), ("'mtime'", "mtime"),
                         ("NUL byte", "NUL"), ("Linux id", "id"), ("device number", "device"),
                         ("sparse file", "sparse"), ("not a readable tar archive", "archive"),
                         ("the archive ends inside", "archive"),
                         ("a tar header cannot be read", "tar header"),
                         ("corrupt tar", "corrupt tar"), ("not a tar", "not a tar")):
        if needle in message:
            return kind
    return "other"
