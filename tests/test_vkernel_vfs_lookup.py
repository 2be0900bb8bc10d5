"""vkernel's quick path lookup (Vfs._direct) must answer exactly as the component-by-component
walk over the merged view (Vfs._walk) does, on trees that have what images and runs have:
merged /usr (/lib -> usr/lib), symlink chains, absolute and dangling links, loops, upper-layer
directories over rootfs ones, upper files and links shadowing rootfs entries, whiteouts and
volumes. Random trees and paths, a fixed seed per case so a failure can be replayed.
"""
from __future__ import annotations

import errno
import os
import random
import stat as st
from pathlib import Path

import pytest

from vkernel.hostfs import openat2_in_root
from vkernel.vfs import Vfs, Volume

NAMES = ["a", "b", "c", "usr", "lib", "bin", "etc", "x"]


def _build(root: Path, rng: random.Random, depth: int, prefix: str = "") -> list[str]:
    """A random directory tree under ``root``; the guest paths of its entries."""
    made = []
    for name in rng.sample(NAMES, rng.randint(2, 5)):
        p = root / name
        guest = f"{prefix}/{name}"
        if os.path.lexists(p):
            continue
        roll = rng.random()
        if roll < 0.45 and depth > 0:
            p.mkdir()
            made.append(guest)
            made += _build(p, rng, depth - 1, guest)
        elif roll < 0.7:
            p.write_text(guest)
            made.append(guest)
        else:
            target = rng.choice([
                rng.choice(NAMES),                                  # a sibling, maybe missing
                "../" + rng.choice(NAMES),                          # up one
                "/" + "/".join(rng.sample(NAMES, rng.randint(1, 3))),   # absolute (guest root)
                "usr/lib", "../../..", name,                        # merged /usr; the root; a loop
            ])
            os.symlink(target, p)
            made.append(guest)
    return made


def _outcome(fn, path: str, follow: bool):
    try:
        canon, layer, s = fn(path, follow)
    except OSError as e:
        return ("error", e.errno)
    return ("ok", canon, layer, None if s is None else (s.st_dev, s.st_ino, s.st_mode))


OPEN_FLAGS = (os.O_RDONLY, os.O_RDONLY | os.O_NOFOLLOW, os.O_PATH | os.O_NOFOLLOW,
              os.O_RDONLY | os.O_DIRECTORY)


def _walk_open(vfs: Vfs, path: str, flags: int):
    """What a read-only open finds by the walk: (dev, inode) of the file, or the errno."""
    try:
        canon, layer, s = vfs._walk(path, follow=not flags & os.O_NOFOLLOW)
        if s is None or layer is None:
            return ("error", errno.ENOENT)
        fd = openat2_in_root(layer, canon, flags)
    except OSError as e:
        return ("error", e.errno)
    try:
        s = os.fstat(fd)
        return ("ok", s.st_dev, s.st_ino)
    finally:
        os.close(fd)


def _paths(rng: random.Random, known: list[str], n: int) -> list[str]:
    out = ["/", "/usr/lib", "/lib/a", "/bin/x/", "/a/../b", "/a//b", "/./a"]
    out += known
    for _ in range(n):
        base = rng.choice(known) if known and rng.random() < 0.7 else ""
        extra = [rng.choice(NAMES + ["..", ".", "missing"]) for _ in range(rng.randint(0, 3))]
        out.append(base + "".join("/" + e for e in extra) or "/")
    return out


@pytest.mark.parametrize("seed", range(24))
def test_quick_lookup_agrees_with_the_walk(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lower, upper, vol = tmp_path / "lower", tmp_path / "upper", tmp_path / "vol"
    for d in (lower, upper, vol):
        d.mkdir()
    (lower / "usr").mkdir()
    (lower / "usr/lib").mkdir()
    (lower / "usr/lib/libc.so").write_text("libc")
    os.symlink("usr/lib", lower / "lib")
    known = _build(lower, rng, 3) + ["/usr/lib/libc.so", "/lib/libc.so"]
    # The upper layer: some of the same names (directories over directories, files and
    # links over anything) and some of its own, as a run's writes leave them.
    known += _build(upper, rng, 2)
    volumes = ()
    if seed % 4 == 3:
        (vol / "data").write_text("volume")
        volumes = (Volume(str(vol), "/vol"),)
        known += ["/vol/data", "/vol"]
    vfs = Vfs(lower, upper, volumes)
    try:
        if seed % 3 == 2:                     # a deleted rootfs file: whiteouts exist
            victims = sorted(p for p in known if p.count("/") == 1 and
                             vfs.find(p) == (vfs.lower_fd, vfs.find(p)[1]) and
                             not st.S_ISDIR(vfs.find(p)[1].st_mode))
            if victims:
                vfs.unlink(rng.choice(victims))
                assert vfs._has_whiteouts()
        checked = quick = opened = 0
        for path in _paths(rng, known, 300):
            for follow in (True, False):
                want = _outcome(vfs._walk, path, follow)
                got = _outcome(vfs.resolve, path, follow)
                assert got == want, f"seed {seed}: resolve({path!r}, follow={follow})"
                checked += 1
                try:
                    quick += vfs._direct(path, follow) is not None
                except OSError:
                    quick += 1
            for flags in OPEN_FLAGS:
                fd = vfs._open_direct(path, flags)
                if fd is None:
                    continue
                try:
                    s = os.fstat(fd)
                finally:
                    os.close(fd)
                assert ("ok", s.st_dev, s.st_ino) == _walk_open(vfs, path, flags), \
                    f"seed {seed}: open({path!r}, {flags:#o})"
                opened += 1
        assert checked > 600
        if seed % 3 != 2:        # without whiteouts most lookups take the quick path
            assert quick > checked // 10, (quick, checked)
            assert opened > 50, opened
    finally:
        vfs.close()


def test_quick_lookup_never_follows_a_link_out_of_the_layer(tmp_path: Path) -> None:
    """Symlinks in the upper layer that point at host paths are the guest's: the quick path
    must resolve them in the guest's root (or leave them to the walk), never on the host."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    (lower / "etc").mkdir()
    (lower / "etc/passwd").write_text("guest passwd\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("host secret\n")
    os.symlink(str(secret), upper / "s")               # absolute: the guest's /tmp/.../secret
    os.symlink("../../../../../../../../" + str(secret), upper / "up")
    (upper / "etc").mkdir()
    os.symlink(str(tmp_path), upper / "etc/host")
    vfs = Vfs(lower, upper)
    try:
        for path in ("/s/key", "/up/key", "/etc/host/secret/key", "/s", "/etc/host"):
            for follow in (True, False):
                want = _outcome(vfs._walk, path, follow)
                assert _outcome(vfs.resolve, path, follow) == want
                if want[0] == "ok" and want[3] is not None:
                    assert not (st.S_ISREG(want[3][2]) and
                                os.stat(secret / "key").st_ino == want[3][1])
        with pytest.raises(OSError) as e:
            vfs.stat("/s/key")
        assert e.value.errno == errno.ENOENT
    finally:
        vfs.close()
