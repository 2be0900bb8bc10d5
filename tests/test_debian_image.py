"""A real Debian image (debootstrap minbase with python3 and more, two layers): inspect,
unpack, recompile every ELF.

The root filesystem is built by ``debootstrap --variant=minbase --include=...``
(cached by :func:`examples.debian.build.debootstrap_rootfs`; the session fixtures
in tests/conftest.py build and recompile it once); every expectation here is
computed from that tree or from real tools (``readelf``, ``umoci``,
``skopeo``), never typed in by hand.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import blake3
import pytest

from examples.debian.build import ADDED, EXCLUDED_PATTERN, WHITEOUTS
from formats.annotations import ANNOTATION_LAYER_ROLE, LAYER_ROLE_MEGABINARY, MEGABINARY_PATH
from formats.megabinary import read_megabinary
from recompiler.image import open_image

pytestmark = pytest.mark.slow

KILN = [sys.executable, "-m", "vkernel.cli"]
RECOMPILE = [sys.executable, "-m", "recompiler.cli"]
SUITE = "bookworm"
_ENV = {**os.environ, "LC_ALL": "C"}


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def source_tree(debian_tree: Path) -> Path:
    """The debootstrap tree the image was made from (built once, then cached)."""
    return debian_tree


@pytest.fixture(scope="module")
def image(debian_image: Path) -> Path:
    return debian_image


@pytest.fixture(scope="module")
def inventory(image: Path) -> dict:
    """``kiln inspect IMAGE --json``, run as a user runs it."""
    proc = subprocess.run([*KILN, "inspect", str(image), "--json"], capture_output=True,
                          text=True, env=_ENV)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _manifest(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    assert len(index["manifests"]) == 1
    return json.loads(_blob(layout, index["manifests"][0]["digest"]).read_bytes())


def _blob(layout: Path, digest: str) -> Path:
    algo, hexd = digest.split(":", 1)
    return layout / "blobs" / algo / hexd


# -- an independent view of the trees -------------------------------------------

def _elf_paths(root: Path) -> set[str]:
    """Guest paths of every regular file under ``root`` starting with \\x7fELF (no symlinks)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):          # never follows symlinks
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(p).st_mode):
                continue
            with open(p, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.add("/" + os.path.relpath(p, root))
    return found


def _entries(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, full mode (setuid bits too), content hash or link
    target or device numbers, and mtime for files and links (owners ignored)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(p, root)
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                out[rel] = ("file", mode, digest, int(st.st_mtime))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = "chr" if stat.S_ISCHR(st.st_mode) else "blk"
                out[rel] = (kind, mode, os.major(st.st_rdev), os.minor(st.st_rdev))
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = ("fifo", mode, 0, 0)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


def _expected_image_tree(source: Path) -> dict[str, tuple]:
    """What the image holds, from the debootstrap tree and the second layer's definition."""
    want = {k: v for k, v in _entries(source).items() if not EXCLUDED_PATTERN.match(k)}
    for victim in WHITEOUTS:
        for k in [k for k in want if k == victim or k.startswith(victim + "/")]:
            del want[k]
    for path, data in ADDED.items():
        want[path] = ("file", 0o644, hashlib.sha256(data).hexdigest(), 0)
    return want


def test_build_command_is_deterministic(image: Path, tmp_path: Path) -> None:
    """The command-line build of the same cached tree gives the same image, digest for digest."""
    proc = subprocess.run([sys.executable, "-m", "examples.debian.build", str(tmp_path / "again"),
                           "--suite", SUITE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again/index.json").read_bytes() == (image / "index.json").read_bytes()
    layers = _manifest(image)["layers"]
    assert len(layers) == 2 and layers[0]["size"] > 50 * 2**20 and layers[1]["size"] < 2**20


def test_base_layer_keeps_owners(image: Path, source_tree: Path) -> None:
    desc = _manifest(image)["layers"][0]
    with tarfile.open(_blob(image, desc["digest"])) as tf:
        member = tf.getmember("etc/shadow")
    assert member.gid == os.lstat(source_tree / "etc/shadow").st_gid != 0


# -- 1. kiln inspect lists every ELF --------------------------------------------

def test_inspect_lists_every_elf_of_the_tree(source_tree: Path, inventory: dict) -> None:
    scanned = _elf_paths(source_tree)
    assert len(scanned) > 500, "a minbase tree has hundreds of ELF files"
    victims = set(WHITEOUTS) & scanned
    assert victims, "the second layer deletes an ELF program"

    records = inventory["elves"] + inventory["skipped"]
    listed: set[str] = set()
    for rec in records:
        listed.add(rec["path"])
        listed.update(rec["aliases"])
    missing = sorted(scanned - victims - listed)
    assert not missing, f"ELF files of the tree that kiln inspect does not list: {missing[:20]}"
    assert not victims & listed, "a whited-out ELF is still listed"

    for rec in records:
        # A record's path is a regular ELF file of the tree; aliases are ELF files
        # (hard links, copies) or symbolic links in the tree.
        assert rec["path"] in scanned, rec["path"]
        for alias in rec["aliases"]:
            assert alias in scanned or os.path.islink(source_tree / alias.lstrip("/")), alias
        # The BLAKE3 is the file's, computed independently here.
        if rec.get("blake3"):
            data = (source_tree / rec["path"].lstrip("/")).read_bytes()
            assert blake3.blake3(data).hexdigest() == rec["blake3"], rec["path"]
    assert inventory["skipped"] == [], "every ELF of Debian amd64 is x86-64"


def _readelf(path: Path, *args: str) -> str:
    proc = subprocess.run(["readelf", "-W", *args, str(path)], capture_output=True,
                          text=True, env=_ENV)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _spread(items: list[dict], n: int) -> list[dict]:
    """``n`` items evenly spaced through the sorted list (deterministic, not cherry-picked)."""
    return [items[i * len(items) // n] for i in range(n)] if len(items) > n else items


def test_needed_and_interpreter_match_readelf(source_tree: Path, inventory: dict) -> None:
    elves = sorted(inventory["elves"], key=lambda r: r["path"])
    programs = [r for r in elves if r["kind"] in ("PIE", "EXEC") and r["linkage"] == "dynamic"]
    libraries = [r for r in elves if r["kind"] == "SHARED"]
    assert len(programs) > 100 and len(libraries) > 100
    by_path = {p: r for r in elves for p in (r["path"], *r["aliases"])}
    chosen = [by_path["/usr/bin/bash"], by_path["/usr/lib/x86_64-linux-gnu/libc.so.6"],
              *_spread(programs, 4), *_spread(libraries, 4)]
    assert len({r["path"] for r in chosen}) == 10

    for rec in chosen:
        host = source_tree / rec["path"].lstrip("/")
        dyn = _readelf(host, "-d")
        assert rec["needed"] == re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", dyn), \
            rec["path"]
        sonames = re.findall(r"\(SONAME\)\s+Library soname: \[(.*?)\]", dyn)
        assert rec["soname"] == (sonames[0] if sonames else None), rec["path"]
        interp = re.search(r"\[Requesting program interpreter: (.*?)\]", _readelf(host, "-l"))
        assert rec["interpreter"] == (interp.group(1) if interp else None), rec["path"]
        if rec["kind"] == "PIE":
            assert rec["interpreter"], f"{rec['path']}: a dynamic program has an interpreter"


# -- 2. the layers, as Kiln and umoci apply them --------------------------------

@pytest.fixture(scope="module")
def kiln_tree(image: Path, tmp_path_factory) -> dict[str, tuple]:
    """The image unpacked by Kiln, with what Kiln records instead of applying
    (device nodes, setuid bits) folded back in."""
    dest = tmp_path_factory.mktemp("kiln") / "rootfs"
    with open_image(image) as img:
        assert len(img.layers) == 2
        result = img.unpack(dest)
    tree = _entries(dest)
    for path, meta in result.metadata.items():
        if path in tree and tree[path][0] in ("file", "dir"):
            tree[path] = (tree[path][0], meta.mode & 0o7777, *tree[path][2:])
    for sf in result.special_files:
        assert sf.path not in tree, f"{sf.path}: a device node was created on the host"
        tree[sf.path] = (sf.kind, sf.mode & 0o7777, sf.major, sf.minor)
    return tree


@pytest.fixture(scope="module")
def umoci_tree(image: Path, tmp_path_factory) -> dict[str, tuple]:
    bundle = tmp_path_factory.mktemp("umoci") / "bundle"
    proc = subprocess.run(["umoci", "unpack", "--image", f"{image}:latest", str(bundle)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return _entries(bundle / "rootfs")


def test_whiteouts_and_added_files_took_effect(kiln_tree: dict, umoci_tree: dict,
                                               source_tree: Path) -> None:
    for victim in WHITEOUTS:
        assert os.path.lexists(source_tree / victim.lstrip("/")), victim
        assert victim not in kiln_tree, f"{victim} survived its whiteout (Kiln)"
        assert victim not in umoci_tree, f"{victim} survived its whiteout (umoci)"
    for path, data in ADDED.items():
        assert kiln_tree[path][2] == hashlib.sha256(data).hexdigest(), path
    assert (source_tree / "etc/hostname").read_bytes() != ADDED["/etc/hostname"]
    assert not [p for p in kiln_tree if os.path.basename(p).startswith(".wh.")]


def test_kiln_unpack_equals_umoci_unpack(kiln_tree: dict, umoci_tree: dict) -> None:
    assert sorted(kiln_tree) == sorted(umoci_tree)
    differ = [(p, kiln_tree[p], umoci_tree[p]) for p in sorted(kiln_tree)
              if kiln_tree[p] != umoci_tree[p]]
    assert not differ, f"{len(differ)} entries differ, first: {differ[:5]}"
    # The real content is there: devices, setuid programs, hard-linked perl.
    assert kiln_tree["/dev/null"][0] == "chr"
    assert kiln_tree["/usr/bin/su"][1] & stat.S_ISUID


def test_image_holds_the_debootstrap_tree(kiln_tree: dict, source_tree: Path) -> None:
    """Layer 1 plus layer 2, unpacked, is the debootstrap tree with layer 2's changes."""
    want = _expected_image_tree(source_tree)
    # The image's directories that the second layer rewrites keep the tree's modes.
    assert sorted(kiln_tree) == sorted(want)
    differ = [(p, kiln_tree[p], want[p]) for p in sorted(want) if kiln_tree[p] != want[p]]
    assert not differ, f"{len(differ)} entries differ, first: {differ[:5]}"


# -- 3. recompile a real distribution image -------------------------------------

@pytest.fixture(scope="module")
def recompiled(debian_recompiled: tuple[Path, dict]) -> tuple[Path, dict]:
    return debian_recompiled


def test_recompile_reports_every_elf(recompiled: tuple[Path, dict], inventory: dict) -> None:
    """Every ELF of the image is recompiled: programs static and dynamic, PIE or not, every
    shared object, ld.so itself."""
    _, report = recompiled
    units = {u["path"]: u for u in report["units"]}
    assert set(units) == {r["path"] for r in inventory["elves"]}
    for rec in inventory["elves"]:
        unit = units[rec["path"]]
        assert unit["blake3"] == rec["blake3"]
        assert unit["status"] in ("recompiled", "cached"), unit
    assert report["elves_skipped"] == 0
    kinds = {(r["kind"], r["linkage"]) for r in inventory["elves"]}
    # shared objects, non-PIE dynamic programs (python3.11), PIE ones, static-pie (ldconfig)
    assert {("SHARED", "dynamic"), ("EXEC", "dynamic"), ("PIE", "dynamic"), ("PIE", "static")} <= kinds
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6" in units and "/usr/bin/python3.11" in units


def test_recompiled_image_keeps_source_layers(recompiled: tuple[Path, dict], image: Path,
                                              tmp_path: Path) -> None:
    out, report = recompiled
    proc = subprocess.run(["skopeo", "inspect", f"oci:{out}:latest"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    src_info = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{image}:latest"],
                                         capture_output=True, text=True, check=True).stdout)
    assert info["Layers"][:2] == src_info["Layers"] and len(info["Layers"]) == 3

    src_manifest, manifest = _manifest(image), _manifest(out)
    assert manifest["layers"][:2] == src_manifest["layers"]
    for desc in src_manifest["layers"]:
        a, b = _blob(image, desc["digest"]), _blob(out, desc["digest"])
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert hashlib.file_digest(fa, "sha256").digest() == \
                hashlib.file_digest(fb, "sha256").digest()
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{out}:latest"],
                                       capture_output=True, text=True, check=True).stdout)
    src_config = json.loads(_blob(image, src_manifest["config"]["digest"]).read_bytes())
    assert config["rootfs"]["diff_ids"][:2] == src_config["rootfs"]["diff_ids"]

    # The third layer is the megabinary; its index has ldconfig (static) and bash (dynamic).
    top = manifest["layers"][2]
    assert top["annotations"][ANNOTATION_LAYER_ROLE] == LAYER_ROLE_MEGABINARY
    with tarfile.open(_blob(out, top["digest"])) as tf:
        data = tf.extractfile(MEGABINARY_PATH.lstrip("/")).read()
    (tmp_path / "mb.kmb").write_bytes(data)
    units = {u["path"]: u for u in report["units"]}
    with read_megabinary(tmp_path / "mb.kmb") as mb:
        mb.validate()
        assert mb.digest == report["megabinary_digest"]
        ldconfig = mb.index.lookup(bytes.fromhex(units["/usr/sbin/ldconfig"]["blake3"]))
        assert ldconfig is not None and "/usr/sbin/ldconfig" in ldconfig.paths
        bash = mb.index.lookup(bytes.fromhex(units["/usr/bin/bash"]["blake3"]))
        assert bash is not None and bash.pic
