"""Image intake: every input kind, platforms, layers, whiteouts, links, limits.

Inputs come from real tools (skopeo converting the busybox example image, umoci
as the reference unpacker) and from hand-built tars (tests/ocitools.py).
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from examples.busybox.build import build_busybox_image
from recompiler.image import (BlobError, ImageKind, LimitExceededError, Limits,
                              MalformedImageError, NotAnImageError, PlatformNotFoundError,
                              open_image)
from tests.ocitools import (Layout, chrdev, compress, dir_, docker_archive, fifo, hard,
                            layered_image, opaque, reg, sha256, single_layer_image, skopeo,
                            sym, tar_bytes, tree, umoci_unpack, whiteout)


@pytest.fixture(scope="module")
def bb(tmp_path_factory) -> Path:
    """The busybox example image as an OCI layout (tag latest)."""
    return build_busybox_image(tmp_path_factory.mktemp("bb") / "layout")


@pytest.fixture(scope="module")
def bb_reference(bb, tmp_path_factory) -> dict:
    """The busybox image's rootfs as umoci unpacks it."""
    return tree(umoci_unpack(bb, "latest", tmp_path_factory.mktemp("ref") / "bundle"))


@pytest.mark.parametrize("how", ["oci-archive", "docker-archive", "oci-gzip", "oci-zstd"])
def test_skopeo_converted_inputs_unpack_like_umoci(bb, bb_reference, tmp_path, how):
    if how == "oci-archive":
        src = tmp_path / "img.tar"
        skopeo("copy", "-q", f"oci:{bb}:latest", f"oci-archive:{src}:latest")
        kind = ImageKind.OCI_ARCHIVE
    elif how == "docker-archive":
        src = tmp_path / "img.tar"
        skopeo("copy", "-q", f"oci:{bb}:latest", f"docker-archive:{src}:kiln/bb:v1")
        kind = ImageKind.DOCKER_ARCHIVE
    else:
        src = tmp_path / "layout"
        fmt = how.split("-")[1]
        skopeo("copy", "-q", "--dest-compress", "--dest-compress-format", fmt,
               f"oci:{bb}:latest", f"oci:{src}:latest")
        kind = ImageKind.OCI_LAYOUT
    with open_image(src) as img:
        assert img.kind is kind
        assert img.config.cmd == ("/bin/sh",)
        assert img.config.working_dir == "/"
        assert any(e.startswith("PATH=") for e in img.config.env)
        assert img.config.labels["org.opencontainers.image.licenses"] == "GPL-2.0-only"
        res = img.unpack(tmp_path / "root")
    assert tree(tmp_path / "root") == bb_reference
    assert res.bytes_written == (tmp_path / "root/bin/busybox").stat().st_size + \
        sum((tmp_path / "root" / p.lstrip("/")).stat().st_size
            for p, v in bb_reference.items() if v[0] == "file" and p != "/bin/busybox")


def test_docker_archive_ref_selects_by_repo_tag(bb, tmp_path):
    src = tmp_path / "img.tar"
    skopeo("copy", "-q", f"oci:{bb}:latest", f"docker-archive:{src}:kiln/bb:v1")
    with open_image(src, ref="kiln/bb:v1") as img:
        assert img.ref.endswith("kiln/bb:v1")
    with pytest.raises(PlatformNotFoundError, match="no image tagged 'v2'"):
        open_image(src, ref="v2")


@pytest.mark.parametrize("old_style", [False, True])
def test_hand_made_docker_save_both_layouts(tmp_path, old_style):
    layers = [tar_bytes([reg("etc/a", b"one")]), tar_bytes([reg("etc/b", b"two")])]
    src = docker_archive(tmp_path / "save.tar", layers, old_style=old_style,
                         config={"User": "1000:1000", "WorkingDir": "/srv",
                                 "Entrypoint": ["/bin/app"], "Labels": {"k": "v"}})
    with open_image(src) as img:
        assert img.kind is ImageKind.DOCKER_ARCHIVE
        assert img.config.entrypoint == ("/bin/app",)
        assert img.config.user == "1000:1000"
        assert img.config.working_dir == "/srv"
        assert dict(img.config.labels) == {"k": "v"}
        assert [ly.diff_id for ly in img.layers] == [sha256(t) for t in layers]
        img.unpack(tmp_path / "root")
    assert (tmp_path / "root/etc/a").read_bytes() == b"one"
    assert (tmp_path / "root/etc/b").read_bytes() == b"two"


def test_unpacked_docker_save_directory(tmp_path):
    import tarfile
    src = docker_archive(tmp_path / "save.tar", [tar_bytes([reg("x", b"1")])])
    with tarfile.open(src) as tf:
        tf.extractall(tmp_path / "dir", filter="data")
    with open_image(tmp_path / "dir") as img:
        assert img.kind is ImageKind.DOCKER_DIRECTORY
        img.unpack(tmp_path / "root")
    assert (tmp_path / "root/x").read_bytes() == b"1"


def test_rootfs_directory_gets_default_config_and_is_copied(tmp_path):
    src = tmp_path / "rootfs"
    (src / "bin").mkdir(parents=True)
    (src / "bin/tool").write_bytes(b"\x7fELF...")
    (src / "bin/tool").chmod(0o755)
    os.symlink("tool", src / "bin/alias")
    os.link(src / "bin/tool", src / "bin/hard")
    os.mkfifo(src / "pipe")
    with open_image(src) as img:
        assert img.kind is ImageKind.ROOTFS
        assert img.layers == ()
        assert img.config.working_dir == "/"
        assert img.config.env[0].startswith("PATH=")
        assert str(img.config.platform) == "linux/amd64"
        res = img.unpack(tmp_path / "root")
    root = tmp_path / "root"
    assert (root / "bin/tool").read_bytes() == b"\x7fELF..."
    assert os.readlink(root / "bin/alias") == "tool"
    assert (root / "bin/hard").stat().st_ino == (root / "bin/tool").stat().st_ino
    assert not (root / "pipe").exists()
    assert [(s.path, s.kind) for s in res.special_files] == [("/pipe", "fifo")]


def _multi(tmp_path: Path, nested: bool) -> Path:
    lay = Layout(tmp_path / "multi")
    amd = lay.image([tar_bytes([reg("arch", b"amd64")])], arch="amd64")
    arm = lay.image([tar_bytes([reg("arch", b"arm64")])], arch="arm64", variant="v8")
    s390 = lay.image([tar_bytes([reg("arch", b"s390x")])], arch="s390x")
    att = lay.blob(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                   b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
                   b'"digest":"sha256:' + b"0" * 64 + b'","size":2},"layers":[]}',
                   "application/vnd.oci.image.manifest.v1+json",
                   platform={"architecture": "unknown", "os": "unknown"},
                   annotations={"vnd.docker.reference.type": "attestation-manifest"})
    if nested:
        inner = lay.sub_index([arm, s390])
        lay.add(lay.sub_index([amd, inner, att]))
    else:
        lay.add(lay.sub_index([amd, arm, s390, att]))
    return lay.root


@pytest.mark.parametrize("nested", [False, True])
def test_multi_platform_index_selection(tmp_path, nested):
    src = _multi(tmp_path, nested)
    for plat, want in [(None, b"amd64"), ("linux/arm64", b"arm64"),
                       ("linux/arm64/v8", b"arm64"), ("linux/s390x", b"s390x")]:
        dest = tmp_path / f"root-{want.decode()}-{plat is None}-{plat}".replace("/", "_")
        with open_image(src, platform=plat) as img:
            img.unpack(dest)
        assert (dest / "arch").read_bytes() == want
    with pytest.raises(PlatformNotFoundError) as err:
        open_image(src, platform="linux/riscv64")
    assert "linux/riscv64" in str(err.value)
    assert err.value.available == ["linux/amd64", "linux/arm64/v8", "linux/s390x"]


def test_tag_selection_in_layout(tmp_path):
    lay = Layout(tmp_path / "tags")
    lay.add(lay.image([tar_bytes([reg("v", b"1")])]), tag="one")
    lay.add(lay.image([tar_bytes([reg("v", b"2")])]), tag="two")
    with open_image(lay.root, ref="two") as img:
        img.unpack(tmp_path / "r2")
    assert (tmp_path / "r2/v").read_bytes() == b"2"
    with pytest.raises(PlatformNotFoundError, match="tags: one, two"):
        open_image(lay.root)                    # ambiguous without a tag
    with pytest.raises(PlatformNotFoundError, match="tags present: one, two"):
        open_image(lay.root, ref="three")


def test_whiteouts_match_umoci(tmp_path):
    lower = [dir_("a"), reg("a/x", b"x"), reg("a/y", b"y"), dir_("d"), reg("d/1", b"1"),
             dir_("d/sub"), reg("d/sub/2", b"2"), reg("keep", b"k"), dir_("gone"),
             reg("gone/f", b"f")]
    upper = [whiteout("a", "x"), reg("d/new", b"n"), opaque("d"), dir_("d/sub"),
             reg("d/sub/3", b"3"), whiteout("", "gone"), reg("a/z", b"z"), whiteout("a", "z")]
    lay = layered_image(tmp_path / "wh", [lower, upper])
    with open_image(lay.root) as img:
        img.unpack(tmp_path / "ours")
    ours = tree(tmp_path / "ours")
    ref = tree(umoci_unpack(lay.root, "latest", tmp_path / "bundle"))
    assert ours == ref
    # Spelled out: whiteouts hide lower layers only; opaque keeps this layer's entries.
    assert set(ours) == {"/a", "/a/y", "/a/z", "/d", "/d/new", "/d/sub", "/d/sub/3", "/keep"}


def test_links_modes_mtimes_specials_and_owners(tmp_path):
    members = [dir_("bin", 0o755, mtime=1000), reg("bin/prog", b"P", 0o4755, mtime=2000),
               hard("bin/prog2", "bin/prog"), sym("bin/abs", "/bin/prog"),
               sym("bin/rel", "prog"), sym("bin/dangling", "/nonexistent/x"),
               reg("home/u/f", b"u", 0o600, uid=1000, gid=1000),
               dir_("dev"), chrdev("dev/null", 1, 3), fifo("run.fifo"),
               dir_("tmp", 0o1777)]
    lay = single_layer_image(tmp_path / "img", members)
    with open_image(lay.root) as img:
        res = img.unpack(tmp_path / "root")
    root = tmp_path / "root"
    st = (root / "bin/prog").stat()
    assert stat.S_IMODE(st.st_mode) == 0o755            # setuid never set on the host
    assert st.st_mtime == 2000
    assert (root / "bin/prog2").stat().st_ino == st.st_ino
    assert os.readlink(root / "bin/abs") == "/bin/prog"
    assert os.readlink(root / "bin/rel") == "prog"
    assert os.readlink(root / "bin/dangling") == "/nonexistent/x"
    assert (root / "bin").stat().st_mtime == 1000
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert (root / "home/u/f").stat().st_uid == 0        # not chowned unless asked
    assert not (root / "dev/null").exists() and not (root / "run.fifo").exists()
    assert [(s.path, s.kind, s.major, s.minor) for s in res.special_files] == \
        [("/dev/null", "chr", 1, 3), ("/run.fifo", "fifo", 0, 0)]
    assert res.metadata["/bin/prog"].mode == 0o4755
    assert res.metadata["/home/u/f"].uid == 1000


def test_chown_applies_owners_when_asked(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lay = single_layer_image(tmp_path / "img", [reg("f", b"x", uid=1234, gid=99)])
    with open_image(lay.root) as img:
        img.unpack(tmp_path / "root", chown=True)
    st = (tmp_path / "root/f").stat()
    assert (st.st_uid, st.st_gid) == (1234, 99)


def test_compression_detected_by_magic_when_media_type_is_wrong(tmp_path):
    lay = Layout(tmp_path / "img")
    tar = tar_bytes([reg("f", b"data")])
    lay.add(lay.image([tar], compression="zstd",
                      media_types=["application/vnd.oci.image.layer.v1.tar+gzip"]))
    with open_image(lay.root) as img:
        img.unpack(tmp_path / "root")
    assert (tmp_path / "root/f").read_bytes() == b"data"


def test_sha512_digests_are_verified(tmp_path):
    lay = Layout(tmp_path / "img")
    tar = tar_bytes([reg("f", b"512")])
    ldesc = lay.blob(compress(tar, "gzip"), "application/vnd.oci.image.layer.v1.tar+gzip",
                     algo="sha512")
    cfg = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                              "diff_ids": [sha256(tar)]}}
    cdesc = lay.blob(json.dumps(cfg).encode(), "application/vnd.oci.image.config.v1+json")
    mdesc = lay.blob(json.dumps({"schemaVersion": 2, "config": cdesc,
                                 "layers": [ldesc]}).encode(),
                     "application/vnd.oci.image.manifest.v1+json")
    lay.add(mdesc)
    with open_image(lay.root) as img:
        img.unpack(tmp_path / "root")
    assert (tmp_path / "root/f").read_bytes() == b"512"
    blob = lay.blob_file(ldesc)
    blob.write_bytes(compress(tar_bytes([reg("f", b"513")]), "gzip"))
    with open_image(lay.root) as img, pytest.raises(BlobError, match=ldesc["digest"]):
        img.unpack(tmp_path / "root2")


def test_diff_id_mismatch_is_refused(tmp_path):
    lay = Layout(tmp_path / "img")
    lay.add(lay.image([tar_bytes([reg("f", b"x")])], diff_ids=["sha256:" + "1" * 64]))
    with open_image(lay.root) as img, pytest.raises(BlobError, match="diff_id"):
        img.unpack(tmp_path / "root")


@pytest.mark.parametrize("limit,members,what", [
    (Limits(max_total_bytes=1000), [reg("a", b"x" * 600), reg("b", b"y" * 600)], "'b'"),
    (Limits(max_files=3), [reg(f"f{i}", b"") for i in range(5)], "f3"),
])
def test_limits(tmp_path, limit, members, what):
    lay = single_layer_image(tmp_path / "img", members)
    with open_image(lay.root, limits=limit) as img:
        with pytest.raises(LimitExceededError, match=what):
            img.unpack(tmp_path / "root")


@pytest.mark.parametrize("what", ["file", "empty-dir", "plain-tar", "missing"])
def test_not_an_image(tmp_path, what):
    p = tmp_path / "input"
    if what == "file":
        p.write_bytes(b"hello, not an image\n" * 40)
    elif what == "empty-dir":
        p.mkdir()
    elif what == "plain-tar":
        p.write_bytes(tar_bytes([reg("etc/passwd", b"root")]))
    with pytest.raises(NotAnImageError) as err:
        open_image(p)
    assert str(p) in str(err.value) and err.value.hint


def test_destination_must_be_new_or_empty(tmp_path):
    lay = single_layer_image(tmp_path / "img", [reg("f", b"x")])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/other").write_text("keep")
    with open_image(lay.root) as img, pytest.raises(Exception, match="not empty"):
        img.unpack(tmp_path / "busy")
    assert (tmp_path / "busy/other").read_text() == "keep"


def test_unknown_digest_algorithm_is_malformed(tmp_path):
    lay = Layout(tmp_path / "img")
    lay.index.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": "md5:" + "0" * 32, "size": 10})
    lay.write_index()
    with pytest.raises(MalformedImageError, match="md5"):
        open_image(lay.root)


def test_special_files_follow_whiteouts_and_links(tmp_path):
    lower = [dir_("dev"), chrdev("dev/null", 1, 3), chrdev("dev/zero", 1, 5), dir_("d"),
             fifo("d/pipe")]
    upper = [whiteout("dev", "null"), hard("dev/zero2", "dev/zero"), opaque("d"),
             fifo("d/newpipe")]
    lay = layered_image(tmp_path / "img", [lower, upper])
    with open_image(lay.root) as img:
        res = img.unpack(tmp_path / "root")
    assert [(s.path, s.kind, s.major, s.minor) for s in res.special_files] == [
        ("/d/newpipe", "fifo", 0, 0), ("/dev/zero", "chr", 1, 5), ("/dev/zero2", "chr", 1, 5)]


def test_wrong_media_type_and_not_a_tar_is_explained(tmp_path):
    lay = Layout(tmp_path / "img")
    lay.add(lay.image([b"plain text, not a tar" * 30], compression="none",
                      media_types=["application/vnd.oci.image.layer.v1.tar+gzip"]))
    with open_image(lay.root) as img, pytest.raises(Exception) as err:
        img.unpack(tmp_path / "root")
    assert "media type says gzip" in str(err.value)


def test_ratio_limit_is_configurable(tmp_path):
    import random
    rng = random.Random(1)
    data = b"".join(rng.randbytes(16) + b"\0" * 4080 for _ in range(1024))   # 4 MiB
    tar = tar_bytes([reg("zeros", data)])
    lay = Layout(tmp_path / "img")
    lay.add(lay.image([tar], compression="gzip"))
    with open_image(lay.root, limits=Limits(max_ratio=50)) as img:
        with pytest.raises(LimitExceededError, match="ratio above 50:1"):
            img.unpack(tmp_path / "root")
    blob = next(p for p in (lay.root / "blobs/sha256").iterdir() if p.stat().st_size > 4096)
    assert 50 < (4 << 20) / blob.stat().st_size < 1000     # between the two limits
    with open_image(lay.root) as img:
        img.unpack(tmp_path / "root2")
    assert (tmp_path / "root2/zeros").stat().st_size == 4 << 20


def test_gzipped_docker_save(tmp_path):
    """``docker save img | gzip > img.tar.gz`` is read as it is."""
    import gzip as gz
    src = docker_archive(tmp_path / "save.tar", [tar_bytes([reg("x", b"gz")])])
    packed = tmp_path / "save.tar.gz"
    packed.write_bytes(gz.compress(src.read_bytes()))
    with open_image(packed) as img:
        assert img.kind is ImageKind.DOCKER_ARCHIVE
        img.unpack(tmp_path / "root")
    assert (tmp_path / "root/x").read_bytes() == b"gz"
